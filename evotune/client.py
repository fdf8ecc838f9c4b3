"""The best config of a shape for a program that runs the kernel, from one of three sources:

- `url`: the service (GET /v1/best, standard library only),
- `db`: a database URL or SQLite path, read as `evotune best` reads it (never created),
- `path`: a JSON file written by `evotune export --format json`.

Each answer is cached in the process: the same arguments never look up twice (a miss,
None, included; `clear_cache()` forgets). As everywhere in evotune, only configs measured
under the kernel source installed here (for `url`: beside the service) are served, unless
`stale=True`; interpreted results only with `interpreted=True`.
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from evotune.errors import SourceError

if TYPE_CHECKING:
    from evotune.space import Shape

__all__ = ["best_config", "clear_cache"]

Config = dict[str, Any]


_cache: dict[tuple[Any, ...], Config | None] = {}
_lock = threading.Lock()


def best_config(
    kernel: str,
    dims: Mapping[str, Any],
    url: str | None = None,
    db: str | None = None,
    path: str | Path | None = None,
    *,
    gpu: str | None = None,
    interpreted: bool = False,
    stale: bool = False,
    timeout_s: float = 10.0,
) -> Config | None:
    """The best config of `kernel` for a shape with these dims (every dim of the kernel's
    space), from exactly one source; None when nothing is tuned for it."""
    given = [name for name, value in (("url", url), ("db", db), ("path", path)) if value]
    if len(given) != 1:
        raise SourceError(f"give exactly one of url=, db=, path= (got {given or 'none'})")
    shape = json.dumps(dict(dims), sort_keys=True, default=str)
    key = (kernel, shape, url, db, str(path or ""), gpu, interpreted, stale)
    with _lock:
        if key in _cache:
            return _copy(_cache[key])
    if url:
        config = _from_service(url, kernel, dims, gpu, interpreted, stale, timeout_s)
    elif db:
        config = _from_database(db, kernel, dims, gpu, interpreted, stale)
    else:
        assert path
        config = _from_file(Path(path), kernel, dims, gpu, interpreted, stale)
    with _lock:
        _cache[key] = config
    return _copy(config)


def clear_cache() -> None:
    """Forget every cached answer (e.g. after a new search published)."""
    with _lock:
        _cache.clear()


def _copy(config: Config | None) -> Config | None:
    # The caller may change what it gets; the cached answer stays as it was.
    return None if config is None else dict(config)


def _from_service(
    url: str,
    kernel: str,
    dims: Mapping[str, Any],
    gpu: str | None,
    interpreted: bool,
    stale: bool,
    timeout_s: float,
) -> Config | None:
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise SourceError(f"url= must be http:// or https://, not {url!r}")
    query: dict[str, Any] = {"kernel": kernel, **{k: _query_text(v) for k, v in dims.items()}}
    if gpu is not None:
        query["gpu"] = gpu
    query.update({k: "true" for k, on in (("interpreted", interpreted), ("stale", stale)) if on})
    address = f"{url.rstrip('/')}/v1/best?{urllib.parse.urlencode(query)}"
    try:
        with urllib.request.urlopen(address, timeout=timeout_s) as response:
            body = json.load(response)
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        raise SourceError(f"{url} answered {exc.code}: {_detail(exc)}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise SourceError(f"cannot reach {url}: {getattr(exc, 'reason', exc)}") from None
    except ValueError:
        raise SourceError(f"{url} did not answer JSON; is it an evotune service?") from None
    return dict(body["config"])


def _query_text(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _detail(exc: urllib.error.HTTPError) -> str:
    try:
        return str(json.load(exc)["detail"])
    except (ValueError, KeyError, TypeError):
        return exc.reason or "no detail"


def _from_database(
    db: str, kernel: str, dims: Mapping[str, Any], gpu: str | None, interpreted: bool, stale: bool
) -> Config | None:
    from sqlalchemy.exc import SQLAlchemyError

    from evotune.storage import Database, repository
    from evotune.storage.engine import display_url, make_engine, normalize_url

    shape, installed = _shape_and_source(kernel, dims)
    url = normalize_url(db)
    database = Database(make_engine(url, create=False))
    try:
        with database.session() as session:
            row = repository.best_config(
                session,
                kernel,
                shape.key,
                gpu=gpu,
                include_interpreted=interpreted,
                kernel_source_hash=None if stale else installed,
            )
            return None if row is None else dict(row.config)
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        raise SourceError(f"cannot read database {display_url(url)!r}: {reason}") from None
    finally:
        database.dispose()


def _from_file(
    path: Path,
    kernel: str,
    dims: Mapping[str, Any],
    gpu: str | None,
    interpreted: bool,
    stale: bool,
) -> Config | None:
    from evotune.export import find_entry

    shape, installed = _shape_and_source(kernel, dims)
    try:
        entries = json.loads(path.read_text())
    except OSError as exc:
        raise SourceError(f"cannot read {path}: {exc.strerror or exc}") from None
    except ValueError:
        raise SourceError(
            f"{path} is not JSON; write it with `evotune export --format json`"
        ) from None
    if not isinstance(entries, list) or not all(
        isinstance(e, dict) and {"kernel", "dims", "config", "gpu"} <= e.keys() for e in entries
    ):
        raise SourceError(f"{path} is not a list of entries of `evotune export --format json`")
    usable = [
        e
        for e in entries
        if e["kernel"] == kernel
        and (interpreted or not e.get("interpreted"))
        and (stale or e.get("kernel_source_hash") == installed)
    ]
    entry = find_entry(usable, shape.dims, gpu)
    return None if entry is None else dict(entry["config"])


def _shape_and_source(kernel: str, dims: Mapping[str, Any]) -> tuple[Shape, str]:
    """The shape of these dims (checked against the kernel's space) and the kernel source
    installed here."""
    from evotune.source_hash import kernel_source_hash
    from evotune.space import load_space

    space = load_space(kernel)
    return space.adhoc_shape(dims), kernel_source_hash(space.module)
