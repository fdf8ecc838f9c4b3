"""A benchmark suite: every strategy on every landscape of a manifest (`evotune compare --suite`).

A suite is a YAML manifest beside its landscape files (tests/data/landscapes/suite.yaml):
each landscape's file, how many configs it records, whether it is in the tuning subset (the
only landscapes a strategy's defaults may be chosen on; the others are held out), and its
provenance. An entry may name a made-up landscape instead of a file (`synthetic: needle`,
a shape and a seed: evotune/synthetic_landscapes.py, tests/data/landscapes/synthetic.yaml).
Each (landscape, strategy, seed) run is `compare_strategies`'s run, going on until the
tightest target; the evaluations to each looser target are read off the same run's best
curve. The table reports the held-out landscapes apart from the tuning subset.

A strategy may carry settings and its own cap and number of seeds: `evolution[parzen_weight=0]`,
`tpe@300/10` (cap 300, 10 seeds), `tpe@/10` (10 seeds at the common cap).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from evotune.compare import check_comparison, compare_strategies
from evotune.errors import LandscapeFileError, UserError
from evotune.kerneltuner import is_kernel_tuner_strategy
from evotune.landscape import Landscape, fit_to_space, load_landscape
from evotune.landscape_runs import RunResult
from evotune.search.registry import default_settings
from evotune.space import SearchSpace, load_space
from evotune.synthetic_landscapes import KINDS, SHAPES, SyntheticSpec

__all__ = [
    "DEFAULT_TARGETS",
    "Ratio",
    "StrategySpec",
    "Suite",
    "SuiteEntry",
    "SuiteLandscape",
    "SuiteReport",
    "SuiteRow",
    "load_suite",
    "parse_strategies",
    "prepare_suite",
    "render_suite",
    "run_suite",
]

DEFAULT_TARGETS = (0.02, 0.05)
_REQUIRED = {"tuning": bool, "configs": int}
_FILE = {"file": str}
_SYNTHETIC = {"synthetic": str, "shape": str, "seed": int}


@dataclass(frozen=True)
class SuiteEntry:
    """One landscape of a manifest: its file or made-up landscape, size, subset, and the rest
    as provenance (a made-up landscape has none: its spec says how it was made)."""

    # A file's name without .json / .json.gz, or a made-up one's `KIND:SHAPE:SEED`.
    name: str
    source: Path | SyntheticSpec
    tuning: bool
    configs: int
    provenance: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        if isinstance(self.source, Path):
            source: dict[str, Any] = {"file": str(self.source)}
        else:
            spec = self.source
            source = {"synthetic": spec.kind, "shape": spec.shape, "seed": spec.seed}
        return {
            "name": self.name,
            **source,
            "tuning": self.tuning,
            "configs": self.configs,
            **self.provenance,
        }


@dataclass(frozen=True)
class Suite:
    path: Path
    entries: list[SuiteEntry]

    def select(self, names: Sequence[str]) -> Suite:
        """Only the named landscapes, in the manifest's order."""
        known = {e.name for e in self.entries}
        unknown = [n for n in names if n not in known]
        if unknown:
            raise UserError(
                f"--only: {', '.join(unknown)} not in the suite {self.path}; "
                f"its landscapes: {', '.join(e.name for e in self.entries)}"
            )
        return Suite(self.path, [e for e in self.entries if e.name in names])


