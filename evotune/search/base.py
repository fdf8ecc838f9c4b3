"""The strategy protocol: `ask(n)` for candidates, `tell(observations)` with their outcomes.

Strategies never touch the GPU or the database (docs/architecture.md): the runner asks, evaluates,
stores and tells. A resumed study rebuilds a strategy by telling it the stored history.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from evotune.records import Config, Dims, TrialStatus, config_hash
from evotune.search.stopping import no_improvement
from evotune.space import SearchSpace

__all__ = ["Candidate", "Observation", "Strategy", "TuningLandscape"]


@dataclass(frozen=True)
class Candidate:
    """A config a strategy wants measured, with its lineage."""

    config: Config
    generation: int = 0
    parents: tuple[str, ...] = ()
    operator: str = "seed"

    @property
    def config_hash(self) -> str:
        return config_hash(self.config)


@dataclass(frozen=True)
class Observation:
    """The outcome of one candidate, as a strategy sees it."""

    config: Config
    status: TrialStatus
    p50_us: float | None = None
    generation: int = 0
    parents: tuple[str, ...] = ()
    operator: str = "seed"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def config_hash(self) -> str:
        return config_hash(self.config)

    @property
    def ok(self) -> bool:
        return self.status is TrialStatus.OK and self.p50_us is not None

    def fitness(self) -> float:
        """Lower is better; every failed trial ranks below every ok trial."""
        return self.p50_us if self.ok and self.p50_us is not None else float("inf")


@dataclass(frozen=True)
class TuningLandscape:
    """A landscape a strategy's defaults were chosen on: its file (from the repository root)
    and the sha256 of its uncompressed text (`Landscape.content_sha256`)."""

    path: str
    sha256: str


class Strategy(abc.ABC):
    """Base of every search strategy. Subclasses set `name` and implement ask/tell."""

    name: ClassVar[str]
    # The landscapes its defaults were tuned on (the tuning subset of the hold-out protocol,
    # docs/lab/search-holdout.md): `evotune compare` marks its results there, since they are
    # no evidence of how it does elsewhere. Empty: not tuned on any landscape of this repository.
    tuned_on: ClassVar[tuple[TuningLandscape, ...]] = ()

    def __init__(
        self,
        space: SearchSpace,
        dims: Dims,
        seed: int,
        settings: dict[str, Any] | None = None,
        seed_configs: Sequence[Config] = (),
    ) -> None:
        self.space = space
        self.dims = dims
        self.seed = seed
        # Given settings override the strategy's defaults, so a study stores complete settings.
        self.settings = {**self.default_settings(), **(settings or {})}
        # Configs to try first: the space default and the best of nearby tuned shapes.
        self.seed_configs = [space.normalize(c) for c in seed_configs]
        self.seen: set[str] = set()
        # Best fitness told per generation: what the no-improvement stopping rule reads.
        self.generation_best: dict[int, float] = {}
        # The generation the next ask() carries: one past every generation asked or told.
        self.generation = 0
        self._setup()

    def _setup(self) -> None:  # noqa: B027 (an optional hook, not abstract)
        """The subclass's own state, built once the common state above exists."""

    @classmethod
    def default_settings(cls) -> dict[str, Any]:
        """Every setting this strategy reads, with its default (stored with the study).

        `batch_size`: candidates per ask (a generation); `patience_generations` G and
        `min_improvement` x (a fraction: 0.01 = 1%): stop once the best has not improved
        by x over the last G generations (G = 0 turns the rule off).
        """
        return {"batch_size": 16, "patience_generations": 0, "min_improvement": 0.01}

    @classmethod
    def was_tuned_on(cls, content_sha256: str | None) -> bool:
        """Whether its defaults were tuned on the landscape of this content hash."""
        return content_sha256 is not None and any(t.sha256 == content_sha256 for t in cls.tuned_on)

    @property
    def generation_size(self) -> int:
        """How many candidates the runner should ask for per generation."""
        return max(1, int(self.settings["batch_size"]))

    @property
    def exhausted(self) -> bool:
        """True once the strategy has nothing new to propose (ask would return [])."""
        return False

    def should_stop(self) -> bool:
        """The no-improvement rule over the generations told so far."""
        return no_improvement(
            self.generation_best,
            patience_generations=int(self.settings.get("patience_generations", 0) or 0),
            min_improvement=float(self.settings.get("min_improvement", 0.0) or 0.0),
        )

    @abc.abstractmethod
    def ask(self, n: int) -> list[Candidate]:
        """Up to n new candidates never asked before; fewer (or none) when exhausted."""

    def tell(self, observations: Sequence[Observation]) -> None:
        """Learn from finished candidates. The base records them as seen."""
        for obs in observations:
            self.seen.add(obs.config_hash)
            best = self.generation_best.get(obs.generation, float("inf"))
            self.generation_best[obs.generation] = min(best, obs.fitness())
            self.generation = max(self.generation, obs.generation + 1)

    def restore(self, history: Sequence[Observation]) -> None:
        """Rebuild state from a resumed study's history (in trial order)."""
        self.tell(history)

    def begin_generation(self) -> int:
        """The generation number for this ask; the next ask gets the one after it."""
        generation = self.generation
        self.generation += 1
        return generation

    def is_valid(self, config: Config) -> bool:
        return not self.space.violations(config, self.dims)
