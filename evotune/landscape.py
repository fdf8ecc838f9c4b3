"""Landscapes: the recorded trials of an exhaustive study of one shape, as a JSON file.

A landscape lets strategies be replayed, compared and tuned on the CPU: every config of the
space has its measured outcome, looked up by config hash instead of run on a GPU.

File format (JSON)::

    {"kernel": "attention",
     "shape": {"name": "mission", "dims": {...}},
     "environment": {"gpu": ..., ...},
     "space_size": 3321,
     "trials": [{"config": {...}, "status": "ok", "p50_us": 41.2, "p20_us": ..., ...}, ...]}

Trial keys besides `config` and `status` are optional: p50_us, p20_us, p80_us, n_runs,
max_error, error, compile_s (seconds to compile the config: what a replay on a simulated
pool, evotune/pool_model.py, takes for it). Unknown keys are kept (in `extra`) and written
back.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
import math
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from evotune.errors import LandscapeFileError
from evotune.records import Config, TrialStatus, config_hash
from evotune.space import SearchSpace, Shape

__all__ = [
    "Landscape",
    "LandscapeTrial",
    "fit_to_space",
    "import_measurements",
    "load_landscape",
    "merge_landscapes",
    "parse_status",
    "save_landscape",
]

_TRIAL_KEYS = ("p50_us", "p20_us", "p80_us", "n_runs", "max_error", "error", "compile_s")

# Parts of one landscape must agree on these: timings from another GPU, kernel source or
# compiler do not belong on the same landscape. Other keys (the driver) may differ.
_SAME_ENVIRONMENT = ("gpu", "kernel_source_hash", "triton", "torch", "interpreted")


@dataclass(frozen=True)
class LandscapeTrial:
    """The recorded outcome of one config."""

    config: Config
    status: TrialStatus
    p50_us: float | None = None
    p20_us: float | None = None
    p80_us: float | None = None
    n_runs: int = 0
    max_error: float | None = None
    error: str | None = None
    compile_s: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status is TrialStatus.OK and self.p50_us is not None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"config": self.config, "status": self.status.value}
        for key in _TRIAL_KEYS:
            value = getattr(self, key)
            if value is not None and not (key == "n_runs" and value == 0):
                data[key] = value
        data.update(self.extra)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LandscapeTrial:
        config = data.get("config")
        if not isinstance(config, dict):
            raise ValueError("'config' must be a mapping")
        status = parse_status(data.get("status"))
        p50 = _optional_float(data, "p50_us")
        if status is TrialStatus.OK and (p50 is None or not p50 > 0):
            raise ValueError("an 'ok' trial needs a positive 'p50_us'")
        extra = {k: v for k, v in data.items() if k not in ("config", "status", *_TRIAL_KEYS)}
        return cls(
            config=dict(config),
            status=status,
            p50_us=p50,
            p20_us=_optional_float(data, "p20_us"),
            p80_us=_optional_float(data, "p80_us"),
            n_runs=int(data.get("n_runs") or 0),
            max_error=_optional_float(data, "max_error"),
            error=None if data.get("error") is None else str(data["error"]),
            compile_s=_optional_float(data, "compile_s"),
            extra=extra,
        )


@dataclass
class Landscape:
    """Every recorded trial of one (kernel, shape), indexed by config hash."""

    kernel: str
    shape: Shape
    environment: dict[str, Any]
    space_size: int
    trials: list[LandscapeTrial]
    # The sub-space the study searched (`evotune search --restrict`); None for the whole space.
    restrict: str | None = None
    # Entries (trials, and the shape) that `fit_to_space` converted to the space's types.
    normalised: int = field(default=0, compare=False)
    # sha256 of the file's (uncompressed) text when it was loaded from one: what a strategy's
    # record of the landscapes its defaults were tuned on names (`Strategy.tuned_on`).
    content_sha256: str | None = field(default=None, compare=False)
    _index: dict[str, LandscapeTrial] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # The first record of a config wins: a landscape is one measurement per config.
        self._index = {}
        for trial in self.trials:
            self._index.setdefault(config_hash(trial.config), trial)

    def lookup(self, config: Config) -> LandscapeTrial | None:
        """The recorded outcome of a config (compared by config hash), or None."""
        return self._index.get(config_hash(config))

    def __contains__(self, config: object) -> bool:
        return isinstance(config, dict) and config_hash(config) in self._index

    def __len__(self) -> int:
        return len(self._index)

    @property
    def ok_trials(self) -> list[LandscapeTrial]:
        return [t for t in self._index.values() if t.ok]

    @property
    def best(self) -> LandscapeTrial | None:
        """The fastest ok trial (None when nothing ran)."""
        ok = self.ok_trials
        return min(ok, key=lambda t: t.p50_us or math.inf) if ok else None

    @property
    def best_p50_us(self) -> float | None:
        best = self.best
        return best.p50_us if best else None

    def within(self, target: float) -> list[LandscapeTrial]:
        """The ok trials within `target` (a fraction) of the best p50."""
        best = self.best_p50_us
        if best is None:
            return []
        return [t for t in self.ok_trials if (t.p50_us or math.inf) <= best * (1 + target)]

    def to_dict(self) -> dict[str, Any]:
        return {
            "kernel": self.kernel,
            "shape": {"name": self.shape.name, "dims": self.shape.dims},
            "environment": self.environment,
            "space_size": self.space_size,
            "restrict": self.restrict,
            "trials": [t.to_dict() for t in self.trials],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Landscape:
        """Build from the file format; ValueError says what is malformed."""
        if not isinstance(data, Mapping):
            raise ValueError("expected a mapping at the top level")
        for key in ("kernel", "shape", "trials"):
            if key not in data:
                raise ValueError(f"missing {key!r}")
        shape = data["shape"]
        if not isinstance(shape, Mapping) or not isinstance(shape.get("dims"), Mapping):
            raise ValueError('\'shape\' must be {"name": ..., "dims": {...}}')
        if not isinstance(data["trials"], list):
            raise ValueError("'trials' must be a list")
        trials: list[LandscapeTrial] = []
        for i, raw in enumerate(data["trials"]):
            if not isinstance(raw, Mapping):
                raise ValueError(f"trials[{i}]: expected a mapping")
            try:
                trials.append(LandscapeTrial.from_dict(raw))
            except ValueError as exc:
                raise ValueError(f"trials[{i}]: {exc}") from None
        space_size = int(data.get("space_size") or len(trials))
        return cls(
            kernel=str(data["kernel"]),
            shape=Shape(shape.get("name"), dict(shape["dims"])),
            environment=dict(data.get("environment") or {}),
            space_size=space_size,
            trials=trials,
            restrict=data.get("restrict"),
        )

    @classmethod
    def from_records(
        cls,
        kernel: str,
        shape: Shape,
        environment: Mapping[str, Any],
        space_size: int,
        records: Iterable[Mapping[str, Any]],
        restrict: str | None = None,
    ) -> Landscape:
        """Build from stored trial rows (dicts with config, status, p50_us, ...), e.g. when
        exporting a grid study from the database; `running` rows are left out."""
        trials = [
            LandscapeTrial.from_dict(
                {
                    k: (v.value if isinstance(v, TrialStatus) else v)
                    for k, v in r.items()
                    if k in ("config", "status", *_TRIAL_KEYS)
                }
            )
            for r in records
            if str(getattr(r.get("status"), "value", r.get("status"))) != TrialStatus.RUNNING.value
        ]
        return cls(kernel, shape, dict(environment), space_size, trials, restrict)


def parse_status(value: Any) -> TrialStatus:
    """A recorded trial's status; ValueError lists the valid ones."""
    valid = TrialStatus.final()
    if value in {s.value for s in valid}:
        return TrialStatus(value)
    raise ValueError(f"unknown status {value!r}; valid: {', '.join(s.value for s in valid)}")


