"""Elite-preserving evolution over a discrete search space: the default strategy.

One generation per ask: children of the current population by tournament selection,
uniform crossover and kind-aware mutation (a step to a neighbour for ordered and int
parameters, a flip for booleans, a resample for categoricals). The mutation strength (the
expected number of parameters changed) follows the 1/5th success rule. Children that break
a constraint are repaired to the nearest valid config; no config is proposed twice.

Three things make it frugal with measurements:
- failed trials rank below every ok one and teach the search which parameter values (and
  pairs of values) fail, so it stops breeding toward them;
- each slot gets a few sibling children, and two cheap models of what was measured pick
  the most promising one (screening): an additive model of log-latency (the trend of each
  value) and a tree-Parzen density ratio (evotune/search/surrogate.py: which combinations
  of values look like the best configs of their branch of the space);
- the best configs of each branch of the space (e.g. each `impl`) keep a place in the
  population, and a share of each generation is model-picked random immigrants, so that
  the search does not settle early in one corner.

Every piece of state is a function of the told history (independent of the order results
arrived in) and of the seed: the random stream of generation g is seeded by (seed, g). So a
resumed study, told its stored history, asks exactly what the uninterrupted one would.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from itertools import combinations
from typing import Any

import numpy as np

from evotune.records import Config, TrialStatus, config_hash
from evotune.search.base import Candidate, Observation, Strategy, TuningLandscape
from evotune.search.grid import space_index
from evotune.search.stopping import no_improvement
from evotune.search.surrogate import KnobEncoding, ParzenRatio, good_count
from evotune.space import Parameter

__all__ = ["EvolutionStrategy"]

# Outcomes that say something about the config itself (not about the machine), and so
# should steer the search away from the values that produced them.
CONFIG_FAILURES = frozenset(
    {
        TrialStatus.OUT_OF_RESOURCES,
        TrialStatus.COMPILE_ERROR,
        TrialStatus.WRONG_RESULT,
        TrialStatus.INVALID,
    }
)

Gene = tuple[str, str]  # (parameter, repr of its value): a key of the failure statistics

# Predicted badness of configs, lower is better: what screening ranks children by.
Scorer = Callable[[list[Config]], list[float]]

# The screening models need this many working configs to say anything.
MIN_OK_FOR_MODEL = 8


class EvolutionStrategy(Strategy):
    """Elite-preserving evolution: tournaments, crossover and self-adapting mutation."""

    name = "evolution"
    # Its defaults were chosen on these two landscapes (and on the made-up ones of
    # tests/data/landscapes/synthetic.yaml) only; the full-space landscapes are held out to
    # test them (docs/lab/search-holdout.md). Retuned? Keep to these, or update the record.
    tuned_on = (
        TuningLandscape(
            "tests/data/landscapes/mission-triton.json",
            "dd60e9ff44eed4ba5b42b73e4f12624cd37a420674357f0c5d381a4d62b43bb7",
        ),
        TuningLandscape(
            "tests/data/landscapes/llama-d128-triton.json",
            "f853c485b35b425ece4b7cbd5248e203e68ec37339aff5bb48c962ff0d08e225",
        ),
    )

    @classmethod
    def default_settings(cls) -> dict[str, Any]:
        return {
            **super().default_settings(),
            "population": 12,
            "batch_size": 12,  # not read: a generation is `population` candidates
            "elites": 2,
            "tournament": 3,
            "crossover_rate": 0.4,
            # Expected number of parameters a mutation changes, adapted by the 1/5th rule.
            "mutation_strength": 1.5,
            "min_strength": 1.0,
            "max_strength": 4.0,
            "success_target": 0.2,
            "adapt_rate": 1.0,
            # Chance of a jump to any value instead of a step to a neighbour.
            "jump_rate": 0.1,
            # 0 ignores failure statistics; 1 rejects a child with its predicted failure odds.
            "failure_avoidance": 1.0,
            # Children bred per slot; the one the screening models rank best is kept (1 turns
            # the screening off). The tree-Parzen ratio counts `parzen_weight` times the
            # additive model (0: the additive model alone); its good set is the best share
            # `parzen_gamma` (at most `parzen_max_good`) of each branch; `parzen_spread` and
            # `parzen_bandwidth` shape its kernels (evotune/search/surrogate.py).
            "screening": 4,
            "parzen_weight": 1.0,
            "parzen_gamma": 0.1,
            "parzen_max_good": 25,
            "parzen_spread": 0.2,
            "parzen_bandwidth": 0.5,
            # The best `niche_size` working configs of each branch (e.g. impl) stay in the
            # population; a share `immigrants` of each generation is fresh random configs.
            "niche_size": 2,
            "immigrants": 0.2,
            "immigrant_screening": 16,
            # Stalled (the best not `min_improvement` better over the last
            # `stall_generations` generations; 0: never), it measures the unseen neighbours
            # of its best configs instead of breeding, until it improves (`_stalled`). It
            # stops on its own only when asked to: `patience_generations` > 0.
            "stall_generations": 10,
            "patience_generations": 0,
            "min_improvement": 0.005,
        }

    def _setup(self) -> None:
        s = self.settings
        self.population_size = max(2, int(s["population"]))
        self.n_elites = min(max(0, int(s["elites"])), self.population_size)
        self.strength = float(s["mutation_strength"])
        self.observations: dict[str, Observation] = {}
        self.population: list[str] = []  # config hashes, best first
        self._pending: dict[str, Observation] = {}  # told, not yet folded into the population
        self._genes_total: dict[tuple[Gene, ...], int] = {}
        self._genes_failed: dict[tuple[Gene, ...], int] = {}
        self._n_total = 0
        self._n_failed = 0
        self._exhausted = False
        self._used_up: set[str] = set()  # measured configs whose neighbours are all seen
        self.index = space_index(self.space, self.dims)
        # Caches, dropped whenever something is told.
        self._ranked: list[str] | None = None  # observations, best first
        self._fills: dict[tuple[str, ...], dict[str, Any]] = {}
        self._odds: dict[str, float] = {}
        self._encoding: KnobEncoding | None = None

    # --- protocol ------------------------------------------------------------------------

    @property
    def generation_size(self) -> int:
        return self.population_size

    @property
    def exhausted(self) -> bool:
        return self._exhausted

    def tell(self, observations: Sequence[Observation]) -> None:
        super().tell(observations)
        for obs in observations:
            key = obs.config_hash
            if key in self.observations:
                continue  # a config is measured once; a repeat says nothing new
            self.observations[key] = obs
            self._pending[key] = obs
            self._ranked = None
            self._fills.clear()
            self._odds.clear()
            self._count_failure(obs)

    def restore(self, history: Sequence[Observation]) -> None:
        super().restore(history)
        self._fold()

    def ask(self, n: int) -> list[Candidate]:
        self._fold()
        if n <= 0:
            return []
        generation = self.generation
        rng = random.Random(f"evolution:{self.seed}:{generation}")
        batch: list[Candidate] = []
        taken: set[str] = set()

        def take(config: Config, parents: tuple[str, ...], operator: str) -> None:
            key = config_hash(config)
            taken.add(key)
            batch.append(Candidate(config, generation, parents, operator))

        for config in self.seed_configs:
            if len(batch) >= n:
                break
            if self.is_valid(config):
                fixed, operator = config, "seed"
            else:
                repaired = self._repair(config, rng, taken)
                if repaired is None:
                    continue
                fixed, operator = repaired, "seed+repair"
            if self._is_new(fixed, taken):
                take(fixed, (), operator)
        if len(batch) < n and not any(self.observations[h].ok for h in self.population):
            # Nothing works yet: cover every value of every parameter before breeding.
            for config in self._stratified(n - len(batch), rng, taken):
                take(config, (), "random")
        model = self._fit_scorer()
        screening = max(1, int(self.settings["screening"])) if model is not None else 1
        if self.population and len(batch) < n:
            # Immigrants: fresh configs from anywhere, the most promising of a few by the
            # model, so that the search does not settle in one corner of the space.
            for _ in range(round(float(self.settings["immigrants"]) * (n - len(batch)))):
                draws = int(self.settings["immigrant_screening"]) if model is not None else 1
                drawn = [self._random_unseen(rng, taken) for _ in range(max(1, draws))]
                found = [c for c in drawn if c is not None]
                if not found:
                    break
                if model is not None:
                    found = [found[_argmin(model(found))]]
                take(found[0], (), "random")
        if len(batch) < n and self._stalled(generation):
            for config, parent in self._frontier(n - len(batch), taken, model):
                take(config, (parent,), "neighbour")
        breeding = True
        while len(batch) < n:
            pool: list[tuple[Config, tuple[str, ...], str]] = []
            keys: set[str] = set()
            for _ in range(screening if breeding else 0):
                bred = self._breed(rng, taken | keys)
                if bred is None:
                    # 64 tries found no new child: the neighbourhood is used up (a small
                    # space, or one told mostly failures). Trying again for each slot of the
                    # generation costs seconds and finds nothing more: fill it at random.
                    breeding = False
                    break
                pool.append(bred)
                keys.add(config_hash(bred[0]))
            if not pool:
                fallback = self._random_unseen(rng, taken)
                if fallback is None:
                    self._exhausted = True
                    break
                take(fallback, (), "random")
            elif model is None:
                take(*pool[0])
            else:
                take(*pool[_argmin(model([bred[0] for bred in pool]))])
        for candidate in batch:
            self.seen.add(candidate.config_hash)
        if batch:
            self.begin_generation()
        return batch

    # --- population ----------------------------------------------------------------------

    def is_valid(self, config: Config) -> bool:
        return self.index.is_valid(config)

    def _rank_key(self, key: str) -> tuple[float, str]:
        # Ties broken by hash, not by arrival order: results arrive in any order.
        return (self.observations[key].fitness(), key)

    def _fold(self) -> None:
        """Merge told children into the population, generation by generation, and adapt
        the mutation strength to their success."""
        if not self._pending:
            return
        by_generation: dict[int, list[str]] = {}
        for key, obs in self._pending.items():
            by_generation.setdefault(obs.generation, []).append(key)
        self._pending = {}
        for generation in sorted(by_generation):
            children = sorted(by_generation[generation], key=self._rank_key)
            self._adapt(children)
            union = sorted(set(self.population) | set(children), key=self._rank_key)
            keep = union[: self.n_elites]
            keep += [k for k in self._niche_best(union) if k not in keep]
            # Many branches would otherwise grow the population past its size: the elites,
            # then each branch's best, then each branch's second best, ... fill it.
            keep = keep[: self.population_size]
            rest = [k for k in children if k not in keep]
            rest += [k for k in self.population if k not in keep and k not in rest]
            self.population = sorted(
                keep + rest[: max(0, self.population_size - len(keep))], key=self._rank_key
            )

    def _stalled(self, generation: int) -> bool:
        """Whether the generations told before this one stalled: the best improved by less
        than `min_improvement` over the last `stall_generations` (the stopping rule's test).
        Its children then come from a population that has drifted into whatever corner
        breeds new configs (on mission-full-h200, the large gluon branch), not from around
        its best, so the walk of `_frontier` takes their place until it finds a gain."""
        told = {g: b for g, b in self.generation_best.items() if g < generation}
        return no_improvement(
            told, int(self.settings["stall_generations"]), float(self.settings["min_improvement"])
        )

    def _frontier(
        self, count: int, taken: set[str], model: Scorer | None
    ) -> list[tuple[Config, str]]:
        """Up to `count` unseen valid configs one parameter away (any other value) from the
        best measured configs, best first: the neighbourhood of the best is used up before
        that of the second best, and so on. Within one config's neighbourhood, the
        screening model's order."""
        out: list[tuple[Config, str]] = []
        if count <= 0:
            return out
        if self._ranked is None:
            self._ranked = sorted(self.observations, key=self._rank_key)
        for key in self._ranked:
            if len(out) >= count:
                break
            if key in self._used_up:
                continue
            obs = self.observations[key]
            if not obs.ok:
                break  # failures rank last
            fresh = [
                c
                for c in self._neighbours(obs.config, jumps=True)
                if self.is_valid(c) and self._is_new(c, taken)
            ]
            if not fresh:
                self._used_up.add(key)
                continue
            if model is not None:
                scores = model(fresh)
                fresh = [fresh[i] for i in sorted(range(len(fresh)), key=scores.__getitem__)]
            for config in fresh:
                if len(out) < count and self._is_new(config, taken):
                    taken.add(config_hash(config))
                    out.append((config, key))
        return out

    def _niche_best(self, ranked: list[str]) -> list[str]:
        """The best few working configs of each branch of the space (e.g. each `impl`): a
        branch that starts slower keeps a foothold instead of being crowded out early. Each
        branch's best come first, then each branch's second best, and so on."""
        size = int(self.settings["niche_size"])
        if size <= 0 or not self.index.branch_names:
            return []
        # rank within its branch -> the branches' keys at that rank, in overall rank order
        levels: list[list[str]] = [[] for _ in range(size)]
        counts: dict[tuple[str, ...], int] = {}
        for key in ranked:
            obs = self.observations[key]
            branch = self.index.branch(obs.config)
            level = counts.get(branch, 0)
            if obs.ok and level < size:
                counts[branch] = level + 1
                levels[level].append(key)
        return [key for level in levels for key in level]

    def _adapt(self, children: list[str]) -> None:
        """1/5th success rule on children that have measured parents."""
        trials = successes = 0
        for key in children:
            child = self.observations[key]
            parents = [self.observations[p] for p in child.parents if p in self.observations]
            if not parents:
                continue
            trials += 1
            if child.fitness() < min(p.fitness() for p in parents):
                successes += 1
        if trials == 0:
            return
        target = float(self.settings["success_target"])
        rate = float(self.settings["adapt_rate"])
        self.strength *= math.exp(rate * (successes / trials - target) / (1.0 - target))
        low, high = float(self.settings["min_strength"]), float(self.settings["max_strength"])
        self.strength = min(max(self.strength, low), high)

    def _tournament(self, rng: random.Random) -> str:
        size = max(1, int(self.settings["tournament"]))
        picks = [rng.randrange(len(self.population)) for _ in range(size)]
        return self.population[min(picks)]  # the population is sorted best first

    # --- operators -----------------------------------------------------------------------

    def _breed(
        self, rng: random.Random, taken: set[str]
    ) -> tuple[Config, tuple[str, ...], str] | None:
        """One new valid child, its parents and the operator, or None after many tries."""
        crossover_rate = float(self.settings["crossover_rate"])
        avoidance = float(self.settings["failure_avoidance"])
        for attempt in range(64):
            # Each failed attempt (a duplicate, a predicted failure) mutates harder.
            strength = self.strength + attempt / 8
            first = self._tournament(rng)
            parent = self.observations[first].config
            if len(self.population) >= 2 and rng.random() < crossover_rate:
                second = self._tournament(rng)
                for _ in range(3):
                    if second != first:
                        break
                    second = self._tournament(rng)
                other = self.observations[second].config
                child = self._crossover(parent, other, rng)
                parents: tuple[str, ...] = (first, second) if second != first else (first,)
                operator = "crossover"
                if config_hash(child) in (first, second) or rng.random() < 0.5:
                    child = self._mutate(child, strength, rng)
                    operator = "crossover+mutation"
            else:
                child = self._mutate(parent, strength, rng)
                parents, operator = (first,), "mutation"
            if not self.is_valid(child):
                repaired = self._repair(child, rng, taken)
                if repaired is None:
                    continue
                child, operator = repaired, operator + "+repair"
            if not self._is_new(child, taken):
                continue
            if avoidance > 0 and rng.random() < avoidance * self._failure_odds(child):
                continue
            return child, parents, operator
        return None

    def _crossover(self, a: Config, b: Config, rng: random.Random) -> Config:
        """Uniform crossover; a parameter only one parent has comes from that parent."""
        child: Config = {}
        for name in self.space.parameters:
            if name in a and name in b:
                child[name] = a[name] if rng.random() < 0.5 else b[name]
            elif name in a or name in b:
                child[name] = a[name] if name in a else b[name]
        return self.index.normalize(child)

    def _mutate(self, config: Config, strength: float, rng: random.Random) -> Config:
        """Change about `strength` active parameters (at least one), each by its kind."""
        child = dict(config)
        active = self.index.active_names(child)
        share = min(1.0, strength / max(1, len(active)))
        chosen = [name for name in active if rng.random() < share] or [rng.choice(active)]
        for name in chosen:
            if name not in child:
                continue  # made inactive by an earlier change in this mutation
            child[name] = self._mutate_value(name, child[name], rng)
            if self.space.parameters[name].when is None:
                child = self._refill(child)
        return self.index.normalize(child)

    def _mutate_value(self, name: str, value: Any, rng: random.Random) -> Any:
        param: Parameter = self.space.parameters[name]
        choices = param.choices()
        others = [v for v in choices if v != value]
        if not others:
            return value
        if param.kind in ("ordered", "int") and rng.random() >= float(self.settings["jump_rate"]):
            i = choices.index(value) if value in choices else 0
            options = [choices[j] for j in (i - 1, i + 1) if 0 <= j < len(choices)]
        else:
            # bool: the flip; categorical (or a jump): any other value.
            options = others
        weights = [self._value_weight(name, v) for v in options]
        return rng.choices(options, weights=weights)[0]

    def _refill(self, config: Config) -> Config:
        """After a change that activates other parameters (e.g. `impl`), take their values
        from the best observed config where they are active, not blindly from defaults."""
        missing = tuple(n for n in self.index.active_names(config) if n not in config)
        if not missing:
            return config
        fill = self._fills.get(missing)
        if fill is None:
            if self._ranked is None:
                self._ranked = sorted(self.observations, key=self._rank_key)
            fill = {}
            for key in self._ranked:
                source = self.observations[key].config
                if all(n in source for n in missing):
                    fill = {n: source[n] for n in missing}
                    break
            self._fills[missing] = fill
        if fill:
            return {**config, **fill}
        return config  # normalize() fills the defaults

    def _repair(self, config: Config, rng: random.Random, taken: set[str]) -> Config | None:
        """The nearest valid new config: breadth-first over one-parameter steps (depth 3)."""
        frontier = [config]
        visited = {config_hash(config)}
        for _ in range(3):
            nxt: list[Config] = []
            for current in frontier:
                neighbours = self._neighbours(current)
                rng.shuffle(neighbours)
                for neighbour in neighbours:
                    key = config_hash(neighbour)
                    if key in visited:
                        continue
                    visited.add(key)
                    if self.is_valid(neighbour) and self._is_new(neighbour, taken):
                        return neighbour
                    nxt.append(neighbour)
            frontier = nxt
        return None

    def _neighbours(self, config: Config, jumps: bool = False) -> list[Config]:
        """The configs one active parameter away: for ordered and int parameters the next
        value either side, or (`jumps`) any other value."""
        out: list[Config] = []
        for name in self.index.active_names(config):
            param = self.space.parameters[name]
            choices = param.choices()
            if not jumps and param.kind in ("ordered", "int") and config.get(name) in choices:
                i = choices.index(config[name])
                values = [choices[j] for j in (i - 1, i + 1) if 0 <= j < len(choices)]
            else:
                values = [v for v in choices if v != config.get(name)]
            for value in values:
                out.append(self.index.normalize(self._refill({**config, name: value})))
        return out

    def _stratified(self, count: int, rng: random.Random, taken: set[str]) -> list[Config]:
        """Random valid configs in which every value of every parameter appears about
        equally often: a first generation that sees the whole space."""
        columns: dict[str, list[Any]] = {}
        for name, param in self.space.parameters.items():
            values = param.choices()
            column = [values[i % len(values)] for i in range(count)]
            rng.shuffle(column)
            columns[name] = column
        out: list[Config] = []
        for i in range(count):
            config: Config | None = self.index.normalize({n: c[i] for n, c in columns.items()})
            assert config is not None
            if not self.is_valid(config):
                config = self._repair(config, rng, taken)
            if config is None or not self._is_new(config, taken):
                config = self._random_unseen(rng, taken)
            if config is None:
                break
            taken.add(config_hash(config))
            out.append(config)
        return out

    def _random_unseen(self, rng: random.Random, taken: set[str]) -> Config | None:
        pool = self.index.configs
        for _ in range(32):
            config = rng.choice(pool) if pool else None
            if config is not None and self._is_new(config, taken):
                return dict(config)
        fresh = [c for c in pool if self._is_new(c, taken)]
        return dict(rng.choice(fresh)) if fresh else None

    def _is_new(self, config: Config, taken: set[str]) -> bool:
        key = config_hash(config)
        return key not in self.seen and key not in taken

    # --- screening models ----------------------------------------------------------------

    def _fit_scorer(self) -> Scorer | None:
        """This generation's screening: the additive model's prediction plus
        `parzen_weight` times the tree-Parzen ratio's, each standardised over the configs
        compared (one is in log-microseconds, the other in log-densities); None while too
        little works to fit either."""
        additive = self._fit_model()
        weight = float(self.settings["parzen_weight"])
        ratio = self._fit_parzen() if weight > 0 else None
        if additive is None and ratio is None:
            return None
        encoding = self._knob_encoding()

        def scorer(configs: list[Config]) -> list[float]:
            total = np.zeros(len(configs))
            if additive is not None:
                total += _standardised([self._predict(additive, c) for c in configs])
            if ratio is not None:
                total += weight * _standardised(-ratio.score(encoding.encode(configs)))
            return [float(v) for v in total]

        return scorer

    def _knob_encoding(self) -> KnobEncoding:
        if self._encoding is None:
            self._encoding = KnobEncoding(self.space)
        return self._encoding

    def _fit_parzen(self) -> ParzenRatio | None:
        """The tree-Parzen ratio of the configs measured so far: "good" are the best few
        of each branch of the space (so that the ratio ranks children within the branch
        they are bred in, and a slower branch is not all "bad"), "bad" all the others,
        failures included."""
        ranked = sorted(self.observations.values(), key=lambda o: (o.fitness(), o.config_hash))
        if sum(o.ok for o in ranked) < MIN_OK_FOR_MODEL:
            return None
        gamma, most = float(self.settings["parzen_gamma"]), int(self.settings["parzen_max_good"])
        branches: dict[tuple[str, ...], list[Observation]] = {}
        for obs in ranked:
            if obs.ok:
                branches.setdefault(self.index.branch(obs.config), []).append(obs)
        good = {
            obs.config_hash
            for members in branches.values()
            for obs in members[: good_count(len(members), gamma, most)]
        }
        encoding = self._knob_encoding()
        encode = encoding.encode
        return ParzenRatio.fit(
            encoding,
            encode([o.config for o in ranked if o.config_hash in good]),
            encode([o.config for o in ranked if o.config_hash not in good]),
            spread=float(self.settings["parzen_spread"]),
            bandwidth=float(self.settings["parzen_bandwidth"]),
        )

    def _fit_model(self) -> dict[Gene, float] | None:
        """Ridge regression of log(p50) on one-hot (parameter, value) features of the ok
        trials: coarse, but enough to tell which of a few sibling children looks best."""
        ok = sorted((o for o in self.observations.values() if o.ok), key=lambda o: o.config_hash)
        genes = sorted({g for o in ok for g in self._genes(o.config)})
        if len(ok) < max(MIN_OK_FOR_MODEL, len(genes) // 3):
            return None
        column = {g: i for i, g in enumerate(genes)}
        x = np.zeros((len(ok), len(genes)))
        for row, obs in enumerate(ok):
            for g in self._genes(obs.config):
                x[row, column[g]] = 1.0
        y = np.log([float(o.p50_us or 1.0) for o in ok])
        mean = float(y.mean())
        weights = np.linalg.solve(x.T @ x + np.eye(len(genes)), x.T @ (y - mean))
        model = {g: float(weights[i]) for g, i in column.items()}
        model[("", "")] = mean
        return model

    def _predict(self, model: dict[Gene, float], config: Config) -> float:
        """Predicted log(p50), plus a penalty for a predicted failure."""
        value = model[("", "")] + sum(model.get(g, 0.0) for g in self._genes(config))
        return value + self._failure_odds(config)

    # --- failure statistics --------------------------------------------------------------

    def _genes(self, config: Config) -> list[Gene]:
        return [(name, repr(config[name])) for name in sorted(config)]

    def _count_failure(self, obs: Observation) -> None:
        failed = obs.status in CONFIG_FAILURES
        self._n_total += 1
        self._n_failed += failed
        genes = self._genes(obs.config)
        keys: list[tuple[Gene, ...]] = [(g,) for g in genes]
        keys += list(combinations(genes, 2))
        for key in keys:
            self._genes_total[key] = self._genes_total.get(key, 0) + 1
            if failed:
                self._genes_failed[key] = self._genes_failed.get(key, 0) + 1

    def _rate(self, key: tuple[Gene, ...], prior: float = 2.0) -> float:
        """Failure rate of configs sharing these genes, shrunk toward the overall rate."""
        overall = (self._n_failed + 0.5) / (self._n_total + 5.0)
        total = self._genes_total.get(key, 0)
        return (self._genes_failed.get(key, 0) + prior * overall) / (total + prior)

    def _failure_odds(self, config: Config) -> float:
        """Predicted chance that a config fails: the worst single value or pair of values
        (failures such as running out of shared memory come from combinations)."""
        if self._n_failed == 0:
            return 0.0
        key = config_hash(config)
        odds = self._odds.get(key)
        if odds is None:
            genes = self._genes(config)
            keys: list[tuple[Gene, ...]] = [(g,) for g in genes]
            keys += list(combinations(genes, 2))
            odds = self._odds[key] = max(self._rate(k) for k in keys)
        return odds

    def _value_weight(self, name: str, value: Any) -> float:
        """Mutation weight of a value: low where that value has mostly failed."""
        if self._n_failed == 0 or float(self.settings["failure_avoidance"]) <= 0:
            return 1.0
        return max(0.05, 1.0 - self._rate(((name, repr(value)),)))


def _argmin(values: list[float]) -> int:
    """The index of the smallest value, the first of equals (as `min` and a stable sort)."""
    return min(range(len(values)), key=values.__getitem__)


def _standardised(values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Values as standard scores (all zero where they do not differ)."""
    array = np.asarray(values, dtype=float)
    spread = float(array.std())
    return (array - array.mean()) / spread if spread > 0 else np.zeros_like(array)
