"""The compile pool: CPU processes that compile upcoming candidates ahead of the GPU worker.

Each process calls the plug-in's optional `compile_only(dims, config, device)`, which fills
Triton's on-disk cache, so that the GPU worker's first call only loads the binary. A config
that fails to compile here (a Triton compilation or ptxas error, out of shared memory) or
outlasts the compile timeout ends right here as `compile_error`, `out_of_resources` or
`timeout`, without costing the GPU worker anything; one the plug-in calls unsupported ends
as `invalid`. Any other failure of `compile_only` (including the process dying) is not
blamed on the config: the request goes on to the GPU worker, which decides.
"""

from __future__ import annotations

import contextlib
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from evotune.errors import WorkerError
from evotune.plugin import DeviceInfo
from evotune.records import TrialRequest, TrialResult, TrialStatus
from evotune.worker.process import (
    apply_env,
    child_env,
    describe_exit,
    kill_process,
    spawn_process,
    tie_to_parent,
)
from evotune.worker.statuses import classify_exception, describe_exception

__all__ = ["CompileOutcome", "CompilePool", "CompileSpec", "compile_main", "drain"]

_FINAL = (TrialStatus.COMPILE_ERROR, TrialStatus.OUT_OF_RESOURCES)
_MAX_START_FAILURES = 3


@dataclass(frozen=True)
class CompileSpec:
    """What a compile process needs to start (picklable)."""

    kernel_module: str
    device: DeviceInfo
    gpu: int | None
    parent_pid: int


@dataclass(frozen=True)
class CompileOutcome:
    """What the compile pool says of one request: a final status, or None to go on."""

    request: TrialRequest
    status: TrialStatus | None
    error: str | None = None
    seconds: float = 0.0

    def to_result(self) -> TrialResult:
        assert self.status is not None
        return TrialResult(
            self.request.trial_id,
            self.status,
            compile_s=self.seconds if self.status is not TrialStatus.INVALID else None,
            error=self.error,
        )


def compile_main(conn: Connection, spec: CompileSpec) -> None:
    """Entry point of a compile process: load the plug-in, then compile what it is sent."""
    tie_to_parent(spec.parent_pid)
    apply_env(child_env(False, spec.gpu))
    try:
        from evotune.plugin import load_plugin

        plugin: Any = load_plugin(spec.kernel_module)
        compile_only = plugin.compile_only
    except BaseException as exc:
        conn.send(("fatal", "start", describe_exception(exc)))
        return
    conn.send(("ready", None))
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg[0] == "stop":
            return
        _, token, dims, config = msg
        t0 = time.perf_counter()
        status: str | None = None
        error: str | None = None
        try:
            reason = plugin.unsupported(config, dims, spec.device)
            if reason:
                status, error = TrialStatus.INVALID.value, str(reason)
            else:
                compile_only(dims, config, spec.device)
        except Exception as exc:
            verdict = classify_exception(exc, "compile-pool")
            error = describe_exception(exc)
            status = verdict.value if verdict in _FINAL else None
            if status is None:
                error = "compile pool could not compile (left to the GPU worker): " + error
        conn.send(("done", token, status, error, time.perf_counter() - t0))


@dataclass
class _Slot:
    index: int
    proc: BaseProcess | None = None
    conn: Connection | None = None
    ready: bool = False
    start_deadline: float = 0.0
    start_failures: int = 0
    job: TrialRequest | None = None
    token: int = 0
    deadline: float = 0.0