def fit_to_space(
    landscape: Landscape, space: SearchSpace, source: str | Path, added_knobs: bool = True
) -> Landscape:
    """The landscape checked against the space it is replayed in, every lookup of which would
    otherwise miss in silence: its dims complete and typed as declared, every knob known and
    valued in its domain. Unambiguous differences are normalised ("64" for 64, 0/1 for a
    bool, a knob that does not apply dropped) and counted in `normalised`; anything else is
    one LandscapeFileError naming `source` (the file) and the first offending entry and knob.

    A knob that no trial names, though it applies to some, came into the space after the
    recording: a knob is added with the default the kernel ran before it was one (as a dim is,
    `dim_defaults`). Its trials take that default, and the landscape is of the sub-space where
    the knob is at it: `restrict` gains `KNOB == default`, so that a replay searches what was
    recorded. (`added_knobs` False refuses such a knob as missing: another tuner's file that
    leaves a knob out says nothing of its value.)"""
    try:
        return _fit(landscape, space, added_knobs)
    except ValueError as exc:
        raise LandscapeFileError(
            f"{source}: does not fit the {space.kernel} space: {exc}"
        ) from None


def _fit(landscape: Landscape, space: SearchSpace, added_knobs: bool) -> Landscape:
    if landscape.kernel != space.kernel:
        raise ValueError(f"the landscape is of kernel {landscape.kernel!r}, not {space.kernel!r}")
    dims = space.typed_dims(landscape.shape.dims)
    # Compared as JSON: == takes 1 for True, and the hash of a config's shape would not.
    normalised = int(_json(dims) != _json(landscape.shape.dims))
    # Knobs the recording knows of (with added_knobs False: every knob of the space).
    recorded = {name for trial in landscape.trials for name in trial.config}
    if not added_knobs:
        recorded = set(space.parameters)
    added: set[str] = set()  # knobs the space gained since the recording
    trials: list[LandscapeTrial] = []
    for i, trial in enumerate(landscape.trials):
        try:
            config = _fit_config(trial.config, space, recorded)
        except ValueError as exc:
            raise ValueError(f"trials[{i}]: {exc}") from None
        added |= set(config) - set(trial.config)
        if config_hash(config) != config_hash(trial.config):
            normalised += 1
            trial = replace(trial, config=config)
        trials.append(trial)
    return Landscape(
        kernel=landscape.kernel,
        shape=Shape(landscape.shape.name, dims),
        environment=landscape.environment,
        space_size=landscape.space_size,
        trials=trials,
        restrict=_at_defaults(landscape.restrict, sorted(added), space),
        normalised=normalised,
        content_sha256=landscape.content_sha256,
    )


