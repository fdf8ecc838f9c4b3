"""GET /v1/best: the served best config of a shape (named, or ad hoc by its dims), or with
nearest=true that of the nearest tuned shape when this one is not tuned.

The hot path of the service: repeated queries are answered by `BestCacheMiddleware` from
`BestCache`, which checks the database on every request, so a newly published best is served
at once (see best_cache.py); this endpoint validates, looks up, and fills the cache.
"""

from __future__ import annotations

from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from sqlalchemy.orm import Session

from evotune.api.best_cache import BestCache, CachedAnswer
from evotune.api.database import DatabaseGate
from evotune.api.errors import error_body, error_responses
from evotune.api.params import resolve_kernel, resolve_shape
from evotune.errors import ImpossibleShapeError
from evotune.schemas import BestOut, EnvironmentOut, best_out, environment_out
from evotune.space import SearchSpace, Shape
from evotune.storage import Database, repository
from evotune.storage.models import BestConfig

router = APIRouter(prefix="/v1", tags=["best"])


def lookup_best(
    database: Database,
    environments: dict[int, EnvironmentOut],
    space: SearchSpace,
    target: Shape,
    gpu: str | None,
    fingerprint: str | None,
    interpreted: bool,
    source_hash: str | None,
    stale: bool,
    nearest: bool = False,
) -> CachedAnswer:
    """(status, JSON body) of one lookup: 200 with the best config, or 404 saying why not.

    Only configs measured under `source_hash` (the kernel source asked for) are served,
    unless `stale`; then the newest of any source, marked stale where it differs. With
    `nearest`, an untuned shape is answered with the best of the nearest tuned one (under
    the same filters), which the answer names.
    `environments` memoizes environment rows by id: they never change once written (their
    id stands for a fingerprint hash), and it saves a query per lookup.
    """
    with database.session() as session:
        row, served = None, target
        if stale or source_hash is not None:
            filters: dict[str, Any] = {
                "fingerprint": fingerprint,
                "gpu": gpu,
                "include_interpreted": interpreted,
                "kernel_source_hash": None if stale else source_hash,
            }
            row, served = _find_best(session, space, target, nearest, filters)
        if row is not None:
            env = environments.get(row.environment_id)
            if env is None:
                env = environments[row.environment_id] = environment_out(row.environment)
            body = best_out(space.kernel, served, row, env, source_hash, requested=target)
            return 200, body.model_dump_json().encode()
    where = "".join(
        f" {label} {value!r}"
        for label, value in (("on GPU", gpu), ("for fingerprint", fingerprint))
        if value is not None
    )
    if source_hash is None and not stale:
        detail = (
            f"the source of kernel {space.kernel!r} is not installed beside the service, so "
            "no config can be served as current; pass kernel_source_hash (yours) or "
            "stale=true"
        )
    else:
        source = "" if stale else f" under kernel source {source_hash}"
        detail = (
            f"no tuned config for {space.kernel} shape {target.label()}{where}{source}"
            + (" nor for any other shape of it" if nearest else "")
            + "; run `evotune search` for it"
            + ("" if stale else " (stale=true also serves configs of older kernel sources)")
        )
    return 404, error_body(404, detail)


def _find_best(
    session: Session, space: SearchSpace, target: Shape, nearest: bool, filters: dict[str, Any]
) -> tuple[BestConfig | None, Shape]:
    """The best of `target`, else (with `nearest`) that of the nearest tuned shape; and the
    shape it is the best of."""
    row = repository.best_config(session, space.kernel, target.key, **filters)
    if row is not None or not nearest:
        return row, target
    near = repository.nearest_tuned_shape(session, space, target.dims, **filters)
    if near is None:
        return None, target
    return repository.best_config(session, space.kernel, near.key, **filters), Shape(
        near.name, dict(near.dims)
    )


@router.get(
    "/best",
    response_model=BestOut,
    responses=error_responses(404, 422, 503, s404="nothing is tuned for this shape"),
)
async def get_best(
    request: Request,
    kernel: Annotated[str, Query(min_length=1, max_length=100)],
    shape: Annotated[
        str | None, Query(max_length=100, description="a named shape; or give the dims")
    ] = None,
    gpu: Annotated[
        str | None, Query(max_length=200, description="only configs measured on this GPU")
    ] = None,
    fingerprint: Annotated[
        str | None,
        Query(max_length=64, description="only configs measured in this environment"),
    ] = None,
    interpreted: Annotated[
        bool,
        Query(
            description="development only: also serve configs found under Triton's CPU "
            "interpreter, whose timings say nothing about a GPU"
        ),
    ] = False,
    kernel_source_hash: Annotated[
        str | None,
        Query(
            max_length=64,
            description="the kernel source you run (evotune's kernel source hash); default: "
            "the one installed beside the service",
        ),
    ] = None,
    stale: Annotated[
        bool,
        Query(
            description="also serve a config measured under another kernel source (the "
            "answer then says stale: true)"
        ),
    ] = False,
    nearest: Annotated[
        bool,
        Query(
            description="when this shape is not tuned, serve the best of the nearest tuned "
            "shape of the kernel under the same filters (the answer then says exact: false "
            "and names it in `shape`)"
        ),
    ] = False,
) -> Response:
    """The newest published best for the shape, measured under the kernel source asked for;
    GPU-measured only unless interpreted=true."""
    state = request.app.state
    cache: BestCache = state.best_cache
    key = request.scope["query_string"]  # the answer depends on it and the database only
    answer, generation = cache.lookup(key)
    if answer is None:
        space = resolve_kernel(state.spaces, kernel)  # 422s are raised here, never cached
        try:
            target = resolve_shape(space, shape, request.query_params)
        except ImpossibleShapeError as exc:
            # Well-formed dims that no config can run: nothing is, or can be, tuned for them.
            detail = f"no config can exist for {space.kernel} {exc}"
            return Response(error_body(404, detail), status_code=404, media_type="application/json")
        source_hash = kernel_source_hash or state.spaces.source_hash(space.kernel)
        gate: DatabaseGate = state.gate  # a few threads: see database.py
        answer = await cache.single_flight(
            generation,
            key,
            lambda: gate.call(
                partial(
                    lookup_best,
                    state.database,
                    state.environments,
                    space,
                    target,
                    gpu,
                    fingerprint,
                    interpreted,
                    source_hash,
                    stale,
                    nearest,
                )
            ),
        )
    status, body = answer
    return Response(content=body, status_code=status, media_type="application/json")
