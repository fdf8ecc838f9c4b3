"""The hold-out benchmark of the search strategies (docs/lab/search-holdout.md), on the CPU.

Replays strategies on recorded landscapes as `evotune compare` does (the same
`run_on_landscape`), one run per seed, and reads the evaluations to each target off the
same run (a run goes on until the tightest target). Prints a markdown table: per landscape,
target and strategy, the median evaluations, IQR, share of seeds that never reached it, and
the ratios to random and to the best peer run beside it (TPE, CMA-ES, Kernel Tuner's
`kt:NAME`); a landscape in a strategy's tuning subset (`Strategy.tuned_on`) is marked.

Usage (repository root):
    python -m tests.search.holdout_bench LANDSCAPE... --strategies evolution,random
        [--seeds 20] [--cap N] [--start random] [--targets 0.02,0.05] [--json OUT]

A LANDSCAPE is a file, or a made-up landscape of the attention space
(tests/search/synthetic.py): `synthetic:SHAPE:SEED` (e.g. `synthetic:mission:3`), or
`needle:SHAPE:SEED`, the same with one config made the only one within 2 % of the best
(`with_needle`).

A strategy may carry settings: `evolution[parzen_weight=0]` is the evolution with its
tree-Parzen screening off (the defaults before it). `--cap` bounds every run (default: as
`compare`, 15 % of the space, at least 100); a run that does not reach a target counts as
cap + 1, so a median past the cap prints as ">cap". A strategy may have its own cap and
number of seeds (Optuna's samplers are slow on a few cores): `tpe@300/10`.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from evotune.compare import run_on_landscape
from evotune.kerneltuner import is_kernel_tuner_strategy, landscape_to_cache, run_kernel_tuner
from evotune.landscape import Landscape, fit_to_space, load_landscape
from evotune.landscape_runs import RunResult, default_max_evals
from evotune.search.registry import STRATEGIES
from evotune.space import SearchSpace, load_space


def is_peer(name: str) -> bool:
    """The strategies of the "best peer" column (the issue's targets): TPE, CMA-ES and
    Kernel Tuner's (`kt:NAME`)."""
    return name in ("tpe", "cmaes") or is_kernel_tuner_strategy(name)


@dataclass(frozen=True)
class Row:
    landscape: str
    tuned_here: bool
    strategy: str
    target: float
    cap: int
    evals: list[int | None]  # per seed; None: never within the target

    def counted(self) -> np.ndarray:
        return np.array([self.cap + 1 if e is None else e for e in self.evals], dtype=float)

    @property
    def median(self) -> float:
        return float(np.median(self.counted()))

    @property
    def never(self) -> float:
        return sum(e is None for e in self.evals) / len(self.evals)


def parse_strategy(spec: str) -> tuple[str, dict[str, Any]]:
    """`name` or `name[key=value,...]` (values as JSON where they parse, else text); a
    `@cap/seeds` suffix is left to `run_plan`."""
    name, _, rest = spec.split("@")[0].partition("[")
    settings: dict[str, Any] = {}
    for item in filter(None, rest.rstrip("]").split(",")):
        key, _, value = item.partition("=")
        try:
            settings[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            settings[key.strip()] = value.strip()
    return name.strip(), settings


def replay_target(path: Path) -> tuple[Landscape, SearchSpace]:
    """The landscape fitted to its kernel's space, as `evotune compare` reads it; a made-up
    one (`synthetic:SHAPE:SEED`, `needle:SHAPE:SEED`) with the attention space."""
    kind, _, rest = str(path).partition(":")
    if kind in ("synthetic", "needle"):
        try:
            from tests.search import synthetic
        except ModuleNotFoundError:  # run as a script: this folder is on the path, not the root
            import synthetic  # type: ignore[no-redef]
        shape, _, seed = rest.partition(":")
        space = synthetic.attention_space()
        landscape = synthetic.synthetic_landscape(space, shape, int(seed))
        if kind == "needle":
            landscape = synthetic.with_needle(landscape, int(seed))
        return landscape, space
    recorded = load_landscape(path)
    fitted = fit_to_space(recorded, load_space(recorded.kernel), path)
    interpreted = bool(fitted.environment.get("interpreted"))
    return fitted, load_space(fitted.kernel).searched(fitted.restrict, interpreted)


def run_plan(spec: str, cap: int | None, seeds: int) -> tuple[int | None, int]:
    """The cap and number of seeds of a strategy: its own `@cap/seeds`, else the given."""
    _, _, plan = spec.partition("@")
    own_cap, _, own_seeds = plan.partition("/")
    return (int(own_cap) if own_cap else cap), (int(own_seeds) if own_seeds else seeds)


def evals_to(curve: Sequence[float], threshold: float) -> int | None:
    return next((i + 1 for i, best in enumerate(curve) if best <= threshold), None)


def bench(
    path: Path,
    specs: Sequence[str],
    seeds_default: int,
    cap: int | None,
    start: str,
    targets: list[float],
) -> list[Row]:
    landscape, space = replay_target(path)
    best = landscape.best_p50_us
    assert best is not None
    # Kernel Tuner's strategies replay on the landscape as its cache, converted once.
    names = [parse_strategy(spec)[0] for spec in specs]
    kt_cache = (
        landscape_to_cache(landscape, space) if any(map(is_kernel_tuner_strategy, names)) else None
    )
    rows = []
    for spec in specs:
        name, settings = parse_strategy(spec)
        own_cap, seeds = run_plan(spec, cap, seeds_default)
        limit = own_cap or default_max_evals(landscape.space_size)
        started = time.perf_counter()
        per_target: dict[float, list[int | None]] = {t: [] for t in targets}
        for seed in range(seeds):
            run: RunResult
            if is_kernel_tuner_strategy(name):
                run = run_kernel_tuner(
                    landscape,
                    space,
                    name,
                    seed,
                    min(targets),
                    limit,
                    0,
                    settings,
                    start,
                    cache=kt_cache,
                )
            else:
                run = run_on_landscape(
                    landscape, space, name, seed, min(targets), limit, 0, settings, start
                )
            for target in targets:
                per_target[target].append(evals_to(run.best_curve, best * (1 + target)))
        seconds = time.perf_counter() - started
        print(f"  {path.name} {spec}: {seeds} seeds in {seconds:.0f} s", flush=True)
        tuned = name in STRATEGIES and STRATEGIES[name].was_tuned_on(landscape.content_sha256)
        rows += [Row(path.name, tuned, spec, t, limit, per_target[t]) for t in targets]
    return rows


def table(rows: list[Row]) -> str:
    lines = [
        "| landscape | target | strategy | median evals | IQR | never | random / it | "
        "best peer / it |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        same = [r for r in rows if (r.landscape, r.target) == (row.landscape, row.target)]
        q25, q75 = np.percentile(row.counted(), [25, 75])
        median = f">{row.cap}" if row.median > row.cap else f"{row.median:g}"
        random = next((r for r in same if parse_strategy(r.strategy)[0] == "random"), None)
        peers = [r for r in same if is_peer(parse_strategy(r.strategy)[0])]
        peer = min(peers, key=lambda r: r.median) if peers else None
        mark = " (tuning subset)" if row.tuned_here else ""
        lines.append(
            f"| {row.landscape}{mark} | {row.target:.0%} | {row.strategy} | {median} | "
            f"{q25:g}-{q75:g} | {row.never:.0%} | {ratio(random, row)} | {ratio(peer, row)} |"
        )
    return "\n".join(lines)


def ratio(other: Row | None, row: Row) -> str:
    """other's median over this row's; `>=` where other's median is past its cap (a lower
    bound), `-` where this row's is (unknown) or there is no other."""
    if other is None or other is row or row.median > row.cap:
        return "-"
    bound = ">=" if other.median > other.cap else ""
    return f"{bound}{other.median / row.median:.2f}x"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("landscapes", nargs="+", type=Path)
    parser.add_argument("--strategies", default="evolution,random")
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--cap", type=int)
    parser.add_argument("--start", default="random")
    parser.add_argument("--targets", default="0.02,0.05")
    parser.add_argument("--json", type=Path, help="also write every run's evaluations here")
    args = parser.parse_args()
    specs = [s for s in _split_specs(args.strategies) if s]
    targets = sorted(float(t) for t in args.targets.split(","))
    rows: list[Row] = []
    for path in args.landscapes:
        rows += bench(path, specs, args.seeds, args.cap, args.start, targets)
    if args.json:
        args.json.write_text(json.dumps([row.__dict__ for row in rows], indent=1))
    print(table(rows))


def _split_specs(text: str) -> list[str]:
    """Split at commas outside brackets: `evolution[a=1,b=2],random`."""
    specs, depth, current = [], 0, ""
    for char in text:
        depth += {"[": 1, "]": -1}.get(char, 0)
        if char == "," and depth == 0:
            specs.append(current.strip())
            current = ""
        else:
            current += char
    return [*specs, current.strip()]


if __name__ == "__main__":
    main()