def _at_defaults(restrict: str | None, knobs: Sequence[str], space: SearchSpace) -> str | None:
    """`restrict` narrowed to the sub-space where each of `knobs` is at its default."""
    if not knobs:
        return restrict
    rules = [f"{name} == {space.parameters[name].default!r}" for name in knobs]
    return " and ".join([f"({restrict})", *rules] if restrict else rules)


def _fit_config(config: Config, space: SearchSpace, recorded: set[str]) -> Config:
    typed: dict[str, Any] = {}
    for name, value in config.items():
        param = space.parameters.get(name)
        if param is None:
            known = ", ".join(space.parameters)
            raise ValueError(f"unknown knob {name!r}; the knobs of {space.kernel} are {known}")
        try:
            typed[name] = param.parse(value)
        except ValueError as exc:
            raise ValueError(f"knob {name!r}: {exc}") from None
    active = space.active_names(typed)
    missing = [name for name in active if name not in typed and name in recorded]
    if missing:
        raise ValueError(f"knob {missing[0]!r} is missing (it applies to this config)")
    # A knob that does not apply changes nothing the kernel runs: dropped, as the space does.
    # One that no trial names came after the recording: at its default (fit_to_space).
    return {name: typed.get(name, space.parameters[name].default) for name in active}


def _json(dims: Mapping[str, Any]) -> str:
    return json.dumps(dims, sort_keys=True)