def load_suite(path: str | Path) -> Suite:
    """Read a suite manifest; a missing or malformed one is one UserError line."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise UserError(f"cannot read suite {path}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise UserError(f"{path}: not valid YAML: {exc}") from None
    items = data.get("landscapes") if isinstance(data, dict) else None
    if not isinstance(items, list) or not items:
        raise UserError(f"{path}: a suite is a mapping with a non-empty list 'landscapes'")
    entries = [_entry(path, i, item) for i, item in enumerate(items)]
    names = [e.name for e in entries]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise UserError(f"{path}: landscapes named twice: {', '.join(twice)}")
    return Suite(path, entries)


def _entry(path: Path, index: int, item: Any) -> SuiteEntry:
    where = f"{path}: landscapes[{index}]"
    if not isinstance(item, dict) or ("file" in item) == ("synthetic" in item):
        raise UserError(
            f"{where}: expected a mapping with either 'file' (a landscape file) or "
            f"'synthetic' ({' or '.join(KINDS)}), and {', '.join(_REQUIRED)}"
        )
    if "file" in item:
        _check_types(where, item, {**_FILE, **_REQUIRED})
        file = Path(item["file"])
        name = file.name.removesuffix(".gz").removesuffix(".json")
        provenance = {k: v for k, v in item.items() if k not in {**_FILE, **_REQUIRED}}
        return SuiteEntry(name, path.parent / file, item["tuning"], item["configs"], provenance)
    _check_types(where, item, {**_SYNTHETIC, **_REQUIRED})
    # No provenance beside a made-up landscape's spec: an unknown key is a typo or a
    # parameter the generator does not take.
    unknown = sorted(set(item) - {*_SYNTHETIC, *_REQUIRED})
    if unknown:
        raise UserError(
            f"{where}: a synthetic landscape takes {', '.join([*_SYNTHETIC, *_REQUIRED])}; "
            f"not {', '.join(map(str, unknown))}"
        )
    for key, known in (("synthetic", KINDS), ("shape", SHAPES)):
        if item[key] not in known:
            raise UserError(f"{where}: {key!r} is one of {', '.join(known)}, not {item[key]!r}")
    spec = SyntheticSpec(item["synthetic"], item["shape"], item["seed"])
    return SuiteEntry(spec.name, spec, item["tuning"], item["configs"])


def _check_types(where: str, item: Mapping[str, Any], types: Mapping[str, type]) -> None:
    for key, kind in types.items():
        # (bool is an int: `configs: true` is refused too.)
        value = item.get(key)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise UserError(f"{where}: {key!r} must be a {kind.__name__}, not {value!r}")


@dataclass(frozen=True)
class StrategySpec:
    """One strategy of `--strategies` with its settings and, where given, its own plan."""

    text: str  # as given: the row's name in the table
    name: str
    settings: dict[str, Any]
    max_evals: int | None = None
    seeds: int | None = None


_SPEC = re.compile(
    r"(?P<name>[^\[\]@,]+)(?:\[(?P<settings>[^\[\]]*)\])?(?:@(?P<cap>\d*)(?:/(?P<seeds>\d+))?)?"
)


def parse_strategies(text: str) -> list[StrategySpec]:
    """`NAME`, `NAME[key=value,...]` (values as JSON where they parse, else text) and a
    `@CAP/SEEDS` suffix (either part may be left out), separated by commas outside
    brackets. Malformed specs and unknown settings of evotune's strategies are UserErrors;
    unknown names are left to `check_comparison`."""
    specs = [_spec(part) for part in _split(text) if part]
    texts = [s.text for s in specs]
    twice = sorted({t for t in texts if texts.count(t) > 1})
    if twice:
        raise UserError(f"--strategies: {', '.join(twice)} given twice")
    return specs


def _split(text: str) -> Iterator[str]:
    depth, current = 0, ""
    for char in text:
        depth += {"[": 1, "]": -1}.get(char, 0)
        if char == "," and depth == 0:
            yield current.strip()
            current = ""
        else:
            current += char
    yield current.strip()


def _spec(text: str) -> StrategySpec:
    match = _SPEC.fullmatch(text)
    if match is None:
        raise UserError(
            f"--strategies: cannot read {text!r}; write NAME, NAME[key=value,...] or "
            "NAME@CAP/SEEDS (e.g. evolution[parzen_weight=0], tpe@300/10)"
        )
    name = match["name"].strip()
    settings: dict[str, Any] = {}
    for item in filter(None, (match["settings"] or "").split(",")):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--strategies: {text!r}: a setting is key=value, not {item!r}")
        try:
            settings[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            settings[key.strip()] = value.strip()
    if settings and not is_kernel_tuner_strategy(name):
        known = default_settings(name)  # an unknown name: one UserError line
        unknown = sorted(set(settings) - set(known))
        if unknown:
            raise UserError(
                f"--strategies: {name} has no setting {', '.join(unknown)}; "
                f"known: {', '.join(sorted(known))}"
            )
    cap = int(match["cap"]) if match["cap"] else None
    seeds = int(match["seeds"]) if match["seeds"] else None
    if cap == 0 or seeds == 0:
        raise UserError(f"--strategies: {text!r}: a cap and a number of seeds are at least 1")
    return StrategySpec(text, name, settings, cap, seeds)


@dataclass(frozen=True)
class SuiteLandscape:
    """A suite entry loaded and fitted to its kernel's space, as `evotune compare` reads it."""

    entry: SuiteEntry
    landscape: Landscape
    space: SearchSpace


def prepare_suite(
    suite: Suite, specs: Sequence[StrategySpec], seeds: int, start: str
) -> list[SuiteLandscape]:
    """Load every landscape of the suite and check it and the strategies, so that whatever
    cannot run is refused (UserError) before the first run starts."""
    prepared = []
    for entry in suite.entries:
        landscape = _landscape(suite, entry)
        if len(landscape) != entry.configs:
            # (A made-up landscape holds every valid config: its space has changed.)
            what = entry.source if isinstance(entry.source, Path) else entry.name
            raise UserError(
                f"suite {suite.path}: {what} records {len(landscape)} configs, the suite says "
                f"{entry.configs}: not the landscape it describes"
            )
        interpreted = bool(landscape.environment.get("interpreted"))
        space = load_space(landscape.kernel).searched(landscape.restrict, interpreted)
        check_comparison(landscape, [s.name for s in specs], seeds, start)
        prepared.append(SuiteLandscape(entry, landscape, space))
    return prepared


