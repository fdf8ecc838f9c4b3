"""Tuning in-process, on the arguments of the call that missed (or, for `evotune
tune-pending`, on arguments rebuilt from a recorded miss: evotune/autotuning/offline.py).

Every tensor argument is snapshotted first and restored before each trial, so that each
config starts from the caller's data (a kernel that accumulates into its output, `y += x`,
sees the same `y` every time). The reference is what the first config leaves in *every*
tensor argument (or, if it raises, the first config that runs): a candidate must leave the
same within a tolerance, which also catches writes to arguments the first config did not
write.

A trial goes the way of a search's (evotune/worker/trial.py): stored as running, a first
launch (compile; an exception becomes a status through `classify_exception`), the gate
against the reference, then `measure.measure` with the project's timers (wall clock in the
interpreter, CUDA events on a GPU), whose checked runs are restored before and compared
after, outside their timed intervals. What differs from a search: no worker process (a
config that crashes the process, hangs, or breaks the CUDA context takes the caller with it
or stops the tune), no compile pool, no physical floor, no leak check, no shoot-out (the
fastest `ok` p50 is published), and unchecked timed runs see the arguments as the run before
left them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch

from evotune.autotuning.configs import TuningSpace
from evotune.autotuning.store import STRATEGY, TUNED_NOTE, Target, TuningStore
from evotune.errors import WorkerError
from evotune.plugin import DeviceInfo
from evotune.records import Config, TrialRequest, TrialResult, TrialStatus
from evotune.search import Candidate, Observation, make_strategy
from evotune.search.grid import valid_configs
from evotune.storage.trial_store import TrialRecord
from evotune.worker import measure
from evotune.worker.statuses import classify_exception, describe_exception
from evotune.worker.trial import Device, WrongOnLaunch

__all__ = ["CallArgs", "Tuned", "tune"]

# (atol, rtol) by dtype, against the first config's output; other dtypes must match exactly.
_TOLERANCES: dict[torch.dtype, tuple[float, float]] = {
    torch.float16: (1e-2, 1e-2),
    torch.bfloat16: (2e-2, 2e-2),
    torch.float32: (1e-4, 1e-4),
    torch.float64: (1e-8, 1e-8),
}


class CallArgs:
    """The tensor arguments of one call, with a snapshot to restore them from."""

    def __init__(self, tensors: Mapping[str, torch.Tensor]) -> None:
        self.tensors = dict(tensors)
        self._snapshot = {name: t.clone() for name, t in self.tensors.items()}

    def restore(self) -> None:
        for name, tensor in self.tensors.items():
            tensor.copy_(self._snapshot[name])

    def capture(self) -> dict[str, torch.Tensor]:
        return {name: t.clone() for name, t in self.tensors.items()}


@dataclass(frozen=True)
class Tuned:
    """What a tune left: its study, how many trials it stored, and the fastest `ok` one
    (published; None if no config worked)."""

    study_id: int
    trials: int
    winner: TrialRecord | None


class _WrongArgument(WrongOnLaunch):
    def __init__(self, argument: str, launch: int, check: measure.Check, timed: bool) -> None:
        self.argument = argument
        super().__init__(launch, 0, check, timed)

    def text(self) -> str:
        return f"{super().text()} (argument {self.argument!r})"


class _CallSubject:
    """One config over the call's arguments, as the timer runs it (measure.Subject): a
    checked run is restored before (`poison`) and compared with the reference after."""

    def __init__(
        self,
        call: CallArgs,
        launch: Callable[[], None],
        reference: Mapping[str, torch.Tensor],
        tolerance: tuple[float, float] | None,
    ) -> None:
        self.call, self._launch, self.reference = call, launch, reference
        self.tolerance = tolerance
        self.calls = 0
        self.gate_done = False
        self.max_error = 0.0
        self._pending: list[tuple[int, str, measure.PendingCheck]] = []

    def launch(self, i: int) -> None:
        self.calls += 1
        self._launch()

    def poison(self, i: int) -> None:
        self.call.restore()

    def verify(self, i: int) -> None:
        for name, out in self.call.tensors.items():
            ref = self.reference[name]
            atol, rtol = self._tolerance(ref.dtype)
            # NaN where the reference has NaN too (say, an unwritten torch.empty) agrees.
            agree = torch.isnan(out.float()) & torch.isnan(ref.float())
            out, ref = out.float().masked_fill(agree, 0.0), ref.float().masked_fill(agree, 0.0)
            self._pending.append((self.calls, name, measure.PendingCheck(out, ref, atol, rtol)))

    def settle(self) -> None:
        pending, self._pending = self._pending, []
        for launch, name, check in pending:
            verdict = check.result()
            if not verdict.ok:
                raise _WrongArgument(name, launch, verdict, timed=self.gate_done)
            self.max_error = max(self.max_error, verdict.max_error)

    def _tolerance(self, dtype: torch.dtype) -> tuple[float, float]:
        return self.tolerance or _TOLERANCES.get(dtype, (0.0, 0.0))


class _Measurer:
    """Measures configs of one call, one after the other, as trials."""

    def __init__(
        self,
        tuning: TuningSpace,
        target: Target,
        call: CallArgs,
        launch: Callable[[Config], None],
        tolerance: tuple[float, float] | None,
    ) -> None:
        self.tuning, self.target, self.call, self.launch = tuning, target, call, launch
        self.tolerance = tolerance
        self.device = _device(bool(target.environment.get("interpreted")))
        self.reference: dict[str, torch.Tensor] | None = None

    def trial(self, trial_id: int, config: Config) -> TrialResult:
        request = TrialRequest(trial_id, self.target.kernel, self.target.shape.dims, config, 0, {})
        kwargs = self.tuning.launch_kwargs(config)
        stage, compile_s, t_run = "compile", None, time.perf_counter()
        subject = _CallSubject(self.call, lambda: self.launch(kwargs), {}, self.tolerance)
        try:
            self.call.restore()
            t0 = time.perf_counter()
            subject.launch(0)
            self.device.sync()
            compile_s = time.perf_counter() - t0
            if self.reference is None:
                self.reference = self.call.capture()
            subject.reference = self.reference
            stage, t_run = "check", time.perf_counter()
            subject.verify(0)
            subject.settle()
            subject.gate_done = True
            stage = "timing"
            timing = self._time(subject, request)
        except WrongOnLaunch as wrong:
            return TrialResult(
                trial_id,
                TrialStatus.WRONG_RESULT,
                max_error=wrong.check.max_error,
                compile_s=compile_s,
                run_s=time.perf_counter() - t_run,
                error=wrong.text(),
            )
        except Exception as exc:
            status = classify_exception(exc, stage, self.device.context_broken())
            error = describe_exception(exc)
            return TrialResult(trial_id, status, compile_s=compile_s, error=error)
        return TrialResult(
            trial_id,
            TrialStatus.OK,
            p50_us=timing.p50_us,
            p20_us=timing.p20_us,
            p80_us=timing.p80_us,
            n_runs=timing.n_runs,
            samples_us=timing.samples_us,
            max_error=subject.max_error,
            compile_s=compile_s,
            run_s=time.perf_counter() - t_run,
        )

    def _time(self, subject: _CallSubject, request: TrialRequest) -> measure.Timing:
        """The worker's timing loop and limits (trial.time_prepared), on this call."""
        min_runs, max_runs = self.device.limits(request)
        timing, _ = measure.measure(
            subject,
            self.device.timer,
            first=1,
            min_runs=min_runs,
            max_runs=max_runs,
            target_rel_spread=request.target_rel_spread,
            budget_s=request.time_budget_s,
            warmup_s=0.0 if self.device.interpreted else measure.WARMUP_S,
            batch=1 if self.device.interpreted else measure.BATCH,
        )
        return timing


