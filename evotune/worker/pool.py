"""The worker pool: one isolated worker process per GPU (or one interpreter worker), plus an
optional compile pool; implements the `Evaluator` protocol (evotune/worker/evaluator.py).

The pool owns every failure a config can cause: a worker that dies is replaced and its
trial is `crashed`; one that outlasts the compile timeout (before its first call returned)
or the request's run timeout (after it) is killed with its process group and replaced,
and the trial is `timeout`; a worker that says a trial left it unfit (a broken CUDA context,
out of memory, a leak, a wrong result: evotune/worker/process.py) is replaced before the
next trial. Workers die with the pool's process (see process.tie_to_parent).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections import deque
from collections.abc import Generator, Sequence
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from types import TracebackType
from typing import Any

from evotune.errors import NoGpuError, SpaceFileError, WorkerError
from evotune.fingerprint import fingerprint_hash
from evotune.plugin import DeviceInfo
from evotune.records import TrialRequest, TrialResult, TrialStatus
from evotune.worker.compile_pool import CompilePool
from evotune.worker.process import (
    WorkerSpec,
    child_env,
    describe_exit,
    kill_process,
    spawn_process,
    worker_main,
)

__all__ = ["WorkerPool"]

_MAX_START_FAILURES = 3


@dataclass
class _Slot:
    """One worker process and what it is doing."""

    index: int
    gpu: int | None
    proc: BaseProcess | None = None
    conn: Connection | None = None
    state: str = "down"  # down | starting | idle | busy
    start_deadline: float = 0.0
    start_failures: int = 0
    env: dict[str, Any] | None = None
    request: TrialRequest | None = None
    phase: str = ""  # compile | run
    deadline: float = 0.0
    compile_s: float | None = None


class WorkerPool:
    """Isolated workers that measure trial requests; see the module docstring.

    `gpus=None` (or `interpreted=True`) runs one worker on the CPU through Triton's
    interpreter. `compile_workers=None` picks min(8 per GPU, CPUs - GPUs - 1) compile processes
    on a GPU host; 0 disables the compile pool (it is off in interpreter mode and for plug-ins
    without `compile_only`).
    """

    def __init__(
        self,
        kernel_module: str,
        *,
        interpreted: bool = False,
        gpus: Sequence[int] | None = None,
        compile_workers: int | None = None,
        compile_timeout_s: float = 120.0,
        start_timeout_s: float = 180.0,
    ) -> None:
        self.kernel_module = kernel_module
        self.interpreted = bool(interpreted or gpus is None)
        self.compile_timeout_s = compile_timeout_s
        self.start_timeout_s = start_timeout_s
        gpu_list: list[int | None] = [None] if self.interpreted else list(gpus or [])
        if not gpu_list:
            raise ValueError("gpus must name at least one GPU (or be None for the interpreter)")
        self._slots = [_Slot(i, gpu) for i, gpu in enumerate(gpu_list)]
        self._compile_pool: CompilePool | None = None
        self._env: dict[str, Any] = {}
        self._ready: deque[TrialRequest] = deque()  # compiled (or not to be), waiting for a GPU
        # Trial id -> the compile pool's seconds for it: the trial's compile time (its worker
        # only loads the binary the compile process left in the cache).
        self._compiled_s: dict[int, float] = {}
        self._outstanding = 0  # submitted, not yet collected
        self._closed = False
        # (trial id, why) for each worker replaced because a trial left it unfit.
        self.retirements: list[tuple[int, str]] = []
        try:
            for slot in self._slots:
                self._start(slot)
            self._wait_started(self._slots)
            self._env = self._check_envs()
            workers = self._compile_workers(compile_workers)
            if workers > 0:
                self._compile_pool = CompilePool(
                    kernel_module,
                    self.device_info(),
                    workers=workers,
                    timeout_s=compile_timeout_s,
                    gpu=self._slots[0].gpu,
                    start_timeout_s=start_timeout_s,
                )
                # Started before the search, like the GPU workers: their imports would
                # otherwise hold up its first generation (and count as search time).
                self._compile_pool.wait_ready()
        except BaseException:
            self.close()
            raise

    # --- public ---------------------------------------------------------------------------

    def environment(self) -> dict[str, Any]:
        """The fingerprint the workers computed: gpu, driver, cuda, torch, triton,
        kernel_source_hash, interpreted, device_capability, sm_count."""
        return dict(self._env)

    def device_info(self) -> DeviceInfo:
        cap = self._env.get("device_capability")
        return DeviceInfo(
            interpreted=self.interpreted,
            name=str(self._env.get("gpu")),
            capability=(int(cap[0]), int(cap[1])) if cap else None,
            sm_count=int(self._env.get("sm_count") or 0),
        )

    @property
    def workers(self) -> int:
        """GPU workers (trials measured at once)."""
        return len(self._slots)

    @property
    def capacity(self) -> int:
        """Requests the pool can work on at once: its GPU workers and compile processes."""
        cpool = self._compile_pool
        return len(self._slots) + (cpool.size if cpool is not None else 0)

    @property
    def worker_pids(self) -> list[int | None]:
        """Process ids of the current workers (tests use them)."""
        return [s.proc.pid if s.proc is not None else None for s in self._slots]

    def submit(self, requests: Sequence[TrialRequest]) -> None:
        """Queue requests behind those already submitted (the compile pool sees them now)."""
        if self._closed:
            raise WorkerError("the worker pool is closed")
        for request in requests:
            if self._compile_pool is not None:
                self._compile_pool.submit(request)
            else:
                self._ready.append(request)
        self._outstanding += len(requests)

    def collect(self) -> list[TrialResult]:
        """Wait until at least one submitted request has finished; return all that have."""
        done: list[TrialResult] = []
        cpool = self._compile_pool
        while self._outstanding and not done:
            if cpool is not None:
                for outcome in cpool.poll():
                    if outcome.status is None:
                        self._compiled_s[outcome.request.trial_id] = outcome.seconds
                        self._ready.append(outcome.request)
                    else:
                        done.append(outcome.to_result())
            for slot in self._slots:
                done += map(self._with_compile_time, self._poll(slot))
                if slot.state == "idle" and self._ready:
                    self._dispatch(slot, self._ready)
            if not done:
                self._wait()
        self._outstanding -= len(done)
        return done

    def _with_compile_time(self, result: TrialResult) -> TrialResult:
        """A trial the compile pool compiled takes the pool's compile time: what a worker
        reports is the load of a cached binary (landscapes and the simulated pool's clock read
        `compile_s`)."""
        seconds = self._compiled_s.pop(result.trial_id, None)
        return result if seconds is None else replace(result, compile_s=seconds)

    def warm_up(self, request: TrialRequest) -> None:
        """Put `request` through every compile process and every GPU worker at once and drop
        the results: each process pays its first-use costs (imports, driver and launcher
        set-up, a first compile: ~1-2 s) here, in parallel, before the search, instead of
        holding up the search's first trials one process at a time."""
        if self._outstanding:
            raise WorkerError("warm_up() needs a pool with nothing outstanding")
        if self.interpreted:  # the interpreter has no first-use costs worth a slow run
            return
        cpool = self._compile_pool
        compiles = 0
        if cpool is not None:  # one copy each: all are idle, so each process takes one
            compiles = cpool.size
            for _ in range(compiles):
                cpool.submit(request)
        busy = [slot for slot in self._slots if slot.state == "idle"]
        for slot in busy:
            self._dispatch(slot, deque([request]))
        while compiles or busy:
            if cpool is not None:
                compiles -= len(cpool.poll())
            for slot in busy:
                self._poll(slot)  # a result, a timeout or a death: the slot is no longer busy
            busy = [slot for slot in busy if slot.state == "busy"]
            if compiles or busy:
                self._wait()

    def evaluate(self, requests: Sequence[TrialRequest]) -> Generator[TrialResult, None, None]:
        """Measure each request; yield one result per request as each finishes."""
        if self._outstanding:
            raise WorkerError("evaluate() needs a pool with nothing outstanding")
        self.submit(requests)
        try:
            while self._outstanding:
                yield from self.collect()
        finally:
            if self._outstanding:  # abandoned mid-way: no stale answer may reach the next call
                self._abandon()

    def _abandon(self) -> None:
        """Forget every outstanding request: queued ones are dropped, running ones killed."""
        if self._compile_pool is not None:
            self._compile_pool.cancel()
        self._ready.clear()
        self._compiled_s.clear()
        for slot in self._slots:
            if slot.state == "busy":
                self._restart(slot)
        self._outstanding = 0

    def shootout(self, requests: Sequence[TrialRequest], rounds: int = 5) -> list[TrialResult]:
        """Re-measure finalists interleaved (A B C A B C ...) in one worker; results in
        request order. A worker death or timeout fails all of them (crashed / timeout)."""
        if not requests:
            return []
        if self._outstanding:
            raise WorkerError("shootout() cannot run while submitted trials are outstanding")
        slot = self._slots[0]
        if slot.state not in ("idle", "starting"):
            self._restart(slot)
        self._wait_started([slot])
        assert slot.conn is not None and slot.proc is not None
        budget = sum(
            self._compile_timeout(r) + r.timeout_s * (max(1, rounds) + 1) for r in requests
        )
        slot.conn.send(("shootout", list(requests), int(rounds)))
        slot.state = "busy"
        deadline = time.monotonic() + budget
        while True:
            eof = False
            try:
                if slot.conn.poll():
                    msg = slot.conn.recv()
                    if msg[0] == "results":
                        slot.state = "idle"
                        results: list[TrialResult] = msg[1]
                        if msg[2] is not None:
                            self.retirements.append((-1, str(msg[2])))
                            self._restart(slot)
                        return results
                    continue
            except (EOFError, OSError):
                eof = True
            if not eof and slot.proc.is_alive() and time.monotonic() < deadline:
                wait([slot.conn, slot.proc.sentinel], timeout=1.0)
                continue
            if eof or not slot.proc.is_alive():
                slot.proc.join(timeout=5)
            if slot.proc.exitcode is None:
                status, why = TrialStatus.TIMEOUT, f"shoot-out timed out after {budget:.0f} s"
            else:
                status = TrialStatus.CRASHED
                why = f"worker died ({describe_exit(slot.proc.exitcode)}) during the shoot-out"
            self._restart(slot)
            return [TrialResult(r.trial_id, status, error=why) for r in requests]

    def close(self) -> None:
        """Stop the workers (politely, then SIGKILL) and the compile pool."""
        if self._closed:
            return
        self._closed = True
        if self._compile_pool is not None:
            self._compile_pool.close()
        for slot in self._slots:
            if slot.conn is not None and slot.state == "idle":
                with contextlib.suppress(OSError):
                    slot.conn.send(("stop",))
        deadline = time.monotonic() + 3.0
        for slot in self._slots:
            if slot.proc is not None:
                if slot.state == "idle":
                    slot.proc.join(timeout=max(0.0, deadline - time.monotonic()))
                kill_process(slot.proc, slot.conn)
                slot.proc, slot.conn, slot.state = None, None, "down"

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- workers ----------------------------------------------------------------------------

    def _compile_workers(self, requested: int | None) -> int:
        if self.interpreted:
            return 0
        if not self._plugin_has_compile_only():
            return 0
        if requested is None:
            # 8 per GPU, a core left to each worker and to the search: with two GPUs, 16
            # fed 527 trials/min against 417 with 8; 30 on one GPU was slower than 8
            # (docs/lab/benchmarks.md, issue 8).
            gpus = len(self._slots)
            return max(1, min(8 * gpus, (os.cpu_count() or 2) - gpus - 1))
        return max(0, requested)

    def _plugin_has_compile_only(self) -> bool:
        # Asked of the worker's environment, not imported here: the parent need not load
        # torch or the kernel. The worker reports it in its ready message.
        return bool(self._slots[0].env and self._slots[0].env.get("_has_compile_only"))

    def _start(self, slot: _Slot) -> None:
        spec = WorkerSpec(self.kernel_module, self.interpreted, slot.gpu, os.getpid())
        label = "interp" if slot.gpu is None else f"gpu{slot.gpu}"
        slot.proc, slot.conn = spawn_process(
            worker_main,
            (spec,),
            child_env(self.interpreted, slot.gpu),
            name=f"evotune-worker-{label}",
        )
        slot.state = "starting"
        slot.start_deadline = time.monotonic() + self.start_timeout_s
        slot.request = None

    def _restart(self, slot: _Slot) -> None:
        if slot.proc is not None:
            kill_process(slot.proc, slot.conn)
        slot.proc, slot.conn, slot.state = None, None, "down"
        self._start(slot)

    def _wait_started(self, slots: Sequence[_Slot]) -> None:
        while any(s.state == "starting" for s in slots):
            for slot in slots:
                self._poll(slot)
            handles = [h for s in slots if s.state == "starting" for h in self._handles(s)]
            if handles:
                wait(handles, timeout=1.0)

    def _check_envs(self) -> dict[str, Any]:
        envs = [s.env or {} for s in self._slots]
        hashes = {fingerprint_hash(e) for e in envs}
        if len(hashes) > 1:
            names = ", ".join(
                f"GPU {s.gpu}: {e.get('gpu')}" for s, e in zip(self._slots, envs, strict=True)
            )
            raise WorkerError(f"the GPUs differ ({names}); run one search per kind of GPU")
        return {k: v for k, v in envs[0].items() if not k.startswith("_")}

    @staticmethod
    def _handles(slot: _Slot) -> list[Any]:
        if slot.conn is None or slot.proc is None:
            return []
        return [slot.conn, slot.proc.sentinel]

    def _compile_timeout(self, request: TrialRequest) -> float:
        if request.compile_timeout_s is not None:
            return request.compile_timeout_s
        return self.compile_timeout_s

    def _dispatch(self, slot: _Slot, ready: deque[TrialRequest]) -> None:
        assert slot.conn is not None
        request = ready.popleft()
        try:
            slot.conn.send(("trial", request))
        except OSError:  # it died while idle: the request never started, so retry it
            ready.appendleft(request)
            self._restart(slot)
            return
        slot.state, slot.request, slot.phase = "busy", request, "compile"
        slot.compile_s = None
        slot.deadline = time.monotonic() + self._compile_timeout(request)

    def _wait(self) -> None:
        handles = [h for s in self._slots for h in self._handles(s)]
        times = [s.deadline for s in self._slots if s.state == "busy"]
        times += [s.start_deadline for s in self._slots if s.state == "starting"]
        if self._compile_pool is not None:
            handles += self._compile_pool.handles()
            deadline = self._compile_pool.next_deadline()
            if deadline is not None:
                times.append(deadline)
        timeout = 1.0
        if times:
            timeout = max(0.0, min(timeout, min(times) - time.monotonic()))
        wait(handles, timeout=timeout)

    def _poll(self, slot: _Slot) -> list[TrialResult]:
        """Read what a worker said; handle its start, death or timeout. Returns finished
        trials (zero or one)."""
        if slot.proc is None or slot.conn is None:
            return []
        eof = False
        try:
            while slot.conn.poll():
                msg = slot.conn.recv()
                kind = msg[0]
                if kind == "ready":
                    slot.env, slot.state, slot.start_failures = msg[1], "idle", 0
                elif kind == "fatal":
                    if msg[1] == "no_gpu":
                        raise NoGpuError(msg[2])
                    if msg[1] == "plugin":
                        raise SpaceFileError(msg[2])
                    raise WorkerError(f"the worker could not start: {msg[2]}")
                elif kind == "compiled" and slot.request is not None:
                    if msg[1] == slot.request.trial_id and slot.phase == "compile":
                        slot.phase, slot.compile_s = "run", float(msg[2])
                        slot.deadline = time.monotonic() + slot.request.timeout_s
                elif kind == "result" and slot.request is not None:
                    result: TrialResult = msg[1]
                    slot.state, slot.request = "idle", None
                    if msg[2] is not None:  # the worker is unfit for the next config
                        self.retirements.append((result.trial_id, str(msg[2])))
                        self._restart(slot)
                    return [result]
        except (EOFError, OSError):
            eof = True
        if eof or not slot.proc.is_alive():
            return self._died(slot)
        now = time.monotonic()
        if slot.state == "busy" and now >= slot.deadline:
            request = slot.request
            assert request is not None
            if slot.phase == "compile":
                why = f"compile timed out after {self._compile_timeout(request):.1f} s"
            else:
                why = f"run timed out after {request.timeout_s:.1f} s"
            compile_s = slot.compile_s
            self._restart(slot)
            return [
                TrialResult(
                    request.trial_id,
                    TrialStatus.TIMEOUT,
                    compile_s=compile_s,
                    error=why + "; worker killed and replaced",
                )
            ]
        if slot.state == "starting" and now >= slot.start_deadline:
            raise WorkerError(
                f"a worker did not start within {self.start_timeout_s:.0f} s (GPU {slot.gpu})"
            )
        return []

    def _died(self, slot: _Slot) -> list[TrialResult]:
        assert slot.proc is not None
        slot.proc.join(timeout=5)
        why = describe_exit(slot.proc.exitcode)
        request, state, phase = slot.request, slot.state, slot.phase
        compile_s = slot.compile_s
        if state == "starting":
            slot.start_failures += 1
            if slot.start_failures >= _MAX_START_FAILURES:
                raise WorkerError(f"workers keep dying at start ({why}, GPU {slot.gpu})")
        self._restart(slot)
        if state != "busy" or request is None:
            return []
        when = "compiling" if phase == "compile" else "running"
        return [
            TrialResult(
                request.trial_id,
                TrialStatus.CRASHED,
                compile_s=compile_s,
                error=f"worker died ({why}) while {when} this trial; replaced",
            )
        ]
