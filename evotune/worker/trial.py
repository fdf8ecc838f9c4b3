"""One trial, in the process that runs the kernel: the gate, the verified timing, the floor.

The worker process (evotune/worker/process.py) and `evotune bench` both measure through this
module, so a stored p50, a shoot-out p50 and a bench row come from the same code:

1. `prepare`: fresh inputs (at least two input sets, each with its own reference), the first
   call (compile + launch), then every input set checked once (the gate). Launch 1 wrong is a
   plain wrong result; a later set wrong is a config that is only right on what it saw first.
2. `time_prepared`: batches of timed runs on the rotating input sets; in every batch the last
   run and one other are poisoned before and checked after, outside their timed intervals
   (evotune/worker/measure.py). Wrong on any checked run is `wrong_result`, naming the launch.
3. The physical floor (evotune/worker/hardware.py): a p50 more than 10 % below what the
   device's bandwidth and peak rate allow is `wrong_result` too.

Exceptions become statuses by `classify_exception` (evotune/worker/statuses.py). Each `Verdict` also says whether the worker must be replaced before the next trial.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from evotune.plugin import DeviceInfo, KernelPlugin
from evotune.records import TrialRequest, TrialResult, TrialStatus
from evotune.worker import measure
from evotune.worker.hardware import DevicePeaks, floor_problem, measure_peaks
from evotune.worker.statuses import classify_exception, describe_exception

__all__ = [
    "Device",
    "InputSet",
    "KernelSubject",
    "Prepared",
    "Verdict",
    "WrongOnLaunch",
    "make_input_sets",
    "prepare",
    "shootout",
    "time_prepared",
]

_SENTINEL = 7776.0  # exactly representable in fp16/bf16/fp32: marks unwritten elements


# --- the device ---------------------------------------------------------------------------


@dataclass
class Device:
    """Where trials run in this process: its timer, L2 size, peak rates, and what a plug-in
    may ask of it."""

    interpreted: bool
    info: DeviceInfo
    timer: measure.Timer
    l2_bytes: int = 0
    peaks: DevicePeaks | None = None

    @property
    def name(self) -> str:
        return "cpu" if self.interpreted else "cuda"

    @classmethod
    def open(cls, interpreted: bool) -> Device:
        """This process's CUDA device 0 (or the interpreter); on a GPU this measures the
        device's peak rates (about half a second). Worker and bench alike: float32
        references get no TF32 (torch's cuDNN default would allow it)."""
        if interpreted:
            return cls(True, DeviceInfo(interpreted=True, name="cpu"), measure.WallTimer())
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        props = torch.cuda.get_device_properties(0)
        info = DeviceInfo(
            interpreted=False,
            name=str(props.name),
            capability=(int(props.major), int(props.minor)),
            sm_count=int(props.multi_processor_count),
        )
        l2_bytes = int(getattr(props, "L2_cache_size", 0)) or (64 << 20)
        timer = measure.CudaEventTimer(l2_bytes)
        return cls(False, info, timer, l2_bytes, measure_peaks(torch, info.name))

    def sync(self) -> None:
        if not self.interpreted:
            torch.cuda.synchronize()

    def context_broken(self) -> bool:
        """After an exception: does a tiny CUDA op still work? (sticky errors break all)"""
        if self.interpreted:
            return False
        try:
            torch.cuda.synchronize()
            x = torch.ones(4, device="cuda")
            return float((x + 1).sum().item()) != 8.0
        except Exception:
            return True

    def limits(self, request: TrialRequest) -> tuple[int, int]:
        """(min_runs, max_runs) for a request, clamped to sane ranges."""
        if self.interpreted:  # the interpreter is slow: a few runs say enough
            n = min(max(request.min_runs, 1), 3)
            return n, n
        min_runs = min(max(request.min_runs, 1), 1000)
        return min_runs, min(max(request.max_runs, min_runs), 10000)


# --- exceptions as statuses -----------------------------------------------------------------


def _retire_reason(exc: BaseException, status: TrialStatus) -> str | None:
    """Why an exception leaves the worker unfit for the next config, if it does."""
    names = {cls.__name__ for cls in type(exc).__mro__}
    message = str(exc).lower()
    if status is TrialStatus.CUDA_ERROR:
        return "the CUDA context broke"
    if "OutOfMemoryError" in names or "out of memory" in message:
        return "it ran out of device memory (what it holds could starve the next config)"
    if "cuda error" in message or "cudaerror" in message:
        return "it raised a CUDA error"
    return None


@dataclass
class Verdict:
    """A trial's result, and why its worker must be replaced before the next trial (None:
    it may go on)."""

    result: TrialResult
    retire: str | None = None


# --- what is timed ----------------------------------------------------------------------------


@dataclass
class InputSet:
    """One set of inputs, the output buffer the kernel writes for it, and its reference."""

    inputs: Any
    out: Any
    ref: Any


class WrongOnLaunch(Exception):
    """A checked run's output was wrong; `launch` counts calls from 1 (the first call)."""

    def __init__(self, launch: int, set_index: int, check: measure.Check, timed: bool) -> None:
        self.launch, self.set_index, self.check, self.timed = launch, set_index, check, timed
        super().__init__(self.text())

    def text(self) -> str:
        if self.launch == 1:
            return "wrong result: " + self.check.describe()
        where = "a timed run" if self.timed else "the gate"
        why = (
            "state carried between launches?"
            if self.timed
            else "state carried between launches, or right only on the inputs it saw first?"
        )
        return (
            f"wrong result: correct on launch 1, wrong on launch {self.launch} "
            f"(input set {self.set_index}, {where}): {self.check.describe()}; {why}"
        )


class KernelSubject:
    """A plug-in's config over its input sets, as the timer runs it (measure.Subject)."""

    def __init__(
        self,
        plugin: KernelPlugin,
        config: dict[str, Any],
        sets: Sequence[InputSet],
        tolerance: dict[str, float],
    ) -> None:
        self.plugin, self.config, self.sets = plugin, config, list(sets)
        self.atol = float(tolerance.get("atol", 0.0))
        self.rtol = float(tolerance.get("rtol", 0.0))
        self.calls = 0  # launches so far; the gate is over once every set was checked
        self.gate_done = False
        self.max_error = 0.0
        self._pending: list[tuple[int, int, measure.PendingCheck]] = []

    def _set(self, i: int) -> InputSet:
        return self.sets[i % len(self.sets)]

    def launch(self, i: int) -> None:
        s = self._set(i)
        self.calls += 1
        self.plugin.run(s.inputs, s.out, self.config)

    def poison(self, i: int) -> None:
        self._set(i).out.fill_(math.nan)

    def verify(self, i: int) -> None:
        s = self._set(i)
        pending = measure.PendingCheck(s.out, s.ref, self.atol, self.rtol)
        self._pending.append((self.calls, i % len(self.sets), pending))

    def settle(self) -> None:
        pending, self._pending = self._pending, []
        for launch, set_index, check in pending:
            verdict = check.result()
            if not verdict.ok:
                raise WrongOnLaunch(launch, set_index, verdict, timed=self.gate_done)
            self.max_error = max(self.max_error, verdict.max_error)


def make_input_sets(plugin: KernelPlugin, request: TrialRequest, device: Device) -> list[InputSet]:
    """Input sets for a request, each with a reference from pristine inputs and a
    NaN-filled output: two, or as many as rotating them through the L2 takes."""
    first = plugin.make_inputs(request.dims, request.seed, device.name)
    out = plugin.empty_output(first)
    working_set = measure.tensor_bytes(first) + measure.tensor_bytes(out)
    sets = [InputSet(first, out, plugin.reference(first))]
    for i in range(1, measure.rotation_sets(working_set, device.l2_bytes)):
        inputs = plugin.make_inputs(request.dims, request.seed + i, device.name)
        sets.append(InputSet(inputs, plugin.empty_output(inputs), plugin.reference(inputs)))
    for s in sets:
        s.out.fill_(math.nan)
    return sets


# --- one trial --------------------------------------------------------------------------------


@dataclass
class Prepared:
    """A request that passed the gate, ready to be timed."""

    request: TrialRequest
    subject: KernelSubject
    compile_s: float
    run_s: float = 0.0
    index: int = 0  # the next run's index (input set index mod the number of sets)
    samples: list[float] = field(default_factory=list)


def _fail(
    request: TrialRequest,
    device: Device,
    exc: BaseException,
    stage: str,
    compile_s: float | None,
) -> Verdict:
    status = classify_exception(exc, stage, device.context_broken())
    text = describe_exception(exc)
    if stage == "inputs":
        text = "preparing inputs/reference failed: " + text
    result = TrialResult(request.trial_id, status, compile_s=compile_s, error=text)
    return Verdict(result, _retire_reason(exc, status))


def _wrong(request: TrialRequest, text: str, check: measure.Check | None, **fields: Any) -> Verdict:
    result = TrialResult(
        request.trial_id,
        TrialStatus.WRONG_RESULT,
        max_error=check.max_error if check is not None else None,
        error=text,
        **fields,
    )
    # A wrong output may come with writes outside it: the next config gets a clean worker.
    return Verdict(result, "its result was wrong (it may have written outside its output)")


def _nan_detail(plugin: KernelPlugin, device: Device, s: InputSet, config: Any, check: Any) -> str:
    """Tell NaN written by the kernel from elements it never wrote: run again with the
    buffer filled with a finite sentinel and count what still holds it."""
    try:
        s.out.fill_(_SENTINEL)
        plugin.run(s.inputs, s.out, config)
        device.sync()
        unwritten = int((s.out == torch.full_like(s.out, _SENTINEL)).sum().item())
        nan = int(torch.isnan(s.out.float()).sum().item())
    except Exception:
        return "wrong result: " + check.describe()
    parts = []
    if unwritten:
        parts.append(f"{unwritten} of {check.numel} elements unwritten")
    if nan:
        parts.append(f"{nan} of {check.numel} elements NaN")
    if check.n_over:
        parts.append(f"{check.n_over} elements over tolerance")
    parts.append("max error inf")
    return "wrong result: " + "; ".join(parts)


def prepare(
    plugin: KernelPlugin,
    request: TrialRequest,
    device: Device,
    on_compiled: Callable[[float], None] = lambda _s: None,
) -> Prepared | Verdict:
    """Unsupported check, input sets, first call (compile + launch), the gate on every set."""
    try:
        reason = plugin.unsupported(request.config, request.dims, device.info)
    except Exception as exc:
        error = "unsupported() raised " + describe_exception(exc)
        return Verdict(TrialResult(request.trial_id, TrialStatus.INVALID, error=error))
    if reason:
        return Verdict(TrialResult(request.trial_id, TrialStatus.INVALID, error=str(reason)))
    stage = "inputs"
    compile_s: float | None = None
    subject: KernelSubject | None = None
    t_run = time.perf_counter()
    try:
        sets = make_input_sets(plugin, request, device)
        subject = KernelSubject(plugin, dict(request.config), sets, request.tolerance)
        device.sync()
        stage = "compile"
        t0 = time.perf_counter()
        subject.launch(0)
        compile_s = time.perf_counter() - t0
        on_compiled(compile_s)
        stage = "check"
        t_run = time.perf_counter()
        for i in range(len(sets)):  # set 0 was launched above; each other set once now
            if i:
                subject.poison(i)
                subject.launch(i)
            subject.verify(i)
            device.sync()
            subject.settle()
        subject.gate_done = True
        return Prepared(
            request, subject, compile_s, run_s=time.perf_counter() - t_run, index=len(sets)
        )
    except WrongOnLaunch as wrong:
        text = wrong.text()
        if wrong.launch == 1 and wrong.check.n_nan and subject is not None:
            text = _nan_detail(plugin, device, subject.sets[0], request.config, wrong.check)
        return _wrong(
            request, text, wrong.check, compile_s=compile_s, run_s=time.perf_counter() - t_run
        )
    except Exception as exc:
        return _fail(request, device, exc, stage, compile_s)


def _ok_or_floor(
    plugin: KernelPlugin, prepared: Prepared, device: Device, timing: measure.Timing
) -> Verdict:
    request = prepared.request
    problem = floor_check(plugin, request, device)(timing.p50_us)
    fields: dict[str, Any] = {
        "p50_us": timing.p50_us,
        "p20_us": timing.p20_us,
        "p80_us": timing.p80_us,
        "n_runs": timing.n_runs,
        "samples_us": timing.samples_us,
        "max_error": prepared.subject.max_error,
        "compile_s": prepared.compile_s,
        "run_s": prepared.run_s,
    }
    if problem is not None:
        fields = {k: fields[k] for k in ("n_runs", "samples_us", "compile_s", "run_s")}
        return _wrong(request, "wrong result: " + problem, None, **fields)
    flops = float(plugin.flops(request.dims))
    return Verdict(TrialResult(request.trial_id, TrialStatus.OK, **fields, flops=flops))


def floor_check(
    plugin: KernelPlugin, request: TrialRequest, device: Device
) -> Callable[[float], str | None]:
    """p50 -> why it is physically impossible for this request on this device, or None."""
    if device.peaks is None:
        return lambda _p50: None
    n_bytes_fn = getattr(plugin, "bytes", None)
    n_bytes = float(n_bytes_fn(request.dims)) if callable(n_bytes_fn) else None
    n_flops = float(plugin.flops(request.dims))
    peaks = device.peaks
    return lambda p50: floor_problem(p50, n_bytes, n_flops, peaks)


def time_prepared(
    plugin: KernelPlugin, prepared: Prepared, device: Device, warmup_s: float | None = None
) -> Verdict:
    """Time a prepared request until its median is stable; verify, then the floor."""
    request = prepared.request
    min_runs, max_runs = device.limits(request)
    t0 = time.perf_counter()
    try:
        timing, prepared.index = measure.measure(
            prepared.subject,
            device.timer,
            first=prepared.index,
            min_runs=min_runs,
            max_runs=max_runs,
            target_rel_spread=max(0.0, request.target_rel_spread),
            budget_s=max(0.0, request.time_budget_s),
            warmup_s=(0.0 if device.interpreted else measure.WARMUP_S)
            if warmup_s is None
            else warmup_s,
            batch=1 if device.interpreted else measure.BATCH,
        )
    except WrongOnLaunch as wrong:
        prepared.run_s += time.perf_counter() - t0
        return _wrong(
            request,
            wrong.text(),
            wrong.check,
            compile_s=prepared.compile_s,
            run_s=prepared.run_s,
        )
    except Exception as exc:
        return _fail(request, device, exc, "timing", prepared.compile_s)
    prepared.run_s += time.perf_counter() - t0
    return _ok_or_floor(plugin, prepared, device, timing)


def shootout(
    plugin: KernelPlugin, requests: Sequence[TrialRequest], rounds: int, device: Device
) -> tuple[list[TrialResult], str | None]:
    """Re-measure finalists interleaved, A B C A B C ..., so that drift of the machine hits
    all of them alike; each visit times one batch of min_runs runs (verified like any
    batch). Results in request order, and why the worker must be replaced (or None)."""
    verdicts: dict[int, Verdict] = {}
    live: list[tuple[int, Prepared]] = []
    for i, request in enumerate(requests):
        prepared = prepare(plugin, request, device)
        if isinstance(prepared, Verdict):
            verdicts[i] = prepared
            if prepared.result.status is TrialStatus.CUDA_ERROR:
                return _abandon(requests, verdicts, "the CUDA context broke")
        else:
            live.append((i, prepared))
    timer = device.timer
    try:
        if not device.interpreted:  # warm the GPU up once, on all finalists in turn
            warm_end = time.perf_counter() + measure.WARMUP_S
            while time.perf_counter() < warm_end:
                for _, p in live:
                    timer.batch(p.subject, p.index, 2, measure.checked_runs(p.index, 2))
                    p.index += 2
        for _ in range(max(1, rounds)):
            for i, p in list(live):
                n = 1 if device.interpreted else min(max(p.request.min_runs, 1), 100)
                t0 = time.perf_counter()
                try:
                    p.samples += timer.batch(
                        p.subject, p.index, n, measure.checked_runs(p.index, n)
                    )
                except WrongOnLaunch as wrong:
                    verdicts[i] = _wrong(p.request, wrong.text(), wrong.check)
                    live.remove((i, p))
                p.index += n
                p.run_s += time.perf_counter() - t0
    except Exception as exc:
        for i, p in live:
            verdicts[i] = _fail(p.request, device, exc, "timing", p.compile_s)
            verdicts[i].result.error = "shoot-out failed: " + (verdicts[i].result.error or "")
        return _results(requests, verdicts)
    for i, p in live:
        verdicts[i] = _ok_or_floor(plugin, p, device, measure.summarize(p.samples))
    return _results(requests, verdicts)


def _results(
    requests: Sequence[TrialRequest], verdicts: dict[int, Verdict]
) -> tuple[list[TrialResult], str | None]:
    ordered = [verdicts[i] for i in range(len(requests))]
    retire = next((v.retire for v in ordered if v.retire), None)
    return [v.result for v in ordered], retire


def _abandon(
    requests: Sequence[TrialRequest], verdicts: dict[int, Verdict], why: str
) -> tuple[list[TrialResult], str | None]:
    for i, request in enumerate(requests):
        verdicts.setdefault(
            i,
            Verdict(
                TrialResult(request.trial_id, TrialStatus.CUDA_ERROR, error=f"not measured: {why}")
            ),
        )
    return [verdicts[i].result for i in range(len(requests))], why