def _landscape(suite: Suite, entry: SuiteEntry) -> Landscape:
    if isinstance(entry.source, SyntheticSpec):
        return entry.source.build()
    try:
        recorded = load_landscape(entry.source)
        return fit_to_space(recorded, load_space(recorded.kernel), entry.source)
    except LandscapeFileError as exc:
        raise UserError(f"suite {suite.path}: {exc}") from None


@dataclass(frozen=True)
class SuiteRow:
    """One (landscape, target, strategy) of the table, over its seeds."""

    landscape: str
    tuning: bool
    target: float
    strategy: str
    max_evals: int  # the runs' cap: a run that never reached the target counts as cap + 1
    evals_to_target: list[int | None]  # per seed (0, 1, ...); None: never within the target
    ended: list[str]  # per seed: why the run ended (`RunResult.ended`)

    def counted(self) -> np.ndarray:
        capped = [self.max_evals + 1 if e is None else e for e in self.evals_to_target]
        return np.array(capped, dtype=float)

    @property
    def median(self) -> float:
        return float(np.median(self.counted()))

    @property
    def quartiles(self) -> tuple[float, float]:
        q25, q75 = np.percentile(self.counted(), [25, 75])
        return float(q25), float(q75)

    @property
    def not_reached(self) -> float:
        return sum(e is None for e in self.evals_to_target) / len(self.evals_to_target)

    @property
    def past_cap(self) -> bool:
        return self.median > self.max_evals

    def to_dict(self) -> dict[str, Any]:
        q25, q75 = self.quartiles
        return {
            "landscape": self.landscape,
            "tuning": self.tuning,
            "target": self.target,
            "strategy": self.strategy,
            "seeds": len(self.evals_to_target),
            "max_evals": self.max_evals,
            "median_evals": self.median,
            "q25_evals": q25,
            "q75_evals": q75,
            "not_reached": self.not_reached,
            "evals_to_target": self.evals_to_target,
            "ended": self.ended,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SuiteRow:
        """From `to_dict`'s output; the statistics are computed again from the runs."""
        return cls(
            landscape=str(data["landscape"]),
            tuning=bool(data["tuning"]),
            target=float(data["target"]),
            strategy=str(data["strategy"]),
            max_evals=int(data["max_evals"]),
            evals_to_target=[None if e is None else int(e) for e in data["evals_to_target"]],
            ended=[str(e) for e in data["ended"]],
        )


@dataclass(frozen=True)
class Ratio:
    """Another row's median over this row's: how many times the evaluations it needs."""

    strategy: str
    ratio: float
    lower_bound: bool  # the other's median is past its cap: it needs at least this many times

    def __str__(self) -> str:
        return f"{'>=' if self.lower_bound else ''}{self.ratio:.2f}x"


@dataclass(frozen=True)
class SuiteReport:
    """Everything `evotune compare --suite` shows."""

    suite: str
    start: str
    targets: list[float]
    landscapes: list[dict[str, Any]]  # the manifest's entries, with the landscape's best p50
    rows: list[SuiteRow]

    def row(self, landscape: str, target: float, strategy: str) -> SuiteRow:
        for r in self.rows:
            if (r.landscape, r.target, r.strategy) == (landscape, target, strategy):
                return r
        raise KeyError((landscape, target, strategy))

    def best_other(self, row: SuiteRow) -> Ratio | None:
        """The other strategy with the lowest median on the same landscape and target (not
        the same strategy with other settings or plan: `evolution[...]` beside `evolution`)."""
        others = [r for r in self._beside(row) if _base(r.strategy) != _base(row.strategy)]
        return _ratio(min(others, key=lambda r: r.median), row) if others else None

    def versus_random(self, row: SuiteRow) -> Ratio | None:
        random = [r for r in self._beside(row) if r.strategy == "random" and r is not row]
        return _ratio(random[0], row) if random else None

    def _beside(self, row: SuiteRow) -> list[SuiteRow]:
        return [r for r in self.rows if (r.landscape, r.target) == (row.landscape, row.target)]

    def to_dict(self) -> dict[str, Any]:
        rows = []
        for row in self.rows:
            best, random = self.best_other(row), self.versus_random(row)
            rows.append(
                {
                    **row.to_dict(),
                    "best_other": None if best is None else asdict(best),
                    "vs_random": None if random is None else asdict(random),
                }
            )
        return {
            "suite": self.suite,
            "start": self.start,
            "targets": self.targets,
            "landscapes": self.landscapes,
            "rows": rows,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SuiteReport:
        return cls(
            suite=str(data["suite"]),
            start=str(data["start"]),
            targets=[float(t) for t in data["targets"]],
            landscapes=[dict(e) for e in data["landscapes"]],
            rows=[SuiteRow.from_dict(r) for r in data["rows"]],
        )


def _base(spec: str) -> str:
    """The strategy's name in a spec: `tpe` of `tpe[...]@300/10`."""
    return spec.partition("[")[0].partition("@")[0].strip()


def _ratio(other: SuiteRow, row: SuiteRow) -> Ratio | None:
    """None where this row's median is past its cap: how many times fewer is unknown."""
    if row.past_cap:
        return None
    return Ratio(other.strategy, other.median / row.median, other.past_cap)


def run_suite(
    suite: Suite,
    prepared: Sequence[SuiteLandscape],
    specs: Sequence[StrategySpec],
    seeds: int,
    targets: Sequence[float] = DEFAULT_TARGETS,
    max_evals: int | None = None,
    start: str = "random",
    on_run: Callable[[str, RunResult], None] | None = None,
) -> SuiteReport:
    """Run each strategy with seeds 0..N-1 (N: its own, else `seeds`) on each prepared
    landscape until the tightest target or the cap (its own, else `max_evals`, else
    `compare`'s default: 15 % of the space, at least 100). `on_run` hears of each run as it
    ends, with a label: its landscape's name and strategy spec."""
    targets = sorted(set(targets))
    rows: list[SuiteRow] = []
    landscapes = []
    for item in prepared:
        best = item.landscape.best_p50_us
        assert best is not None  # prepare_suite checked it
        landscapes.append({**item.entry.to_dict(), "best_p50_us": best})
        for spec in specs:
            report = compare_strategies(
                item.landscape,
                item.space,
                [spec.name],
                seeds=spec.seeds or seeds,
                target=targets[0],
                budgets=(),
                max_evals=spec.max_evals or max_evals,
                settings={spec.name: spec.settings},
                start=start,
                on_run=None
                if on_run is None
                else partial(on_run, f"{item.entry.name} {spec.text}"),
            )
            runs = report.summaries[0].runs
            for target in targets:
                threshold = best * (1.0 + target)
                row = SuiteRow(
                    landscape=item.entry.name,
                    tuning=item.entry.tuning,
                    target=target,
                    strategy=spec.text,
                    max_evals=report.max_evals,
                    evals_to_target=[_evals_to(run.best_curve, threshold) for run in runs],
                    ended=[run.ended for run in runs],
                )
                rows.append(row)
    order = {item.entry.name: i for i, item in enumerate(prepared)}
    rows.sort(key=lambda r: (order[r.landscape], r.target))  # stable: strategies as given
    return SuiteReport(str(suite.path), start, targets, landscapes, rows)


def _evals_to(curve: Sequence[float], threshold: float) -> int | None:
    return next((i + 1 for i, best in enumerate(curve) if best <= threshold), None)


def render_suite(report: SuiteReport) -> str:
    """The report as markdown: the held-out landscapes' table, then the tuning subset's."""
    parts = [
        f"Suite {report.suite}: median evaluations to within each target of the landscape's "
        f"best, runs started from {report.start!r}. A run that never reached the target "
        "counts as cap + 1 (a median past the cap prints as >cap); `x / it` is the other "
        "strategy's median over this row's."
    ]
    sections = (
        ("Held out", False, "no strategy's defaults were chosen on these"),
        ("Tuning subset", True, "strategy defaults were chosen on these: no held-out result"),
    )
    for title, tuning, why in sections:
        rows = [r for r in report.rows if r.tuning is tuning]
        if rows:
            parts.append(f"**{title}** ({why})\n\n" + _table(report, rows))
    return "\n\n".join(parts) + "\n"


def _table(report: SuiteReport, rows: Sequence[SuiteRow]) -> str:
    lines = [
        "| landscape | target | strategy | seeds | cap | evals to target (median) | IQR | "
        "never reached | best other / it | random / it |",
        "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | --- | ---: |",
    ]
    for row in rows:
        q25, q75 = row.quartiles
        best, random = report.best_other(row), report.versus_random(row)
        cells = [
            row.landscape,
            f"{row.target:.0%}",
            row.strategy,
            str(len(row.evals_to_target)),
            str(row.max_evals),
            _evals(row.median, row.max_evals),
            f"{_evals(q25, row.max_evals)}-{_evals(q75, row.max_evals)}",
            f"{row.not_reached:.0%}",
            "-" if best is None else f"{best} ({best.strategy})",
            "-" if random is None else str(random),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _evals(value: float, cap: int) -> str:
    return f">{cap}" if value > cap else f"{value:g}"