def _device(interpreted: bool) -> Device:
    """The timer and checks of the current device, without the worker's peak measurement
    (there is no physical floor in-process)."""
    if interpreted:
        return Device(True, DeviceInfo(interpreted=True, name="cpu"), measure.WallTimer())
    props = torch.cuda.get_device_properties(torch.cuda.current_device())
    l2_bytes = int(getattr(props, "L2_cache_size", 0)) or (64 << 20)
    info = DeviceInfo(interpreted=False, name=str(props.name))
    return Device(False, info, measure.CudaEventTimer(l2_bytes), l2_bytes)


def tune(
    store: TuningStore,
    target: Target,
    tuning: TuningSpace,
    call: CallArgs,
    launch: Callable[[Config], None],
    *,
    budget: int,
    seed: int,
    tolerance: tuple[float, float] | None,
    note: str = TUNED_NOTE,
) -> Tuned:
    """Search the configs of `tuning` on this call; store every trial and publish the
    fastest `ok` one. The call's tensors are left as they were before. `note` says on the
    study how it was tuned."""
    dims = target.shape.dims
    budget = min(max(1, budget), len(valid_configs(tuning.space, dims)))
    strategy = make_strategy(
        STRATEGY, tuning.space, dims, seed, seed_configs=[tuning.first_config(dims)]
    )
    measurer = _Measurer(tuning, target, call, launch, tolerance)
    study_id = store.start_study(target, budget, seed, note)
    number, state = 0, "interrupted"
    try:
        with store.keep_alive(study_id):
            while number < budget and not strategy.should_stop():
                candidates = strategy.ask(min(strategy.generation_size, budget - number))
                if not candidates:
                    break
                observations = []
                for candidate in candidates:
                    observations.append(_trial(store, measurer, study_id, number, candidate))
                    number += 1
                strategy.tell(observations)
        state = "finished"
    finally:
        winner = store.finish_study(study_id, state)
        call.restore()
    return Tuned(study_id, number, winner)


def _trial(
    store: TuningStore, measurer: _Measurer, study_id: int, number: int, candidate: Candidate
) -> Observation:
    trial_id = store.add_trial(study_id, number, candidate)
    result = measurer.trial(trial_id, candidate.config)
    store.finish_trial(result)
    if result.status is TrialStatus.CUDA_ERROR:
        # No worker to replace: this process cannot use the GPU any more.
        raise WorkerError(
            f"tuning {measurer.target.kernel} broke the CUDA context (config "
            f"{candidate.config}, trial {trial_id}): {result.error}"
        )
    ok = result.status is TrialStatus.OK
    return Observation(
        config=candidate.config,
        status=result.status,
        p50_us=result.p50_us if ok else None,
        generation=candidate.generation,
        parents=candidate.parents,
        operator=candidate.operator,
    )
