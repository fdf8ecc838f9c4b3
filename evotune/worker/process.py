"""The worker process: one per GPU (or one interpreter worker), long-lived and isolated.

The parent sends plain requests over a pipe; the worker builds its own inputs from the
shape and the seed and measures them (evotune/worker/trial.py: the gate, verified timing,
the physical floor), then answers with a `TrialResult`. Anything a config can do to a process
(segfault, hang, a sticky CUDA error, leaked memory, a flood of output) stays here: the pool
kills and replaces the worker and records the trial's status, and a worker that a trial left
unfit for the next (evotune/worker/hygiene.py) says so and exits, so that the next config is
measured by a fresh one.

Messages, parent -> worker: ("trial", TrialRequest), ("shootout", [TrialRequest], rounds),
("stop",). Worker -> parent: ("ready", env) or ("fatal", kind, text) once at start (kind
"no_gpu" or "plugin" for what the user must fix, "start" otherwise); then
("compiled", trial_id, seconds) when the first call (compile + launch) returned, and
("result", TrialResult, retire) or ("results", [TrialResult], retire), where `retire` is
None or why this worker exits now and must be replaced.

This module imports only the standard library and light evotune modules at top level: the
parent imports it to spawn workers; torch and the kernel plug-in load inside the child.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing as mp
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from evotune.errors import NoGpuError, SpaceFileError
from evotune.records import TrialRequest, TrialResult, TrialStatus
from evotune.worker.statuses import MAX_ERROR_TEXT

__all__ = [
    "WorkerSpec",
    "child_env",
    "describe_exit",
    "kill_process",
    "spawn_process",
    "tie_to_parent",
    "worker_main",
]

_PR_SET_PDEATHSIG = 1


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


# --- the worker (child side) ----------------------------------------------------------------


def worker_main(conn: Connection, spec: WorkerSpec) -> None:
    """Entry point of a worker process: start, say ready, then serve requests until told to
    stop, the pipe closes, or a trial leaves it unfit for the next one."""
    tie_to_parent(spec.parent_pid)
    apply_env(child_env(spec.interpreted, spec.gpu))
    from evotune.worker.hygiene import OutputDrain

    drain = OutputDrain()  # before torch loads: whatever prints, from here on, is drained
    from evotune.worker.statuses import describe_exception

    try:
        worker = _TrialWorker(spec)
    except NoGpuError as exc:
        conn.send(("fatal", "no_gpu", str(exc)))
        return
    except SpaceFileError as exc:  # the plug-in cannot be imported or lacks its interface
        conn.send(("fatal", "plugin", str(exc)))
        return
    except BaseException as exc:
        conn.send(("fatal", "start", describe_exception(exc)))
        return
    has_compile_only = callable(getattr(worker.plugin, "compile_only", None))
    conn.send(("ready", {**worker.env, "_has_compile_only": has_compile_only}))
    drain.take()  # start-up chatter is nobody's trial
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg[0] == "stop":
            return
        if msg[0] == "trial":
            request: TrialRequest = msg[1]

            def compiled(seconds: float, trial_id: int = request.trial_id) -> None:
                conn.send(("compiled", trial_id, seconds))

            try:
                result, retire = worker.trial(request, compiled)
            except Exception as exc:  # a bug in the worker itself: still an answer, not a hang
                error = describe_exception(exc)
                result = TrialResult(request.trial_id, TrialStatus.CRASHED, error=error)
                retire = "the worker failed: " + error.splitlines()[0]
            _note_output(result, drain.describe())
            conn.send(("result", result, retire))
        elif msg[0] == "shootout":
            requests: list[TrialRequest] = msg[1]
            try:
                results, retire = worker.shootout(requests, int(msg[2]))
            except Exception as exc:
                text = "shoot-out failed: " + describe_exception(exc)
                results = [
                    TrialResult(r.trial_id, TrialStatus.CRASHED, error=text) for r in requests
                ]
                retire = text.splitlines()[0]
            drain.take()
            conn.send(("results", results, retire))
        else:
            raise RuntimeError(f"unknown message {msg[0]!r}")
        if retire is not None:
            # Leave at once: the parent starts a fresh worker, and what this one holds (device
            # memory, a broken context, state a kernel corrupted) is freed with the process.
            os._exit(0)


def _note_output(result: TrialResult, printed: str | None) -> None:
    """A failed trial's error text ends with what the config printed, if anything."""
    if printed and result.status is not TrialStatus.OK:
        result.error = f"{result.error or ''}\n{printed}"[-MAX_ERROR_TEXT:]


class _TrialWorker:
    """The state of one worker: plug-in, device (timer, peaks) and memory probe."""

    def __init__(self, spec: WorkerSpec) -> None:
        import torch

        from evotune.fingerprint import environment
        from evotune.plugin import load_plugin
        from evotune.worker import trial
        from evotune.worker.hygiene import MemoryProbe

        self.trials = trial
        if not spec.interpreted:
            if not torch.cuda.is_available():
                raise NoGpuError(
                    f"no CUDA device visible to the worker for GPU {spec.gpu} "
                    "(run with the interpreter, or check CUDA_VISIBLE_DEVICES)"
                )
            torch.cuda.set_device(0)
            torch.zeros(1, device="cuda").add_(1).item()  # create the context now, not in trial 1
        self.plugin = load_plugin(spec.kernel_module)
        self.env = environment(spec.kernel_module, interpreted=spec.interpreted)
        self.device = trial.Device.open(spec.interpreted)
        self.probe = MemoryProbe(torch, spec.interpreted)

    def trial(
        self, request: TrialRequest, on_compiled: Callable[[float], None]
    ) -> tuple[TrialResult, str | None]:
        """Measure one request; (its result, why this worker must go, or None)."""
        before = self.probe.read()
        verdict = self._measure(request, on_compiled)
        result, retire = verdict.result, verdict.retire
        if retire is not None:  # the worker goes anyway (and a broken context cannot be read)
            return result, retire
        try:
            leak = self.probe.check(before)
        except Exception as exc:  # e.g. an asynchronous CUDA error surfacing only now
            return result, f"reading its memory after the trial failed: {exc}".splitlines()[0]
        if leak is not None:
            if result.status is TrialStatus.OK:
                result = TrialResult(
                    request.trial_id,
                    TrialStatus.OUT_OF_RESOURCES,
                    compile_s=result.compile_s,
                    run_s=result.run_s,
                    error=f"{leak}; its p50 was {result.p50_us:.4g} µs",
                )
            else:
                result.error = f"{result.error or ''}; {leak}"
        return result, leak

    def _measure(self, request: TrialRequest, on_compiled: Callable[[float], None]) -> Any:
        prepared = self.trials.prepare(self.plugin, request, self.device, on_compiled)
        if isinstance(prepared, self.trials.Verdict):
            return prepared
        return self.trials.time_prepared(self.plugin, prepared, self.device)

    def shootout(
        self, requests: Sequence[TrialRequest], rounds: int
    ) -> tuple[list[TrialResult], str | None]:
        return self.trials.shootout(self.plugin, requests, rounds, self.device)