def merge_landscapes(
    parts: Sequence[Landscape], space: SearchSpace, across_kernel_sources: bool = False
) -> Landscape:
    """One landscape from parts recorded separately (sub-spaces, or sessions of one GPU).

    The parts must be of `space`'s kernel and of one shape and environment
    (`_SAME_ENVIRONMENT`); a config recorded in two parts keeps its first record. The result
    covers the union of the parts' sub-spaces, and its `space_size` counts the valid configs
    of that union in `space`. Raises LandscapeFileError naming what does not match.

    `across_kernel_sources` lets the kernel source differ between parts (a space that gained
    knob values, recorded for the new configs only, where the old configs run the same code);
    the result then lists every part's source hash under `kernel_source_hashes`. Each part is
    fitted to `space` first (`fit_to_space`): one recorded before the space gained a knob
    covers the sub-space where that knob is at its default.
    """
    # Imported here: evotune.search pulls in the strategies (Optuna), which replay never needs.
    from evotune.search.grid import valid_configs

    if not parts:
        raise LandscapeFileError("cannot merge: no landscapes given")
    parts = [
        fit_to_space(part, space, f"part {i}") if part.kernel == space.kernel else part
        for i, part in enumerate(parts, start=1)
    ]
    first = parts[0]
    for i, part in enumerate(parts, start=1):
        if part.kernel != space.kernel:
            raise LandscapeFileError(
                f"cannot merge: part {i} is of kernel {part.kernel!r}, not {space.kernel!r}"
            )
        if part.shape.dims != first.shape.dims:
            raise LandscapeFileError(
                f"cannot merge: part {i} is of shape {part.shape.dims}, part 1 of "
                f"{first.shape.dims}"
            )
        for key in _SAME_ENVIRONMENT:
            if across_kernel_sources and key == "kernel_source_hash":
                continue
            if part.environment.get(key) != first.environment.get(key):
                raise LandscapeFileError(
                    f"cannot merge: part {i} was recorded with {key} "
                    f"{part.environment.get(key)!r}, part 1 with {first.environment.get(key)!r}"
                )
    restricts = [part.restrict for part in parts]
    restrict = None
    if all(restricts):
        unique = list(dict.fromkeys(r for r in restricts if r))
        restrict = unique[0] if len(unique) == 1 else " or ".join(f"({r})" for r in unique)
    trials: dict[str, LandscapeTrial] = {}
    for part in parts:
        for trial in part.trials:
            trials.setdefault(config_hash(trial.config), trial)
    environment = dict(first.environment)
    sources = list(
        dict.fromkeys(
            h
            for part in parts
            for h in part.environment.get("kernel_source_hashes")
            or [part.environment.get("kernel_source_hash")]
        )
    )
    if len(sources) > 1:
        environment["kernel_source_hashes"] = sources
    return Landscape(
        kernel=first.kernel,
        shape=first.shape,
        environment=environment,
        space_size=len(
            valid_configs(
                space.searched(restrict, bool(environment.get("interpreted"))), first.shape.dims
            )
        ),
        trials=list(trials.values()),
        restrict=restrict,
    )


# Another tuner's time column, and the factor to microseconds.
_TIME_COLUMNS = {"p50_us": 1.0, "time_us": 1.0, "time_ms": 1000.0}


def import_measurements(
    path: Path, space: SearchSpace, shape: Shape, gpu: str | None = None
) -> Landscape:
    """A landscape from another tuner's measurements of one shape: a .csv or .jsonl file of
    one row per config, with knob columns, one time column (`_TIME_COLUMNS`) and optionally
    `status` (default ok; a row without a time failed: `crashed`) and the other trial keys.
    Checked and normalised as a replay is (`fit_to_space`)."""
    # Imported here, as in merge_landscapes: evotune.search pulls in the strategies.
    from evotune.search.grid import valid_configs

    rows = _read_rows(path)
    time_columns = [c for c in _TIME_COLUMNS if any(c in row for row in rows)]
    if len(time_columns) != 1:
        found = ", ".join(time_columns) or "none"
        raise LandscapeFileError(
            f"{path}: needs one time column of {', '.join(_TIME_COLUMNS)}; found {found}"
        )
    trials = []
    for i, row in enumerate(rows, start=1):
        try:
            trials.append(LandscapeTrial.from_dict(_trial_of_row(row, time_columns[0])))
        except ValueError as exc:
            raise LandscapeFileError(f"{path}: row {i}: {exc}") from None
    environment = {"gpu": gpu, "imported_from": path.name, "interpreted": False}
    size = len(valid_configs(space, shape.dims))
    landscape = Landscape(space.kernel, shape, environment, size, trials)
    return fit_to_space(landscape, space, path, added_knobs=False)


