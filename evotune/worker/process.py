"""The worker process: one per GPU (or one interpreter worker), long-lived and isolated.

The parent sends plain requests over a pipe; the worker builds its own inputs from the
shape and the seed, runs the correctness gate, times the kernel and answers with a
`TrialResult`. Anything a config can do to a process (segfault, hang, a sticky CUDA error)
stays here: the pool kills and replaces the worker and records the trial's status.

Messages, parent -> worker: ("trial", TrialRequest), ("shootout", [TrialRequest], rounds),
("stop",). Worker -> parent: ("ready", env) or ("fatal", kind, text) once at start; then
("compiled", trial_id, seconds) when the first call (compile + launch) returned, and
("result", TrialResult) or ("results", [TrialResult]).

How exceptions become statuses (`classify_exception`): Triton's OutOfResources, "too many
resources" launch errors and CUDA out-of-memory are `out_of_resources`; Triton compilation
and ptxas errors are `compile_error`; a CUDA context that no longer works after the error
(a tiny CUDA op fails) is `cuda_error`. Any other exception raised by the first call of
`run()` is `compile_error` (the config could not be built or launched); raised later, once
the kernel has run, it is `crashed`, and so is a failure of `make_inputs`/`reference`.

This module imports only the standard library and light evotune modules at top level: the
parent imports it to spawn workers; torch and the kernel plug-in load inside the child.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import math
import multiprocessing as mp
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from evotune.errors import NoGpuError
from evotune.records import TrialRequest, TrialResult, TrialStatus

__all__ = [
    "WorkerSpec",
    "child_env",
    "classify_exception",
    "describe_exception",
    "describe_exit",
    "kill_process",
    "spawn_process",
    "tie_to_parent",
    "worker_main",
]

_PR_SET_PDEATHSIG = 1
_WARMUP_S = 0.05  # GPU warm-up before timing: lets clocks settle after compiling/idling
_SENTINEL = 7776.0  # exactly representable in fp16/bf16/fp32: marks unwritten elements
_MAX_ERROR_TEXT = 4000


# --- both sides of the boundary ---------------------------------------------------------


@dataclass(frozen=True)
class WorkerSpec:
    """What a worker needs to start (picklable)."""

    kernel_module: str
    interpreted: bool
    gpu: int | None
    parent_pid: int
    extra: dict[str, Any] = field(default_factory=dict)


def child_env(interpreted: bool, gpu: int | None) -> dict[str, str | None]:
    """Environment a worker must have before torch/triton load (None: unset).

    The interpreter switch must precede the kernel module's import; an interpreter worker
    sees no GPU at all, so that it never creates a CUDA context.
    """
    if interpreted:
        return {"TRITON_INTERPRET": "1", "CUDA_VISIBLE_DEVICES": ""}
    return {
        "TRITON_INTERPRET": None,
        "CUDA_VISIBLE_DEVICES": None if gpu is None else str(gpu),
    }


_ENV_LOCK = threading.Lock()


@contextlib.contextmanager
def _patched_environ(env: Mapping[str, str | None]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in env}
    try:
        apply_env(env)
        yield
    finally:
        apply_env(saved)


def spawn_process(
    target: Callable[..., None], args: tuple[Any, ...], env: Mapping[str, str | None], name: str
) -> tuple[BaseProcess, Connection]:
    """Start `target(conn, *args)` in a fresh (spawned) interpreter with `env` applied.

    The environment is patched in the parent around start() because spawn re-imports the
    parent's main module in the child before the target runs: the child must already see
    the variables then. Returns the process and the parent's end of a duplex pipe.
    """
    ctx = mp.get_context("spawn")
    parent_conn, child_conn = ctx.Pipe(duplex=True)
    proc = ctx.Process(target=target, args=(child_conn, *args), name=name, daemon=True)
    with _ENV_LOCK, _patched_environ(env):
        proc.start()
    child_conn.close()
    return proc, parent_conn


def kill_process(proc: BaseProcess, conn: Connection | None = None) -> None:
    """SIGKILL a worker and its process group (it leads one once started), then reap it."""
    pid = proc.pid
    if pid is not None and proc.exitcode is None:
        try:
            if os.getpgid(pid) == pid:
                os.killpg(pid, signal.SIGKILL)
            else:  # killed before it called setsid(): only the process itself exists
                os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    proc.join(timeout=10)
    if conn is not None:
        conn.close()


def describe_exit(exitcode: int | None) -> str:
    """'SIGSEGV', 'exit code 1', ... for a dead process."""
    if exitcode is None:
        return "unknown exit status"
    if exitcode < 0:
        try:
            return signal.Signals(-exitcode).name
        except ValueError:
            return f"signal {-exitcode}"
    return f"exit code {exitcode}"


def tie_to_parent(parent_pid: int) -> None:
    """Make this process die with its parent: its own process group (so the parent can kill
    it with everything it started), PR_SET_PDEATHSIG on Linux, and a watchdog thread that
    exits when the parent pid changes (covers platforms and races prctl misses)."""
    with contextlib.suppress(OSError):
        os.setsid()
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(3)

    def watch() -> None:
        while True:
            time.sleep(0.5)
            if os.getppid() != parent_pid:
                os._exit(3)

    threading.Thread(target=watch, name="evotune-parent-watchdog", daemon=True).start()


def apply_env(env: Mapping[str, str | None]) -> None:
    """Set each variable, or unset it where the value is None."""
    for key, value in env.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def describe_exception(exc: BaseException) -> str:
    """One readable text for a stored trial: type, message, and the innermost frames."""
    text = f"{type(exc).__name__}: {exc}"
    tb = traceback.extract_tb(exc.__traceback__)[-3:]
    if tb:
        text += "\n" + "".join(traceback.format_list(tb))
    return text[:_MAX_ERROR_TEXT]


def classify_exception(exc: BaseException, stage: str, context_broken: bool = False) -> TrialStatus:
    """The status of a trial that raised `exc` in `stage` ('inputs', 'compile', 'check',
    'timing'). See the module docstring for the rules."""
    if context_broken:
        return TrialStatus.CUDA_ERROR
    names = {cls.__name__ for cls in type(exc).__mro__}
    message = str(exc).lower()
    if (
        "OutOfResources" in names
        or "OutOfMemoryError" in names
        or "out of resource" in message
        or "too many resources requested" in message
    ):
        return TrialStatus.OUT_OF_RESOURCES
    if names & {"CompilationError", "PTXASError"}:
        return TrialStatus.COMPILE_ERROR
    if stage == "compile":
        return TrialStatus.COMPILE_ERROR
    return TrialStatus.CRASHED


# --- the worker (child side) ----------------------------------------------------------------


def worker_main(conn: Connection, spec: WorkerSpec) -> None:
    """Entry point of a worker process: start, say ready, then serve requests until told to
    stop or the pipe closes."""
    tie_to_parent(spec.parent_pid)
    apply_env(child_env(spec.interpreted, spec.gpu))
    try:
        worker = _TrialWorker(spec)
    except NoGpuError as exc:
        conn.send(("fatal", "no_gpu", str(exc)))
        return
    except BaseException as exc:
        conn.send(("fatal", "start", describe_exception(exc)))
        return
    has_compile_only = callable(getattr(worker.plugin, "compile_only", None))
    conn.send(("ready", {**worker.env, "_has_compile_only": has_compile_only}))
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg[0] == "stop":
            return
        if msg[0] == "trial":
            request: TrialRequest = msg[1]
            trial_id = request.trial_id

            def compiled(seconds: float, trial_id: int = trial_id) -> None:
                conn.send(("compiled", trial_id, seconds))

            try:
                result = worker.trial(request, compiled)
            except Exception as exc:  # a bug in the worker itself: still an answer, not a hang
                result = TrialResult(
                    request.trial_id, TrialStatus.CRASHED, error=describe_exception(exc)
                )
            conn.send(("result", result))
            results = [result]
        elif msg[0] == "shootout":
            requests: list[TrialRequest] = msg[1]
            try:
                results = worker.shootout(requests, int(msg[2]))
            except Exception as exc:
                text = "shoot-out failed: " + describe_exception(exc)
                results = [
                    TrialResult(r.trial_id, TrialStatus.CRASHED, error=text) for r in requests
                ]
            conn.send(("results", results))
        else:
            raise RuntimeError(f"unknown message {msg[0]!r}")
        if any(r.status is TrialStatus.CUDA_ERROR for r in results):
            # The CUDA context is ruined: leave at once (the pool starts a fresh worker).
            os._exit(0)


@dataclass
class _Prepared:
    """A request that passed the correctness gate, ready to be timed."""

    request: TrialRequest
    launch: Callable[[int], None]
    compile_s: float
    max_error: float
    run_s: float = 0.0
    samples: list[float] = field(default_factory=list)
    index: int = 0


class _TrialWorker:
    """The state of one worker: plug-in, device, timer, a small reference cache."""

    def __init__(self, spec: WorkerSpec) -> None:
        import torch

        from evotune.fingerprint import environment
        from evotune.plugin import DeviceInfo, load_plugin
        from evotune.worker import measure

        self.torch = torch
        self.measure = measure
        self.interpreted = spec.interpreted
        if not self.interpreted:
            if not torch.cuda.is_available():
                raise NoGpuError(
                    f"no CUDA device visible to the worker for GPU {spec.gpu} "
                    "(run with the interpreter, or check CUDA_VISIBLE_DEVICES)"
                )
            torch.cuda.set_device(0)
            torch.zeros(1, device="cuda").add_(1).item()  # create the context now, not in trial 1
            # The reference is float32: no TF32 inside it.
            torch.backends.cuda.matmul.allow_tf32 = False
            torch.backends.cudnn.allow_tf32 = False
        self.device = "cpu" if self.interpreted else "cuda"
        self.plugin = load_plugin(spec.kernel_module)
        self.env = environment(spec.kernel_module, interpreted=self.interpreted)
        cap = self.env["device_capability"]
        self.device_info = DeviceInfo(
            interpreted=self.interpreted,
            name=str(self.env["gpu"]),
            capability=(int(cap[0]), int(cap[1])) if cap else None,
            sm_count=int(self.env["sm_count"]),
        )
        self.timer: measure.Timer
        if self.interpreted:
            self.l2_bytes = 0
            self.timer = measure.WallTimer()
        else:
            props = torch.cuda.get_device_properties(0)
            self.l2_bytes = int(getattr(props, "L2_cache_size", 0)) or (64 << 20)
            self.timer = measure.CudaEventTimer(self.l2_bytes)
        self._ref_key: str | None = None
        self._ref: Any = None

    # --- helpers ----------------------------------------------------------------------

    def _sync(self) -> None:
        if not self.interpreted:
            self.torch.cuda.synchronize()

    def _context_broken(self) -> bool:
        """After an exception: does a tiny CUDA op still work? (sticky errors break all)"""
        if self.interpreted:
            return False
        try:
            self.torch.cuda.synchronize()
            x = self.torch.ones(4, device="cuda")
            return float((x + 1).sum().item()) != 8.0
        except Exception:
            return True

    def _reference(self, request: TrialRequest, inputs: Any) -> Any:
        """Reference output of (dims, seed): computed once from pristine inputs, reused."""
        key = json.dumps([request.kernel, request.dims, request.seed], sort_keys=True, default=str)
        if key != self._ref_key:
            self._ref, self._ref_key = None, None
            ref = self.plugin.reference(inputs)
            self._ref, self._ref_key = ref, key
        return self._ref

    def _fail(
        self, request: TrialRequest, exc: BaseException, stage: str, compile_s: float | None
    ) -> TrialResult:
        status = classify_exception(exc, stage, self._context_broken())
        text = describe_exception(exc)
        if stage == "inputs":
            text = "preparing inputs/reference failed: " + text
        return TrialResult(request.trial_id, status, compile_s=compile_s, error=text)

    def _nan_detail(self, request: TrialRequest, inputs: Any, out: Any, check: Any) -> str:
        """Tell NaN written by the kernel from elements it never wrote: run again with the
        buffer filled with a finite sentinel and count what still holds it."""
        try:
            out.fill_(_SENTINEL)
            self.plugin.run(inputs, out, request.config)
            self._sync()
            unwritten = int((out == self.torch.full_like(out, _SENTINEL)).sum().item())
            nan = int(self.torch.isnan(out.float()).sum().item())
        except Exception:
            return check.describe()
        parts = []
        if unwritten:
            parts.append(f"{unwritten} of {check.numel} elements unwritten")
        if nan:
            parts.append(f"{nan} of {check.numel} elements NaN")
        if check.n_over:
            parts.append(f"{check.n_over} elements over tolerance")
        parts.append("max error inf")
        return "wrong result: " + "; ".join(parts)

    # --- one request ------------------------------------------------------------------

    def _prepare(
        self, request: TrialRequest, on_compiled: Callable[[float], None]
    ) -> _Prepared | TrialResult:
        """Unsupported check, inputs, first call (compile + launch), correctness gate."""
        try:
            reason = self.plugin.unsupported(request.config, request.dims, self.device_info)
        except Exception as exc:
            return TrialResult(
                request.trial_id,
                TrialStatus.INVALID,
                error="unsupported() raised " + describe_exception(exc),
            )
        if reason:
            return TrialResult(request.trial_id, TrialStatus.INVALID, error=str(reason))
        stage = "inputs"
        compile_s: float | None = None
        try:
            inputs = self.plugin.make_inputs(request.dims, request.seed, self.device)
            ref = self._reference(request, inputs)
            out = self.plugin.empty_output(inputs)
            out.fill_(math.nan)
            self._sync()
            stage = "compile"
            t0 = time.perf_counter()
            self.plugin.run(inputs, out, request.config)
            compile_s = time.perf_counter() - t0
            on_compiled(compile_s)
            stage = "check"
            t_run = time.perf_counter()
            self._sync()
            check = self.measure.check_output(
                out,
                ref,
                float(request.tolerance.get("atol", 0.0)),
                float(request.tolerance.get("rtol", 0.0)),
            )
            if not check.ok:
                text = (
                    self._nan_detail(request, inputs, out, check)
                    if check.n_nan
                    else "wrong result: " + check.describe()
                )
                return TrialResult(
                    request.trial_id,
                    TrialStatus.WRONG_RESULT,
                    max_error=check.max_error,
                    compile_s=compile_s,
                    run_s=time.perf_counter() - t_run,
                    error=text,
                )
            launch = self._launcher(request, inputs, out)
            return _Prepared(
                request, launch, compile_s, check.max_error, run_s=time.perf_counter() - t_run
            )
        except Exception as exc:
            return self._fail(request, exc, stage, compile_s)

    def _launcher(self, request: TrialRequest, inputs: Any, out: Any) -> Callable[[int], None]:
        """launch(i) runs the kernel on input set i mod k (k > 1 when a set fits in L2)."""
        sets = [(inputs, out)]
        if not self.interpreted and request.rotate_inputs:
            ws = self.measure.tensor_bytes(inputs) + self.measure.tensor_bytes(out)
            for i in range(1, self.measure.rotation_sets(ws, self.l2_bytes)):
                extra = self.plugin.make_inputs(request.dims, request.seed + i, self.device)
                sets.append((extra, self.plugin.empty_output(extra)))
        run, config, k = self.plugin.run, request.config, len(sets)

        def launch(i: int) -> None:
            inp, o = sets[i % k]
            run(inp, o, config)

        return launch

    def _limits(self, request: TrialRequest) -> tuple[int, int]:
        if self.interpreted:  # the interpreter is slow: a few runs say enough
            n = min(max(request.min_runs, 1), 3)
            return n, n
        min_runs = min(max(request.min_runs, 1), 1000)
        return min_runs, min(max(request.max_runs, min_runs), 10000)

    def trial(self, request: TrialRequest, on_compiled: Callable[[float], None]) -> TrialResult:
        prepared = self._prepare(request, on_compiled)
        if isinstance(prepared, TrialResult):
            return prepared
        min_runs, max_runs = self._limits(request)
        t0 = time.perf_counter()
        try:
            timing = self.measure.measure(
                prepared.launch,
                self.timer,
                min_runs=min_runs,
                max_runs=max_runs,
                target_rel_spread=max(0.0, request.target_rel_spread),
                budget_s=max(0.0, request.time_budget_s),
                warmup_s=0.0 if self.interpreted else _WARMUP_S,
                batch=1 if self.interpreted else 10,
            )
        except Exception as exc:
            return self._fail(request, exc, "timing", prepared.compile_s)
        return TrialResult(
            request.trial_id,
            TrialStatus.OK,
            p50_us=timing.p50_us,
            p20_us=timing.p20_us,
            p80_us=timing.p80_us,
            n_runs=timing.n_runs,
            samples_us=timing.samples_us,
            max_error=prepared.max_error,
            compile_s=prepared.compile_s,
            run_s=prepared.run_s + time.perf_counter() - t0,
        )

    def shootout(self, requests: Sequence[TrialRequest], rounds: int) -> list[TrialResult]:
        """Re-measure finalists interleaved, A B C A B C ..., so that drift of the machine
        hits all of them alike. Each visit times a batch of min_runs runs."""
        results: dict[int, TrialResult] = {}
        live: list[tuple[int, _Prepared]] = []
        for i, request in enumerate(requests):
            prepared = self._prepare(request, lambda _s: None)
            if isinstance(prepared, TrialResult):
                results[i] = prepared
                if prepared.status is TrialStatus.CUDA_ERROR:
                    return self._abandon(requests, results, "the CUDA context broke")
            else:
                live.append((i, prepared))
        try:
            if not self.interpreted:  # warm the GPU up once, on all finalists in turn
                warm_end = time.perf_counter() + _WARMUP_S
                while time.perf_counter() < warm_end:
                    for _, p in live:
                        self.timer.batch(p.launch, p.index, 2)
                        p.index += 2
            for _ in range(max(1, rounds)):
                for _, p in live:
                    n = 1 if self.interpreted else min(max(p.request.min_runs, 1), 100)
                    t0 = time.perf_counter()
                    p.samples += self.timer.batch(p.launch, p.index, n)
                    p.index += n
                    p.run_s += time.perf_counter() - t0
        except Exception as exc:
            status = classify_exception(exc, "timing", self._context_broken())
            text = "shoot-out failed: " + describe_exception(exc)
            for i, p in live:
                results[i] = TrialResult(p.request.trial_id, status, error=text)
            return [results[i] for i in range(len(requests))]
        for i, p in live:
            timing = self.measure.summarize(p.samples)
            results[i] = TrialResult(
                p.request.trial_id,
                TrialStatus.OK,
                p50_us=timing.p50_us,
                p20_us=timing.p20_us,
                p80_us=timing.p80_us,
                n_runs=timing.n_runs,
                samples_us=timing.samples_us,
                max_error=p.max_error,
                compile_s=p.compile_s,
                run_s=p.run_s,
            )
        return [results[i] for i in range(len(requests))]

    @staticmethod
    def _abandon(
        requests: Sequence[TrialRequest], results: dict[int, TrialResult], why: str
    ) -> list[TrialResult]:
        for i, request in enumerate(requests):
            results.setdefault(
                i,
                TrialResult(request.trial_id, TrialStatus.CUDA_ERROR, error=f"not measured: {why}"),
            )
        return [results[i] for i in range(len(requests))]
