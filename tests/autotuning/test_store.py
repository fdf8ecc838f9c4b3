"""The decorator's store over the `TrialStore` protocol: misses recorded, claimed by a tune,
its winner published, on the memory store and on SQLite; and a key whose in-process tune was
interrupted recorded again (Triton's CPU interpreter)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import triton

import evotune
from evotune.autotuning import tuner
from evotune.autotuning.store import OFFLINE_NOTE, TUNED_NOTE, Target, TuningStore, open_store
from evotune.fingerprint import device_environment
from evotune.records import Config, TrialResult, TrialStatus
from evotune.search.base import Candidate
from evotune.space import Shape
from evotune.storage import MemoryTrialStore, TrialStore
from tests.autotune_kernels import accumulate

KERNEL = "tests.autotune_kernels.accumulate"
TARGET = Target(
    KERNEL,
    Shape(None, {"n": 300, "dtypes": "float32,float32"}),
    device_environment("0123456789abcdef", interpreted=True),
)
RECIPE = {"kernel": {"module": "tests.autotune_kernels", "qualname": "accumulate"}}


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> TuningStore:
    trial_store: TrialStore = (
        MemoryTrialStore()
        if request.param == "memory"
        else open_store(f"sqlite:///{tmp_path / 'tune.db'}")
    )
    return TuningStore(trial_store)


def _measure(store: TuningStore, study_id: int, p50s: dict[int, float | None]) -> None:
    """Store one trial per BLOCK: `ok` at its p50, or a compile error where None."""
    for number, (block, p50) in enumerate(p50s.items()):
        trial_id = store.add_trial(study_id, number, Candidate({"BLOCK": block}))
        status = TrialStatus.OK if p50 is not None else TrialStatus.COMPILE_ERROR
        store.finish_trial(TrialResult(trial_id, status, p50_us=p50, n_runs=3))


def test_a_miss_is_pending_once_then_tuned_and_served(store: TuningStore) -> None:
    assert store.best(TARGET) is None and not store.knows_kernel(KERNEL)
    store.record_miss(TARGET, 8, 5, RECIPE)
    store.record_miss(TARGET, 16, 6, {"kernel": "another call"})  # recorded once
    (miss,) = store.pending()
    assert (miss.state, miss.kernel, miss.dims, miss.budget, miss.seed) == (
        "pending", KERNEL, TARGET.shape.dims, 8, 5,
    )  # fmt: skip
    assert miss.recipe == RECIPE and miss.environment == TARGET.environment
    assert miss.fingerprint == TARGET.fingerprint and store.knows_kernel(KERNEL)
    assert store.pending("another.kernel") == []

    study_id = store.start_study(TARGET, 3, 5, OFFLINE_NOTE)
    assert study_id == miss.study_id and store.pending() == []  # claimed, alive
    with store.keep_alive(study_id):
        _measure(store, study_id, {32: 20.0, 64: 12.5, 128: None})
    winner = store.finish_study(study_id, "finished")
    assert winner is not None and winner.config == {"BLOCK": 64} and winner.p50_us == 12.5
    assert store.best(TARGET) == {"BLOCK": 64}
    store.record_miss(TARGET, 8, 5, RECIPE)  # tuned: nothing is recorded again
    assert store.pending() == []


def test_no_config_that_worked_publishes_nothing(store: TuningStore) -> None:
    study_id = store.start_study(TARGET, 2, 0)
    _measure(store, study_id, {256: None})
    assert store.finish_study(study_id, "finished") is None
    assert store.best(TARGET) is None


def test_an_interrupted_tune_from_a_recipe_waits_and_keeps_its_recipe(store: TuningStore) -> None:
    store.record_miss(TARGET, 8, 0, RECIPE)
    first = store.start_study(TARGET, 8, 0, OFFLINE_NOTE)
    assert store.finish_study(first, "interrupted") is None
    (miss,) = store.pending()
    assert (miss.study_id, miss.state, miss.recipe) == (first, "interrupted", RECIPE)
    again = store.start_study(TARGET, 8, 0, OFFLINE_NOTE)  # a new study, with the recipe
    assert again != first
    store.finish_study(again, "interrupted")
    assert [(m.study_id, m.recipe) for m in store.pending()] == [(again, RECIPE)]


def test_an_interrupted_in_process_tune_leaves_its_key_recordable(store: TuningStore) -> None:
    study_id = store.start_study(TARGET, 8, 0, TUNED_NOTE)  # tune=True: no recipe
    store.finish_study(study_id, "interrupted")
    assert store.pending() == []  # nothing to tune it from
    store.record_miss(TARGET, 8, 0, RECIPE)
    (miss,) = store.pending()
    assert miss.study_id != study_id and (miss.state, miss.recipe) == ("pending", RECIPE)


def _launch(kernel: Any, n: int = 300) -> None:
    x, y = torch.randn(n), torch.zeros(n)
    kernel[lambda meta: (triton.cdiv(n, meta["BLOCK"]),)](x, y, n)
    assert torch.equal(y, x)


def test_a_decorated_kernel_whose_tune_was_interrupted_records_its_next_miss(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'tune.db'}"
    configs = {"BLOCK": [32, 64]}
    measured = tuner._Measurer.trial

    def interrupted_at_the_second(self: Any, trial_id: int, config: Config) -> TrialResult:
        if trial_id > 1:  # Ctrl-C while the second config runs
            raise KeyboardInterrupt
        return measured(self, trial_id, config)

    monkeypatch.setattr(tuner._Measurer, "trial", interrupted_at_the_second)
    with pytest.raises(KeyboardInterrupt):
        _launch(evotune.autotune(configs=configs, key=["n"], store=url, tune=True)(accumulate))
    monkeypatch.undo()

    _launch(evotune.autotune(configs=configs, key=["n"], store=url)(accumulate))  # a miss
    (miss,) = TuningStore(open_store(url)).pending()
    assert (miss.study_id, miss.state, miss.kernel) == (2, "pending", KERNEL)
    assert miss.recipe is not None and miss.recipe["kernel"]["qualname"] == "accumulate"