def _read_rows(path: Path) -> list[dict[str, Any]]:
    """A .csv (with a header) or .jsonl file's rows; empty cells and nulls left out."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or exc
        raise LandscapeFileError(f"cannot read {path}: {reason}") from None
    if path.suffix == ".csv":
        rows: list[Any] = list(csv.DictReader(text.splitlines()))
    elif path.suffix == ".jsonl":
        rows = []
        for i, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise LandscapeFileError(f"{path}: line {i}: not valid JSON: {exc}") from None
    else:
        raise LandscapeFileError(f"{path}: give a .csv or .jsonl file")
    for i, row in enumerate(rows, start=1):
        if not isinstance(row, dict):
            raise LandscapeFileError(f"{path}: row {i}: expected an object of columns")
    return [{k: v for k, v in row.items() if v not in ("", None)} for row in rows]


def _trial_of_row(row: Mapping[str, Any], time_column: str) -> dict[str, Any]:
    reserved = {"status", *_TRIAL_KEYS, *_TIME_COLUMNS}
    trial: dict[str, Any] = {k: v for k, v in row.items() if k in reserved - set(_TIME_COLUMNS)}
    trial["config"] = {k: v for k, v in row.items() if k not in reserved}
    time = _optional_float(row, time_column)
    trial["p50_us"] = None if time is None else time * _TIME_COLUMNS[time_column]
    failed = TrialStatus.CRASHED.value  # the row does not say why: the most general failure
    trial.setdefault("status", failed if time is None else TrialStatus.OK.value)
    if time is None and "error" not in trial:
        trial["error"] = "no time recorded"
    return trial


def load_landscape(path: str | Path) -> Landscape:
    """Read a landscape file; a missing or malformed file is one clear error line."""
    path = Path(path)
    try:
        raw = path.read_bytes()
        content = gzip.decompress(raw) if _is_gzip(path) else raw
        text = content.decode()
    except (OSError, EOFError, zlib.error, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or exc
        raise LandscapeFileError(f"cannot read landscape {path}: {reason}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise LandscapeFileError(f"{path}: not valid JSON: {exc}") from None
    try:
        landscape = Landscape.from_dict(data)
    except ValueError as exc:
        raise LandscapeFileError(f"{path}: not a landscape: {exc}") from None
    landscape.content_sha256 = hashlib.sha256(content).hexdigest()
    return landscape


def save_landscape(landscape: Landscape, path: str | Path) -> Path:
    """Write a landscape file (one trial per line, so diffs of recorded data stay small);
    a name ending in .gz is gzip-compressed (full-space landscapes are megabytes of JSON)."""
    path = Path(path)
    data = landscape.to_dict()
    trials = data.pop("trials")
    head = json.dumps(data, sort_keys=True)
    lines = [json.dumps(t, sort_keys=True, allow_nan=False) for t in trials]
    body = "[\n  " + ",\n  ".join(lines) + "\n]" if lines else "[]"
    text = head[:-1] + ', "trials": ' + body + "}\n"
    data_bytes = text.encode()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # mtime=0: the same landscape always gives the same bytes.
        path.write_bytes(gzip.compress(data_bytes, mtime=0) if _is_gzip(path) else data_bytes)
    except OSError as exc:
        reason = exc.strerror or exc
        raise LandscapeFileError(f"cannot write landscape {path}: {reason}") from None
    return path


def _is_gzip(path: Path) -> bool:
    return path.suffix == ".gz"


def _optional_float(data: Mapping[str, Any], key: str) -> float | None:
    value = data.get(key)
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{key!r} must be a number, got {value!r}") from None
    if math.isnan(number):
        return None
    return number
