"""A cheap surrogate that screens offspring: which unmeasured configs look like the best
measured ones?

The tree-Parzen density ratio (Bergstra et al., 2011; Optuna's TPE) over the knobs of a
discrete space: the measured configs are split into the best few ("good") and the rest
("bad", failures included), each set becomes a Parzen density (a mixture of one product
kernel per config, plus a uniform prior), and a candidate scores log l(x) - log g(x).
Multivariate, as Optuna's `multivariate=True`: each kernel is a product over the knobs, so
that a combination of values that only works together (a tile size with a warp count)
scores high without each value scoring high alone.

Numpy only. Configs are rows of value indices (`KnobEncoding`); a knob that does not apply to
a config (outside its branch of the space) is one more value, "absent".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from evotune.records import Config
from evotune.space import SearchSpace

__all__ = ["KnobEncoding", "ParzenRatio", "good_count"]


class KnobEncoding:
    """Configs as integer rows: column i holds the index of knob i's value among its
    choices, or the number of choices where the knob is absent (inactive)."""

    def __init__(self, space: SearchSpace) -> None:
        params = list(space.parameters.values())
        self.names = list(space.parameters)
        self.sizes = [len(p.choices()) for p in params]
        self.ordered = [p.kind in ("ordered", "int") for p in params]
        self._slots = [{v: i for i, v in enumerate(p.choices())} for p in params]

    def encode(self, configs: Sequence[Config]) -> np.ndarray:
        rows = np.empty((len(configs), len(self.names)), dtype=np.intp)
        columns = list(zip(self.names, self._slots, self.sizes, strict=True))
        for r, config in enumerate(configs):
            for c, (name, slots, size) in enumerate(columns):
                # A value outside the choices cannot come from the space; "absent" is the
                # nearest meaning, and it keeps the score defined.
                rows[r, c] = slots.get(config[name], size) if name in config else size
        return rows

    def log_kernels(self, spread: float, bandwidth: float) -> list[np.ndarray]:
        """Per knob, log P[a, b]: the chance of value slot a under the kernel centred on a
        measured config's slot b (slot `size` is "absent"). A share `spread` of each kernel
        is spread evenly over the other slots; an ordered knob puts the rest on a Gaussian
        over the value index (`bandwidth` in index steps), a categorical one on b itself."""
        kernels = []
        for size, ordered in zip(self.sizes, self.ordered, strict=True):
            slots = size + 1
            weights = np.eye(slots)
            if ordered and bandwidth > 0:
                index = np.arange(size)
                gauss = np.exp(-0.5 * ((index[:, None] - index[None, :]) / bandwidth) ** 2)
                weights[:size, :size] = gauss / gauss.sum(axis=0, keepdims=True)
            others = (1.0 - np.eye(slots)) / max(1, slots - 1)
            kernels.append(np.log((1.0 - spread) * weights + spread * others))
        return kernels


def good_count(n_ok: int, gamma: float, most: int) -> int:
    """How many of `n_ok` ranked working configs make the "good" set: a share `gamma`,
    at least one, at most `most` (Optuna's default split is 10 %, at most 25)."""
    return max(1, min(most, math.ceil(gamma * n_ok)))


@dataclass(frozen=True)
class ParzenRatio:
    """log l(x) - log g(x) for encoded candidates: higher looks more like the good set."""

    kernels: list[np.ndarray]
    good: np.ndarray  # encoded rows
    bad: np.ndarray

    @classmethod
    def fit(
        cls,
        encoding: KnobEncoding,
        good: np.ndarray,
        bad: np.ndarray,
        spread: float = 0.2,
        bandwidth: float = 1.0,
    ) -> ParzenRatio:
        return cls(encoding.log_kernels(spread, bandwidth), good, bad)

    def score(self, candidates: np.ndarray) -> np.ndarray:
        return self._log_density(candidates, self.good) - self._log_density(candidates, self.bad)

    def _log_density(self, candidates: np.ndarray, centres: np.ndarray) -> np.ndarray:
        """Log of the mixture of one kernel per centre and a uniform prior (one more
        component, so that an empty or tiny set still gives a finite density)."""
        logs = np.zeros((len(candidates), len(centres) + 1))
        for i, kernel in enumerate(self.kernels):
            logs[:, :-1] += kernel[np.ix_(candidates[:, i], centres[:, i])]
            logs[:, -1] -= math.log(kernel.shape[0])
        top = logs.max(axis=1, keepdims=True)
        mixture = np.log(np.exp(logs - top).sum(axis=1)) + top[:, 0]
        return mixture - math.log(len(centres) + 1)
