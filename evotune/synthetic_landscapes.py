"""Made-up landscapes of the attention space, for replaying the search strategies on the CPU.

NOT measured data: a made-up latency model with the features real landscapes have, so that
strategies can be exercised and compared without a GPU:

- a smooth-ish main effect per parameter (tile sizes dominate, flags matter by a few %),
- interactions (big query tiles want 8 warps; 128x128 tiles on 4 warps spill registers;
  warp specialization pays only with TMA and pipelining; gluon has its own knobs),
- failures in whole regions: out_of_resources when the tiles times the pipeline stages
  exceed shared memory, invalid where gluon consumers run short of registers after all (a
  region inside the space: the space's own register model already leaves out the rest),
- unexplained per-config structure (random pairwise effects, a deterministic jitter) and
  measurement noise.

Every coefficient is drawn from a range by `seed`, so each seed is a different landscape and
the same seed the same one, in any process. Two kinds reshape the model: `with_needle` (one
config alone within 2 %) and `with_branch_corner` (the fastest configs in a corner of a branch
other than the default's). A suite manifest names one by kind, shape and seed
(`SyntheticSpec`; `evotune compare --suite`, tests/data/landscapes/synthetic.yaml and
synthetic-branch.yaml).
"""

from __future__ import annotations

import hashlib
import math
import random
from collections import Counter
from dataclasses import dataclass, replace
from itertools import product

from evotune.landscape import Landscape, LandscapeTrial
from evotune.records import Config, Dims, TrialStatus, config_hash
from evotune.search.grid import valid_configs
from evotune.space import SearchSpace, Shape, load_space

__all__ = [
    "KINDS",
    "SHAPES",
    "SyntheticSpec",
    "synthetic_landscape",
    "with_branch_corner",
    "with_needle",
]

# `plain`: the modelled landscape; `needle`: the same with one config alone within 2 %;
# `branch`: the same with every config within 5 % in a corner of a non-default branch.
KINDS = ("plain", "needle", "branch")

# Named shapes of the attention space (search_spaces/attention.yaml) the model is made for.
SHAPES = ("mission", "llama-d128")

SMEM_LIMIT = 227 * 1024  # bytes per SM on Hopper


def synthetic_landscape(
    space: SearchSpace | None = None,
    shape: str = "mission",
    seed: int = 0,
    noise: float = 0.01,
) -> Landscape:
    """Every valid config of the attention space with a modelled outcome (see module doc)."""
    space = space or load_space("attention")
    dims = space.shape(shape).dims
    model = _Model(space, dims, random.Random(f"synthetic:{shape}:{seed}"))
    trials: list[LandscapeTrial] = []
    for config in valid_configs(space, dims):
        status, p50 = model.outcome(config)
        if status is TrialStatus.OK:
            rng = random.Random(f"noise:{seed}:{config_hash(config)}")
            p50 *= math.exp(rng.gauss(0.0, noise))
            trials.append(LandscapeTrial(config, status, p50_us=round(p50, 3), n_runs=50))
        else:
            trials.append(LandscapeTrial(config, status, error=f"synthetic {status.value}"))
    return Landscape(
        kernel=space.kernel,
        shape=Shape(shape, dict(dims)),
        environment={"gpu": "synthetic", "synthetic": True, "seed": seed},
        space_size=len(trials),
        trials=trials,
    )


def with_needle(landscape: Landscape, seed: int, share: float = 0.03) -> Landscape:
    """The landscape with one needle: a config drawn by `seed` from its best `share` of ok
    configs (not the best) made 3 % faster than the best, so that it alone is within 2 %
    of the best, as on a landscape where one combination of knobs wins (mission-full-h200's
    2 % target has one config). What a search that stops or settles early misses."""
    ranked = sorted((t for t in landscape.trials if t.ok and t.p50_us), key=_p50)
    best = _p50(ranked[0])
    needle = random.Random(f"needle:{seed}").choice(ranked[1 : max(2, int(share * len(ranked)))])
    trials = [
        replace(t, p50_us=round(0.97 * best, 3)) if t is needle else t for t in landscape.trials
    ]
    return _retimed(landscape, trials, needle=seed)


@dataclass(frozen=True)
class SyntheticSpec:
    """A made-up landscape as a suite manifest names it: a kind of `KINDS`, a shape of
    `SHAPES`, and the seed of both the model and the needle."""

    kind: str
    shape: str
    seed: int

    @property
    def name(self) -> str:
        return f"{self.kind}:{self.shape}:{self.seed}"

    def build(self) -> Landscape:
        landscape = synthetic_landscape(None, self.shape, self.seed)
        if self.kind == "needle":
            return with_needle(landscape, self.seed)
        if self.kind == "branch":
            return with_branch_corner(landscape, self.seed)
        return landscape


