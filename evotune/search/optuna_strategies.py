"""Optuna's TPE, CMA-ES and NSGA-II as baselines, through Optuna's ask/tell interface.

Each parameter maps to an Optuna distribution: categorical parameters to a categorical
distribution, ordered, int and bool parameters to the index of their value (an integer
range, so CMA-ES can treat them as numbers; it samples categoricals with its independent
sampler). Optuna samples every parameter; the config is then normalized, which drops the
inactive ones. So one config can come from many Optuna trials:

- a config already measured: the trial is told the known value (that is its objective);
- a config asked but not yet measured: the trial waits for that config's result;
- an invalid config (breaks a constraint): the trial is told a penalty, and Optuna asks
  again (a bounded number of times; then a random unseen config fills the batch).

Failed trials are told the same penalty: all three samplers rank by value, so a penalty
puts failures below every working config without distorting the rest.
"""

from __future__ import annotations

import abc
import random
import warnings
from collections.abc import Sequence
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, IntDistribution
from optuna.trial import Trial, TrialState, create_trial

from evotune.errors import UserError
from evotune.records import Config, config_hash
from evotune.search.base import Candidate, Observation, Strategy
from evotune.search.grid import valid_configs

__all__ = ["CmaEsStrategy", "NsgaIIStrategy", "OptunaStrategy", "TpeStrategy"]

# The value told for failed or invalid configs (microseconds; far above any real latency).
PENALTY = 1.0e9


