"""The load benchmark's database: a seeded copy of what a search leaves, and a writer
process that stores trials into it the way a running search does."""

from __future__ import annotations

import os
import random
import time
from collections import Counter
from typing import Any

__all__ = ["ENVIRONMENT", "KERNEL", "seed_database", "writer_loop"]

KERNEL = "attention"
ENVIRONMENT = {
    "gpu": "loadtest-synthetic-gpu",
    "driver": "0",
    "cuda": "0",
    "torch": "0",
    "triton": "0",
    "kernel_source_hash": "loadtest",  # replaced by the installed one in seed_database
    "interpreted": False,
}


def seed_database(url: str, kernel: str = KERNEL, history: int = 0) -> dict[str, Any]:
    """A study per named shape with one published best, the last one with `history` more
    ok trials (a study with a long trial list); returns the /v1/best queries to fire and
    the study ids."""
    from evotune.records import TrialResult, TrialStatus, config_hash
    from evotune.source_hash import kernel_source_hash
    from evotune.space import load_space
    from evotune.storage import Study, open_database, repository

    space = load_space(kernel)
    # Measured under the installed kernel source, or the service would not serve it as current.
    environment = {**ENVIRONMENT, "kernel_source_hash": kernel_source_hash(space.module)}
    database = open_database(url)
    queries: list[str] = []
    study_ids: list[int] = []
    try:
        for index, shape_name in enumerate(space.shapes):
            shape = space.shape(shape_name)
            with database.session() as s:
                kernel_row = repository.get_or_create_kernel(s, kernel)
                shape_row = repository.get_or_create_shape(s, kernel_row, shape)
                env = repository.get_or_create_environment(s, environment)
                study = Study(
                    kernel_id=kernel_row.id,
                    shape_id=shape_row.id,
                    environment_id=env.id,
                    strategy="loadtest",
                    settings={},
                    seed=index,
                    budget=10**9,
                    state="running",
                )
                s.add(study)
                s.flush()
                config = space.default_config()
                trial = repository.add_running_trial(
                    s, study, 0, config, config_hash(config), 0, 0, [], "seed"
                )
                p50 = 100.0 + index
                result = TrialResult(trial.id, TrialStatus.OK, p50, p50, p50, 5, [p50] * 5, 0.0)
                repository.finish_trial(s, trial, result)
                repository.publish_best(s, study, trial, shootout_p50_us=p50, tflops=1.0)
                study_ids.append(study.id)
            queries.append(f"/v1/best?kernel={kernel}&shape={shape_name}")
            dims = "&".join(
                f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in shape.dims.items()
            )
            queries.append(f"/v1/best?kernel={kernel}&{dims}")
        _add_history(database, study_ids[-1], history)
    finally:
        database.dispose()
    return {"queries": queries, "writer_study_id": study_ids[-1], "study_ids": study_ids}


def _add_history(database: Any, study_id: int, count: int) -> None:
    """`count` ok trials of made-up configs, numbered after the seed trial."""
    from evotune.records import TrialResult, TrialStatus, config_hash
    from evotune.storage import repository

    rng = random.Random(study_id)
    with database.session() as s:
        study = repository.get_study(s, study_id)
        for number in range(1, count + 1):
            config = {"BLOCK_M": rng.choice([64, 128]), "n": number}
            trial = repository.add_running_trial(
                s, study, number, config, config_hash(config), number, number // 24, [], "random"
            )
            p50 = rng.uniform(90.0, 200.0)
            result = TrialResult(trial.id, TrialStatus.OK, p50, p50, p50, 5, [p50] * 5, 0.0)
            repository.finish_trial(s, trial, result)


def writer_loop(
    url: str, study_id: int, rate: float, seconds: float, publish_every: int, out: Any
) -> None:
    """Store trials at `rate` per second for `seconds` (two commits each, like the runner)."""
    from evotune.records import TrialResult, TrialStatus, config_hash
    from evotune.storage import Trial, open_database, repository

    database = open_database(url, upgrade=False)
    written = 0
    published = 0
    errors: Counter[str] = Counter()
    rng = random.Random(study_id)
    number = 10_000_000 * os.getpid()
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        target = start + written / rate
        if target > time.perf_counter():
            time.sleep(target - time.perf_counter())
        try:
            config = {"n": number, "x": rng.random()}
            with database.session() as s:
                study = repository.get_study(s, study_id)
                trial = repository.add_running_trial(
                    s, study, number, config, config_hash(config), number, 0, [], "random"
                )
                trial_id = trial.id
            p50 = rng.uniform(90.0, 200.0)
            with database.session() as s:
                stored = s.get(Trial, trial_id)
                assert stored is not None
                result = TrialResult(trial_id, TrialStatus.OK, p50, p50, p50, 5, [p50] * 5, 0.0)
                repository.finish_trial(s, stored, result)
                if publish_every and written % publish_every == publish_every - 1:
                    repository.publish_best(s, repository.get_study(s, study_id), stored, p50, 1.0)
                    published += 1
            written += 1
        except Exception as exc:  # counted and reported: the benchmark asks for zero
            errors[f"{type(exc).__name__}: {str(exc).splitlines()[0][:120]}"] += 1
        number += 1
    database.dispose()
    out.put(
        {
            "written": written,
            "published": published,
            "errors": dict(errors),
            "cpu_s": round(time.process_time(), 2),
        }
    )
