"""Fixtures for the API tests: a SQLite database of studies, trials and best configs.

The database is built only through the storage repository functions, the way a search fills
it: trials are stored `running`, then finished with a TrialResult, and winners published. The
latencies come from a made-up cost model (no GPU here); the environments are labelled with real
GPU names so the GPU/interpreter filters are exercised as in production.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from evotune.api import create_app
from evotune.records import Config, TrialResult, TrialStatus, config_hash
from evotune.source_hash import kernel_source_hash
from evotune.space import SearchSpace, Shape, load_space
from evotune.storage import Database, Study, Trial, open_database, repository

TOKEN = "test-token-0123456789abcdef"
KERNEL = "attention"

H100 = {
    "gpu": "NVIDIA H100 80GB HBM3",
    "driver": "580.65.06",
    "cuda": "12.8",
    "torch": "2.11.0",
    "triton": "3.6.0",
    # The kernel source installed here: the service serves only configs measured on it.
    "kernel_source_hash": kernel_source_hash("evotune.kernels.attention"),
    "interpreted": False,
}
# The same GPU and versions, an older kernel source: its configs are stale.
H100_OLD_SOURCE = {**H100, "kernel_source_hash": "0123456789abcdef"}
H200 = {**H100, "gpu": "NVIDIA H200", "driver": "580.82.07"}
INTERPRETER = {
    **H100,
    "gpu": "cpu",
    "driver": None,
    "cuda": None,
    "torch": "2.13.0+cpu",
    "interpreted": True,
}
ADHOC_DIMS = {"B": 2, "H": 4, "S": 256, "D": 64, "causal": False, "dtype": "float16"}
T0 = datetime(2026, 11, 20, 9, 0, 0, tzinfo=timezone.utc)


@dataclass
class SampleStudy:
    id: int
    shape: Shape
    trials: list[int] = field(default_factory=list)
    statuses: dict[str, int] = field(default_factory=dict)
    ok_p50: list[float] = field(default_factory=list)
    generations: int = 0
    best_trial_id: int | None = None


@dataclass
class SampleData:
    url: str
    mission: SampleStudy  # finished GPU study (H100) with a published best
    mission_h200: SampleStudy  # an older H200 study of the same shape, also published
    tiny_interpreted: SampleStudy  # interpreter study with a published best (never served)
    adhoc: SampleStudy  # ad-hoc dims, GPU, published
    running: SampleStudy  # still running: in-flight trials, nothing published
    studies: list[SampleStudy] = field(default_factory=list)


def _flops(dims: dict[str, Any]) -> float:
    flops = 4.0 * dims["B"] * dims["H"] * dims["S"] * dims["S"] * dims["D"]
    return flops / 2 if dims["causal"] else flops


def _speed(space: SearchSpace, config: Config) -> float:
    """Relative throughput in (0, 1]: every parameter has a favourite value (any kernel's space)."""
    speed = 1.0
    for name, value in config.items():
        choices = space.parameters[name].choices()
        salt = int(hashlib.sha256(name.encode()).hexdigest(), 16)
        favourite = salt % len(choices)
        weight = 0.05 + (salt % 7) / 30.0
        distance = abs(choices.index(value) - favourite) / max(1, len(choices) - 1)
        speed *= 1.0 - weight * distance
    return speed


def _latency(space: SearchSpace, config: Config, dims: dict[str, Any], rng: random.Random) -> float:
    """A made-up cost model (µs) with structure, so plots and rankings have something to show."""
    p50 = 6.0 + _flops(dims) / (420e12 * _speed(space, config)) * 1e6
    return round(p50 * rng.uniform(0.98, 1.02), 3)


def _outcome(space: SearchSpace, config: Config, dims: dict[str, Any], number: int) -> TrialStatus:
    """Failures as a search meets them: constraint violations, and a share of each kind. The
    share is drawn by the trial's number, stepping through all 100 rolls in any 100 trials, so
    a study of a hundred trials or more holds every kind whatever its configs are."""
    if space.violations(config, dims):
        return TrialStatus.INVALID
    roll = number * 37 % 100
    for status, share in _FAILURE_SHARES:
        if roll < share:
            return status
        roll -= share
    return TrialStatus.OK


_FAILURE_SHARES = (
    (TrialStatus.COMPILE_ERROR, 5),
    (TrialStatus.OUT_OF_RESOURCES, 5),
    (TrialStatus.WRONG_RESULT, 4),
    (TrialStatus.TIMEOUT, 1),
    (TrialStatus.CRASHED, 1),
)
_ERRORS = {
    TrialStatus.INVALID: "violates a constraint of the search space",
    TrialStatus.COMPILE_ERROR: "triton.compiler.errors.CompilationError: at 41:8: unsupported layout",
    TrialStatus.OUT_OF_RESOURCES: "OutOfResources: shared memory, Required: 262144, Hardware limit: 232448",
    TrialStatus.WRONG_RESULT: "max error inf over tolerance (atol 0.01, rtol 0.01)",
    TrialStatus.TIMEOUT: "the trial ran past its 60 s timeout; the worker was killed",
    TrialStatus.CRASHED: "the worker process died (signal 11)",
}


def _random_config(space: SearchSpace, rng: random.Random) -> Config:
    raw = {name: rng.choice(p.choices()) for name, p in space.parameters.items()}
    return space.normalize(raw)


def _mutate(space: SearchSpace, config: Config, rng: random.Random) -> Config:
    child = dict(config)
    name = rng.choice(list(space.parameters))
    child[name] = rng.choice(space.parameters[name].choices())
    return space.normalize(child)


def _add_study(
    db: Database,
    space: SearchSpace,
    shape: Shape,
    env: dict[str, Any],
    *,
    seed: int,
    generations: int,
    per_generation: int,
    state: str = "finished",
    publish: bool = True,
    in_flight: int = 0,
    start: datetime = T0,
    measured_at: datetime | None = None,
    baseline: tuple[str, float] | None = None,
) -> SampleStudy:
    """One evolutionary study: generation 0 random, then mutants of the elites."""
    rng = random.Random(seed)
    with db.session() as s:
        kernel = repository.get_or_create_kernel(s, space.kernel)
        shape_row = repository.get_or_create_shape(s, kernel, shape)
        environment = repository.get_or_create_environment(s, env)
        study = Study(
            kernel_id=kernel.id,
            shape_id=shape_row.id,
            environment_id=environment.id,
            strategy="evolution",
            settings={"population": per_generation, "elites": 4},
            seed=seed,
            budget=generations * per_generation + in_flight,
            state=state,
            interpreted=bool(env["interpreted"]),
            created_at=start,
        )
        s.add(study)
        s.flush()
        out = SampleStudy(study.id, shape, generations=generations)
        seen: set[str] = set()
        elites: list[tuple[float, Config, str]] = []
        clock = start
        number = 0
        best: tuple[float, Trial] | None = None
        for generation in range(generations + (1 if in_flight else 0)):
            last = generation == generations
            count = in_flight if last else per_generation
            made = tries = 0
            while made < count and tries < 50 * count:
                tries += 1
                if number == 0:  # as the runner does: the space's default config first
                    config, parents, operator = space.default_config(), [], "seed"
                elif generation == 0 or not elites or tries > 20 * count:
                    config, parents, operator = _random_config(space, rng), [], "random"
                else:
                    parent = rng.choice(elites[:4])
                    config, parents, operator = (
                        _mutate(space, parent[1], rng),
                        [parent[2]],
                        "mutate",
                    )
                digest = config_hash(config)
                if digest in seen:
                    continue
                seen.add(digest)
                made += 1
                trial = repository.add_running_trial(
                    s,
                    study,
                    number,
                    config,
                    digest,
                    seed=seed * 1000 + number,
                    generation=generation,
                    parents=parents,
                    operator=operator,
                )
                trial.created_at = clock
                number += 1
                out.trials.append(trial.id)
                if last:  # still being measured
                    out.statuses["running"] = out.statuses.get("running", 0) + 1
                    continue
                status = _outcome(space, config, shape.dims, number)
                if status is TrialStatus.OK:
                    p50 = _latency(space, config, shape.dims, rng)
                    samples = [round(p50 * rng.uniform(0.98, 1.04), 3) for _ in range(25)]
                    result = TrialResult(
                        trial.id,
                        status,
                        p50_us=p50,
                        p20_us=round(p50 * 0.99, 3),
                        p80_us=round(p50 * 1.02, 3),
                        n_runs=25,
                        samples_us=samples,
                        max_error=round(rng.uniform(1e-4, 4e-3), 6),
                        compile_s=round(rng.uniform(0.8, 6.0), 2),
                        run_s=round(rng.uniform(0.2, 1.0), 2),
                    )
                    out.ok_p50.append(p50)
                    elites.append((p50, config, digest))
                    elites.sort(key=lambda e: e[0])
                    if best is None or p50 < best[0]:
                        best = (p50, trial)
                else:
                    max_error = math.inf if status is TrialStatus.WRONG_RESULT else None
                    result = TrialResult(
                        trial.id,
                        status,
                        max_error=max_error,
                        error=_ERRORS[status],
                        compile_s=None
                        if status is TrialStatus.INVALID
                        else round(rng.uniform(0.5, 4.0), 2),
                    )
                repository.finish_trial(s, trial, result)
                clock += timedelta(seconds=rng.uniform(2.0, 9.0))
                trial.finished_at = clock
                out.statuses[status.value] = out.statuses.get(status.value, 0) + 1
        if best is not None and publish:
            winner = best[1]
            winner.shootout_p50_us = round(best[0] * 1.01, 3)
            study.best_trial_id = winner.id
            study.shootout = [{"trial_id": winner.id, "p50_us": winner.shootout_p50_us}]
            if baseline is not None:  # the plug-in's baseline, timed beside the finalists
                study.shootout.append({"baseline": baseline[0], "p50_us": baseline[1]})
            tflops = round(_flops(shape.dims) / (winner.shootout_p50_us * 1e-6) / 1e12, 1)
            row = repository.publish_best(
                s, study, winner, shootout_p50_us=winner.shootout_p50_us, tflops=tflops
            )
            row.measured_at = measured_at or clock
            out.best_trial_id = winner.id
        if state == "finished":
            study.finished_at = clock
        study.updated_at = clock
    return out


def build_sample_db(where: Path | str) -> SampleData:
    """Fill a new database (a SQLite file path, or any URL); returns what went in."""
    url = f"sqlite:///{where}" if isinstance(where, Path) else where
    db = open_database(url)
    space = load_space(KERNEL)
    try:
        h200 = _add_study(
            db,
            space,
            space.shape("mission"),
            H200,
            seed=3,
            generations=2,
            per_generation=10,
            start=T0 - timedelta(days=2),
            measured_at=T0 - timedelta(days=1),
        )
        mission = _add_study(
            db,
            space,
            space.shape("mission"),
            H100,
            seed=7,
            generations=5,
            per_generation=24,
            baseline=("cuDNN", 30.0),
        )
        tiny = _add_study(
            db, space, space.shape("tiny"), INTERPRETER, seed=11, generations=2, per_generation=8
        )
        adhoc = _add_study(
            db, space, space.adhoc_shape(ADHOC_DIMS), H100, seed=13, generations=2, per_generation=8
        )
        running = _add_study(
            db,
            space,
            space.shape("small"),
            H100,
            seed=17,
            generations=2,
            per_generation=12,
            state="running",
            publish=False,
            in_flight=3,
            start=T0 + timedelta(hours=3),
        )
    finally:
        db.dispose()
    return SampleData(
        url, mission, h200, tiny, adhoc, running, studies=[h200, mission, tiny, adhoc, running]
    )


@pytest.fixture(scope="session")
def sample(tmp_path_factory: pytest.TempPathFactory) -> SampleData:
    return build_sample_db(tmp_path_factory.mktemp("api") / "sample.db")


@pytest.fixture(scope="session")
def app(sample: SampleData, tmp_path_factory: pytest.TempPathFactory) -> FastAPI:
    return create_app(sample.url, token=TOKEN, job_log_dir=tmp_path_factory.mktemp("jobs"))


@pytest.fixture(scope="session")
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture
def auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKEN}"}