class OptunaStrategy(Strategy):
    """Shared plumbing: distributions, decoding, waiting trials, exact restore."""

    @classmethod
    def default_settings(cls) -> dict[str, Any]:
        return {**super().default_settings(), "batch_size": 8, "max_asks_per_candidate": 20}

    def _setup(self) -> None:
        optuna.logging.set_verbosity(optuna.logging.ERROR)
        self._distributions: dict[str, BaseDistribution] = {}
        for name, param in self.space.parameters.items():
            if param.kind == "categorical":
                self._distributions[name] = CategoricalDistribution(param.choices())
            else:
                self._distributions[name] = IntDistribution(0, len(param.choices()) - 1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            sampler = self.make_sampler()
        self.study = optuna.create_study(direction="minimize", sampler=sampler)
        for config in self.seed_configs:
            if self.is_valid(config):
                self.study.enqueue_trial(self._encode(config), skip_if_exists=True)
        self._values: dict[str, float] = {}  # config hash -> value told to Optuna
        self._waiting: dict[str, list[Trial]] = {}  # config hash -> trials awaiting it
        self._rng = random.Random(f"{self.name}:{self.seed}")
        self._exhausted = False

    @abc.abstractmethod
    def make_sampler(self) -> optuna.samplers.BaseSampler:
        """The Optuna sampler, seeded with `self.seed`."""

    @property
    def exhausted(self) -> bool:
        return self._exhausted

    # --- encoding ------------------------------------------------------------------------

    def _encode(self, config: Config) -> dict[str, Any]:
        params: dict[str, Any] = {}
        for name, value in config.items():
            param = self.space.parameters[name]
            params[name] = value if param.kind == "categorical" else param.choices().index(value)
        return params

    def _decode(self, params: dict[str, Any]) -> Config:
        config: Config = {}
        for name, value in params.items():
            param = self.space.parameters[name]
            config[name] = value if param.kind == "categorical" else param.choices()[int(value)]
        return self.space.normalize(config)

    # --- protocol ------------------------------------------------------------------------

    def ask(self, n: int) -> list[Candidate]:
        generation = self.generation
        out: list[Candidate] = []
        # Asking is bounded: per candidate, and by a run of proposals that bring nothing new
        # (the sampler has converged, or the space is nearly exhausted).
        budget = max(20, int(self.settings["max_asks_per_candidate"]) * n)
        fruitless = 0
        for _ in range(budget):
            if len(out) >= n or fruitless >= 2 * n + 10:
                break
            trial = self.study.ask(self._distributions)
            config = self._decode(trial.params)
            key = config_hash(config)
            fruitless += 1
            if key in self._values:
                self.study.tell(trial, self._values[key])
            elif key in self._waiting:
                self._waiting[key].append(trial)
            elif not self.is_valid(config):
                self.study.tell(trial, PENALTY)
            else:
                fruitless = 0
                self._waiting[key] = [trial]
                self.seen.add(key)
                out.append(Candidate(config, generation, (), self.name))
        while len(out) < n:
            # Optuna keeps proposing known configs (a small or nearly exhausted space).
            fill = self._random_unseen()
            if fill is None:
                self._exhausted = True
                break
            self.seen.add(config_hash(fill))
            out.append(Candidate(fill, generation, (), "random"))
        if out:
            self.begin_generation()
        return out

    def tell(self, observations: Sequence[Observation]) -> None:
        super().tell(observations)
        for obs in observations:
            key = obs.config_hash
            value = obs.p50_us if obs.ok and obs.p50_us is not None else PENALTY
            self._values.setdefault(key, value)
            trials = self._waiting.pop(key, None)
            if trials:
                for trial in trials:
                    self.study.tell(trial, self._values[key])
            else:
                self._add_known(obs.config, self._values[key])

    def restore(self, history: Sequence[Observation]) -> None:
        """Re-drive the sampler generation by generation while the history is what this
        strategy (same seed) would have asked: then the sampler's internal state, and so
        the next ask, equal the uninterrupted run's. From the first mismatch on (another
        strategy's history, a half-finished generation) the rest is added as known trials."""
        groups: dict[int, list[Observation]] = {}
        for obs in history:
            groups.setdefault(obs.generation, []).append(obs)
        replaying = True
        for generation in sorted(groups):
            group = groups[generation]
            if replaying and generation == self.generation:
                asked = self.ask(len(group))
                if {c.config_hash for c in asked} != {o.config_hash for o in group}:
                    self._unask(asked)
                    replaying = False
            else:
                replaying = False
            self.tell(group)

    def _unask(self, asked: Sequence[Candidate]) -> None:
        for cand in asked:
            for trial in self._waiting.pop(cand.config_hash, []):
                self.study.tell(trial, state=TrialState.FAIL)
            self.seen.discard(cand.config_hash)

    def _add_known(self, config: Config, value: float) -> None:
        """Tell Optuna about a config it did not propose (a fill-in, or resumed history);
        inactive parameters get their defaults, as the config behaves that way."""
        full = {n: p.default for n, p in self.space.parameters.items()}
        full.update(config)
        params = self._encode(full)
        self.study.add_trial(
            create_trial(params=params, distributions=self._distributions, value=value)
        )

    def _random_unseen(self) -> Config | None:
        fresh = [c for c in valid_configs(self.space, self.dims) if config_hash(c) not in self.seen]
        return dict(self._rng.choice(fresh)) if fresh else None


class TpeStrategy(OptunaStrategy):
    """Tree-structured Parzen estimator (multivariate, constant liar for batches)."""

    name = "tpe"

    @classmethod
    def default_settings(cls) -> dict[str, Any]:
        return {**super().default_settings(), "n_startup_trials": 10, "multivariate": True}

    def make_sampler(self) -> optuna.samplers.BaseSampler:
        return optuna.samplers.TPESampler(
            seed=self.seed,
            n_startup_trials=int(self.settings["n_startup_trials"]),
            multivariate=bool(self.settings["multivariate"]),
            constant_liar=True,
        )


class CmaEsStrategy(OptunaStrategy):
    """CMA-ES with margin (for integer-coded parameters); categoricals sampled independently."""

    name = "cmaes"

    @classmethod
    def default_settings(cls) -> dict[str, Any]:
        return {**super().default_settings(), "n_startup_trials": 1}

    def make_sampler(self) -> optuna.samplers.BaseSampler:
        try:
            import cmaes  # noqa: F401  (optuna imports it lazily; fail here, clearly)
        except ImportError:
            raise UserError(
                "the cmaes strategy needs the 'cmaes' package: pip install cmaes"
            ) from None
        return optuna.samplers.CmaEsSampler(
            seed=self.seed,
            n_startup_trials=int(self.settings["n_startup_trials"]),
            with_margin=True,
            popsize=int(self.settings["batch_size"]),
            independent_sampler=optuna.samplers.RandomSampler(seed=self.seed),
            warn_independent_sampling=False,
        )


class NsgaIIStrategy(OptunaStrategy):
    """NSGA-II genetic algorithm (single objective)."""

    name = "nsga2"

    @classmethod
    def default_settings(cls) -> dict[str, Any]:
        return {**super().default_settings(), "batch_size": 20}

    def make_sampler(self) -> optuna.samplers.BaseSampler:
        return optuna.samplers.NSGAIISampler(
            seed=self.seed, population_size=int(self.settings["batch_size"])
        )