# The corner of `with_branch_corner`: its share of the working configs, the share of them
# within 5 % of the best, and how much slower the best config outside it is.
_CORNER_SIZE = (0.05, 0.25)
_CORNER_WITHIN_5 = 0.03
_CORNER_GAP = 1.06


def with_branch_corner(
    landscape: Landscape, seed: int, space: SearchSpace | None = None
) -> Landscape:
    """The landscape with its fastest configs in one corner of a branch other than the
    default's: the configs of another `impl` (drawn by `seed`) that take one value, not the
    default, of a knob both branches have and one, not the default, of a knob only that
    branch has (a corner of 5–25 % of the working configs, drawn by `seed`). The corner's
    latencies are compressed toward its best, which becomes the best, so that 3 % of the
    working configs are within 5 % of it, all in the corner; every config outside it is at
    least 6 % slower. So a search that leans on the default config's branch or values finds
    nothing within 5 % there, as on a recording whose fastest configs all sit in the other
    branch at other values than its defaults (llama-d128-full-h200: docs/lab/search-holdout.md)."""
    space = space or load_space(landscape.kernel)
    params = space.parameters
    rng = random.Random(f"corner:{seed}")
    default = params["impl"].default
    ok = [t for t in landscape.trials if t.ok and t.p50_us]
    branch = rng.choice(sorted({t.config["impl"] for t in ok} - {default}))
    inside = [t for t in ok if t.config["impl"] == branch]
    home = [t for t in ok if t.config["impl"] == default]
    everywhere = _knobs_of_all(inside)
    shared = [n for n in params if n != "impl" and n in everywhere & _knobs_of_all(home)]
    own = sorted(everywhere - {n for t in home for n in t.config})
    sizes = Counter((k, t.config[k], m, t.config[m]) for t in inside for k in shared for m in own)
    corners = [
        (k, v, m, w)
        for k in shared
        for m in own
        for v, w in product(params[k].choices(), params[m].choices())
        if v != params[k].default
        and w != params[m].default
        and _CORNER_SIZE[0] * len(ok) <= sizes[(k, v, m, w)] <= _CORNER_SIZE[1] * len(ok)
    ]
    shared_knob, shared_value, own_knob, own_value = rng.choice(corners)
    corner = {"impl": branch, shared_knob: shared_value, own_knob: own_value}

    def in_corner(config: Config) -> bool:
        return all(config.get(name) == value for name, value in corner.items())

    ranked = sorted(_p50(t) for t in ok if in_corner(t.config))
    top = min(_p50(t) for t in ok if not in_corner(t.config)) / _CORNER_GAP
    edge = ranked[max(1, min(len(ranked) // 2, int(_CORNER_WITHIN_5 * len(ok))))] / ranked[0]
    power = math.log(1.05) / math.log(edge)  # the config at `edge` lands at 1.05 x the best
    trials = [
        replace(t, p50_us=round(top * (_p50(t) / ranked[0]) ** power, 3))
        if t.ok and t.p50_us and in_corner(t.config)
        else t
        for t in landscape.trials
    ]
    return _retimed(landscape, trials, corner=corner)


def _retimed(landscape: Landscape, trials: list[LandscapeTrial], **made: object) -> Landscape:
    """`landscape` with `trials` instead of its own, and how they were made in its environment."""
    return Landscape(
        kernel=landscape.kernel,
        shape=landscape.shape,
        environment={**landscape.environment, **made},
        space_size=landscape.space_size,
        trials=trials,
    )


def _knobs_of_all(trials: list[LandscapeTrial]) -> set[str]:
    """The parameters every one of these configs has (active in all of them)."""
    return set.intersection(*(set(t.config) for t in trials))


def _p50(trial: LandscapeTrial) -> float:
    assert trial.p50_us is not None
    return trial.p50_us


# How much each parameter's main effect may move log(latency): tiles dominate, knobs trim.
_AMPLITUDE: dict[str, tuple[float, float]] = {
    "BLOCK_M": (0.2, 0.45),
    "BLOCK_N": (0.1, 0.3),
    "impl": (0.0, 0.15),
    "num_warps": (0.03, 0.12),
    "num_stages": (0.03, 0.12),
    "KV_STAGES": (0.03, 0.12),
    "CONSUMER_WGS": (0.03, 0.12),
}
_SMALL = (0.01, 0.06)


class _Model:
    """log(latency) = base + main effects + physical interactions + random pair effects
    + a deterministic per-config jitter. Written against parameter names of the attention
    space, reading each with a default, so it follows edits of the space file."""

    def __init__(self, space: SearchSpace, dims: Dims, rng: random.Random) -> None:
        self.space = space
        self.dims = dims
        d, s = int(dims["D"]), int(dims["S"])
        flops = 4.0 * int(dims["B"]) * int(dims["H"]) * s * s * d / (2 if dims["causal"] else 1)
        self.base = math.log(flops / 3.0e8)  # microseconds at ~300 TFLOP/s
        self.bytes = 4 if dims["dtype"] == "float32" else 2
        self.main: dict[str, dict[str, float]] = {}
        for name, param in space.parameters.items():
            low, high = _AMPLITUDE.get(name, _SMALL)
            amp = rng.uniform(low, high)
            choices = param.choices()
            effects: dict[str, float] = {}
            if param.kind in ("ordered", "int") and len(choices) > 1:
                # A smooth bowl over the value index, with its bottom somewhere random.
                opt = rng.uniform(0, len(choices) - 1)
                for i, value in enumerate(choices):
                    bowl = ((i - opt) / (len(choices) - 1)) ** 2
                    effects[repr(value)] = amp * bowl + 0.15 * amp * rng.gauss(0, 1)
            else:
                best = rng.randrange(len(choices))
                for i, value in enumerate(choices):
                    effects[repr(value)] = 0.0 if i == best else amp * rng.uniform(0.2, 1.0)
            self.main[name] = effects
        self.tma_gain = rng.uniform(0.02, 0.06)
        self.ws_gain = rng.uniform(0.03, 0.08)
        names = sorted(space.parameters)
        self.pairs = [tuple(rng.sample(names, 2)) for _ in range(5)]
        self.salt = rng.getrandbits(32)

    def outcome(self, c: Config) -> tuple[TrialStatus, float]:
        failure = self.failure(c)
        if failure is not None:
            return failure, 0.0
        return TrialStatus.OK, math.exp(self.log_latency(c))

    def failure(self, c: Config) -> TrialStatus | None:
        d = int(self.dims["D"])
        bm, bn = int(c.get("BLOCK_M", 128)), int(c.get("BLOCK_N", 64))
        if c.get("impl") == "gluon":
            rows = bm // int(c.get("CONSUMER_WGS", 1))  # per consumer warpgroup
            producer_regs = int(c.get("PRODUCER_REGS", 24))
            # Consumers left short of registers (would spill): 128 rows each with 64-key tiles
            # or beside a 56-register producer, or a second P tile beside a 40-register one.
            if (rows == 128 and (bn >= 64 or producer_regs >= 56)) or (
                int(c.get("P_BUFFERS", 1)) == 2 and producer_regs >= 40
            ):
                return TrialStatus.INVALID
            stages = int(c.get("KV_STAGES", 2))
            smem = self.bytes * (2 * bm * d + 2 * stages * bn * d) + 4096
        else:
            stages = int(c.get("num_stages", 3))
            smem = self.bytes * (bm * d + 2 * stages * bn * d)
            if c.get("TMA"):
                smem += 16 * 1024  # barriers and the output staging tile
            if c.get("WARP_SPECIALIZE"):
                smem += self.bytes * bm * bn
        if smem > SMEM_LIMIT:
            return TrialStatus.OUT_OF_RESOURCES
        return None

    def log_latency(self, c: Config) -> float:
        x = self.base
        for name, value in c.items():
            x += self.main.get(name, {}).get(repr(value), 0.0)
        d = int(self.dims["D"])
        bm, bn = int(c.get("BLOCK_M", 128)), int(c.get("BLOCK_N", 64))
        if c.get("impl") == "gluon":
            if int(c.get("PRODUCER_WARPS", 1)) == 0:
                x += 0.06  # no overlap of loads and math
        else:
            warps, stages = int(c.get("num_warps", 4)), int(c.get("num_stages", 3))
            pressure = bm * (bn + d) / (32.0 * warps)  # fp32 accumulators per thread
            x += 0.25 * max(0.0, pressure - 96.0) / 64.0
            if bm <= 64 and warps == 8:
                x += 0.1  # too few rows per warp
            if c.get("TMA"):
                x += -self.tma_gain if bn >= 64 else 0.01
            if c.get("WARP_SPECIALIZE"):
                x += -self.ws_gain if stages >= 3 else 0.02
        for a, b in self.pairs:
            if a in c and b in c:
                x += 0.03 * _unit_gauss(f"pair:{self.salt}:{a}={c[a]!r}:{b}={c[b]!r}")
        return x + 0.01 * _unit_gauss(f"jitter:{self.salt}:{config_hash(c)}")


def _unit_gauss(key: str) -> float:
    """A standard normal value fixed by a string (deterministic across processes)."""
    digest = hashlib.sha256(key.encode()).digest()
    u1 = (int.from_bytes(digest[:8], "big") + 1) / (2**64 + 2)
    u2 = int.from_bytes(digest[8:16], "big") / 2**64
    return math.sqrt(-2.0 * math.log(u1)) * math.cos(2 * math.pi * u2)