class CompilePool:
    """A fixed number of compile processes fed from a queue; killed and replaced on timeout.

    Drive it from an event loop: `submit()` requests, wait on `handles()` (until at most
    `next_deadline()`), then `poll()` for outcomes.
    """

    def __init__(
        self,
        kernel_module: str,
        device: DeviceInfo,
        *,
        workers: int,
        timeout_s: float,
        gpu: int | None = None,
        start_timeout_s: float = 180.0,
    ) -> None:
        import os

        if workers < 1:
            raise ValueError("a compile pool needs at least one worker")
        self._spec = CompileSpec(kernel_module, device, gpu, os.getpid())
        self.timeout_s = timeout_s
        self.start_timeout_s = start_timeout_s
        self._queue: deque[TrialRequest] = deque()
        self._slots = [_Slot(i) for i in range(workers)]
        self._tokens = 0
        self._closed = False
        for slot in self._slots:
            self._start(slot)

    # --- processes ------------------------------------------------------------------------

    def _start(self, slot: _Slot) -> None:
        slot.proc, slot.conn = spawn_process(
            compile_main,
            (self._spec,),
            child_env(False, self._spec.gpu),
            name=f"evotune-compile-{slot.index}",
        )
        slot.ready = False
        slot.start_deadline = time.monotonic() + self.start_timeout_s

    def _restart(self, slot: _Slot) -> None:
        if slot.proc is not None:
            kill_process(slot.proc, slot.conn)
        slot.job = None
        self._start(slot)

    # --- the queue ------------------------------------------------------------------------

    def submit(self, request: TrialRequest) -> None:
        self._queue.append(request)

    @property
    def size(self) -> int:
        """Number of compile processes."""
        return len(self._slots)

    @property
    def pending(self) -> int:
        """Requests queued or being compiled."""
        return len(self._queue) + sum(1 for s in self._slots if s.job is not None)

    def handles(self) -> list[Any]:
        out: list[Any] = []
        for slot in self._slots:
            if slot.conn is not None and slot.proc is not None:
                out += [slot.conn, slot.proc.sentinel]
        return out

    def next_deadline(self) -> float | None:
        times = [s.deadline for s in self._slots if s.job is not None]
        times += [s.start_deadline for s in self._slots if not s.ready]
        return min(times) if times else None

    def _timeout_for(self, request: TrialRequest) -> float:
        return (
            request.compile_timeout_s if request.compile_timeout_s is not None else self.timeout_s
        )

    def _dispatch(self) -> None:
        for slot in self._slots:
            if not self._queue:
                return
            if slot.ready and slot.job is None and slot.conn is not None:
                request = self._queue.popleft()
                self._tokens += 1
                slot.token, slot.job = self._tokens, request
                slot.deadline = time.monotonic() + self._timeout_for(request)
                try:
                    slot.conn.send(("compile", slot.token, request.dims, request.config))
                except OSError:  # died just now: retry the request on a fresh process
                    self._queue.appendleft(request)
                    self._restart(slot)

    def poll(self) -> list[CompileOutcome]:
        """Collect finished compiles, handle deaths and timeouts, feed idle processes."""
        outcomes: list[CompileOutcome] = []
        for slot in self._slots:
            outcomes += self._poll_slot(slot)
        self._dispatch()
        return outcomes

    def _poll_slot(self, slot: _Slot) -> list[CompileOutcome]:
        assert slot.proc is not None and slot.conn is not None
        now = time.monotonic()
        eof = False
        outcomes: list[CompileOutcome] = []
        try:
            while slot.conn.poll():
                msg = slot.conn.recv()
                if msg[0] == "ready":
                    slot.ready, slot.start_failures = True, 0
                elif msg[0] == "fatal":
                    raise WorkerError(f"a compile process could not start: {msg[2]}")
                elif msg[0] == "done" and slot.job is not None and msg[1] == slot.token:
                    status = TrialStatus(msg[2]) if msg[2] is not None else None
                    outcomes.append(CompileOutcome(slot.job, status, msg[3], float(msg[4])))
                    slot.job = None
        except (EOFError, OSError):
            eof = True
        if eof or not slot.proc.is_alive():
            slot.proc.join(timeout=5)
            why = describe_exit(slot.proc.exitcode)
            if slot.job is not None:  # not the config's fault for sure: the GPU worker decides
                outcomes.append(
                    CompileOutcome(
                        slot.job, None, f"compile process died ({why}); left to the GPU worker"
                    )
                )
            elif not slot.ready:
                slot.start_failures += 1
                if slot.start_failures >= _MAX_START_FAILURES:
                    raise WorkerError(f"compile processes keep dying at start ({why})")
            self._restart(slot)
            return outcomes
        if slot.job is not None and now >= slot.deadline:
            request = slot.job
            limit = self._timeout_for(request)
            self._restart(slot)
            outcomes.append(
                CompileOutcome(
                    request,
                    TrialStatus.TIMEOUT,
                    f"compile timed out after {limit:.1f} s (compile pool); process killed",
                    limit,
                )
            )
        elif not slot.ready and now >= slot.start_deadline:
            raise WorkerError(
                f"a compile process did not start within {self.start_timeout_s:.0f} s"
            )
        return outcomes

    def cancel(self) -> None:
        """Forget queued requests and kill compiles in flight (for an abandoned evaluate)."""
        self._queue.clear()
        for slot in self._slots:
            if slot.job is not None:
                self._restart(slot)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for slot in self._slots:
            if slot.conn is not None and slot.ready and slot.job is None:
                with contextlib.suppress(OSError):
                    slot.conn.send(("stop",))
        deadline = time.monotonic() + 2.0
        for slot in self._slots:
            if slot.proc is not None:
                if slot.ready and slot.job is None:  # others would not read "stop"
                    slot.proc.join(timeout=max(0.0, deadline - time.monotonic()))
                kill_process(slot.proc, slot.conn)

    def wait_ready(self, timeout_s: float | None = None) -> None:
        """Block until every process has started (tests and benchmarks use this)."""
        from multiprocessing.connection import wait

        end = time.monotonic() + (timeout_s if timeout_s is not None else self.start_timeout_s)
        while not all(s.ready for s in self._slots):
            left = end - time.monotonic()
            if left <= 0:
                raise WorkerError("compile processes did not start in time")
            wait(self.handles(), timeout=min(left, 1.0))
            self.poll()


def drain(pool: CompilePool, requests: Sequence[TrialRequest]) -> list[CompileOutcome]:
    """Compile all `requests` and return their outcomes (in completion order); for tests."""
    from multiprocessing.connection import wait

    for request in requests:
        pool.submit(request)
    outcomes: list[CompileOutcome] = []
    while len(outcomes) < len(requests):
        outcomes += pool.poll()
        if len(outcomes) >= len(requests):
            break
        deadline = pool.next_deadline()
        timeout = 1.0 if deadline is None else max(0.0, min(1.0, deadline - time.monotonic()))
        wait(pool.handles(), timeout=timeout)
    return outcomes
