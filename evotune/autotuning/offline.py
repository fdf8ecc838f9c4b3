"""`evotune tune-pending`: tune the misses `evotune.autotune` recorded, without the program.

For each pending miss (store.TuningStore.pending): import the kernel its recipe names, check
that this process would measure in the environment the miss was recorded in (interpreter or
GPU, GPU model, versions, the kernel's source), rebuild the call's arguments from their specs
(evotune/autotuning/recipe.py), and run the same in-process tuner as `tune=True`
(evotune/autotuning/tuner.py): same gate, timer and fault handling, trials stored in the
pending study, winner published. A miss that cannot be tuned here is one outcome line that
says why; the others go on.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

import torch

from evotune.autotuning import recipe as recipes
from evotune.autotuning.store import OFFLINE_NOTE, PendingMiss, Target, TuningStore
from evotune.autotuning.tuner import CallArgs, tune
from evotune.errors import NotTunableOfflineError, UserError, WorkerError
from evotune.fingerprint import FINGERPRINT_KEYS, device_environment, fingerprint_hash
from evotune.records import Config, Dims
from evotune.source_hash import function_source_hash
from evotune.space import Shape
from evotune.storage import TrialStore

__all__ = ["Outcome", "tune_pending"]

TUNED, NOTHING_WORKED, SKIPPED, READY, STOPPED = (
    "tuned",
    "no config worked",
    "skipped",
    "ready",
    "stopped",
)


@dataclass(frozen=True)
class Outcome:
    """What became of one pending miss."""

    study_id: int
    kernel: str
    dims: Dims
    result: str  # tuned | no config worked | skipped | ready (--dry-run) | stopped
    reason: str | None = None  # why skipped or stopped
    trials: int = 0
    config: Config | None = None  # the winner
    p50_us: float | None = None

    def line(self) -> str:
        shape = " ".join(f"{k}={v}" for k, v in self.dims.items())
        head = f"study {self.study_id} {self.kernel} ({shape})"
        if self.result == TUNED:
            p50 = "" if self.p50_us is None else f", p50 {self.p50_us:.1f} µs"
            best = json.dumps(self.config)
            return f"{head}: tuned, {self.trials} trials, best {best}{p50}"
        if self.result == NOTHING_WORKED:
            return f"{head}: tuned, {self.trials} trials, no config worked (see evotune trials)"
        if self.result == READY:
            return f"{head}: can be tuned here"
        return f"{head}: {self.result}: {self.reason}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class _Plan:
    """A miss ready to tune here: its kernel, tuning space and target."""

    miss: PendingMiss
    recipe: dict[str, Any]
    kernel: Any
    target: Target
    device: str


def tune_pending(
    trial_store: TrialStore,
    *,
    kernel: str | None = None,
    budget: int | None = None,
    dry_run: bool = False,
    on_outcome: Callable[[Outcome], None] = lambda _: None,
) -> list[Outcome]:
    """Tune every pending miss (of `kernel`), oldest first; `budget` overrides each miss's
    own (the decorator's). A broken CUDA context stops the rest (`stopped`)."""
    store = TuningStore(trial_store)
    if kernel is not None and not store.knows_kernel(kernel):
        raise UserError(
            f"no kernel {kernel!r} in the database (a decorated kernel is named "
            "<module>.<qualified name>, as `evotune studies` shows)"
        )
    outcomes: list[Outcome] = []
    broken: str | None = None
    for miss in store.pending(kernel):
        if broken is not None:
            outcome = _outcome(miss, STOPPED, broken)
        else:
            try:
                outcome = _tune_one(store, miss, budget, dry_run)
            except WorkerError as exc:  # the CUDA context is gone for this process
                broken = f"an earlier tune broke the CUDA context of this process: {exc}"
                outcome = _outcome(miss, STOPPED, str(exc))
        outcomes.append(outcome)
        on_outcome(outcome)
    return outcomes


def _tune_one(store: TuningStore, miss: PendingMiss, budget: int | None, dry_run: bool) -> Outcome:
    try:
        plan = _plan(miss)
        if dry_run:
            return _outcome(miss, READY)
        call = recipes.rebuild_call(plan.recipe, plan.kernel, miss.seed)
    except NotTunableOfflineError as exc:
        return _outcome(miss, SKIPPED, str(exc))
    tolerance = plan.recipe.get("tolerance")
    with _on_device(plan.device):
        tuned = tune(
            store,
            plan.target,
            recipes.tuning_of(plan.recipe),
            CallArgs(call.tensors),
            call.launch,
            budget=budget or miss.budget,
            seed=miss.seed,
            tolerance=None if tolerance is None else (tolerance[0], tolerance[1]),
            note=OFFLINE_NOTE,
        )
    if tuned.winner is None:
        return Outcome(tuned.study_id, miss.kernel, miss.dims, NOTHING_WORKED, None, tuned.trials)
    config, p50 = dict(tuned.winner.config), tuned.winner.p50_us
    return Outcome(tuned.study_id, miss.kernel, miss.dims, TUNED, None, tuned.trials, config, p50)


def _outcome(miss: PendingMiss, result: str, reason: str | None = None) -> Outcome:
    return Outcome(miss.study_id, miss.kernel, miss.dims, result, reason)


def _plan(miss: PendingMiss) -> _Plan:
    """Everything but the arguments, or NotTunableOfflineError with the reason."""
    recipe = miss.recipe
    if recipe is None:
        raise NotTunableOfflineError(
            "recorded by an evotune that kept no recipe of the call; launch the program once "
            "more to record it"
        )
    if "refused" in recipe:
        raise NotTunableOfflineError(recipe["refused"])
    kernel = recipes.import_kernel(recipe)
    device = _device_of(recipe)
    here = _environment_here(kernel, device, miss)
    _check_environment(miss, here)
    target = Target(miss.kernel, Shape(None, miss.dims), here)
    return _Plan(miss, recipe, kernel, target, device)


def _device_of(recipe: dict[str, Any]) -> str:
    """The device of the call: its first tensor's (as the decorator reads it)."""
    for spec in recipe["args"].values():
        if "tensor" in spec:
            return str(spec["tensor"]["device"])
    return "cpu"


def _environment_here(kernel: Any, device: str, miss: PendingMiss) -> dict[str, Any]:
    """The fingerprint a tune of this kernel would be stored under in this process."""
    from triton.runtime.interpreter import InterpretedFunction

    source_hash = function_source_hash(kernel.fn)
    if isinstance(kernel, InterpretedFunction):
        return device_environment(source_hash, interpreted=True)
    if miss.environment.get("interpreted"):
        raise NotTunableOfflineError(
            "recorded under Triton's CPU interpreter; rerun with --interpret"
        )
    index = torch.device(device).index or 0
    if not device.startswith("cuda") or index >= torch.cuda.device_count():
        raise NotTunableOfflineError(
            f"recorded on GPU {miss.environment.get('gpu')} ({device}), which this host does "
            "not have"
        )
    return device_environment(source_hash, interpreted=False, device=index)


def _check_environment(miss: PendingMiss, here: dict[str, Any]) -> None:
    """The tune must measure where the miss happened: its best is served by fingerprint."""
    if fingerprint_hash(here) == miss.fingerprint:
        return
    recorded = miss.environment
    if not recorded.get("interpreted") and here.get("interpreted"):
        raise NotTunableOfflineError(
            f"recorded on GPU {recorded.get('gpu')}; rerun on a host with it, without "
            "--interpret (and without TRITON_INTERPRET=1)"
        )
    if recorded.get("kernel_source_hash") != here.get("kernel_source_hash"):
        raise NotTunableOfflineError(
            "the kernel's source changed since the miss (its next launch records a miss of "
            "the new source)"
        )
    differs = [
        f"{key} {recorded.get(key)} here {here.get(key)}"
        for key in FINGERPRINT_KEYS
        if recorded.get(key) != here.get(key)
    ]
    raise NotTunableOfflineError(
        f"recorded in another environment ({'; '.join(differs)}): tune it where it ran"
    )


@contextlib.contextmanager
def _on_device(device: str) -> Iterator[None]:
    """Launch on the recorded GPU: Triton launches on the current CUDA device."""
    if device.startswith("cuda"):
        with torch.cuda.device(torch.device(device)):
            yield
    else:
        yield
