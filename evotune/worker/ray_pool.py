"""Trials across a Ray cluster: one actor per GPU, each hosting a local `WorkerPool`.

`RayEvaluator` implements the `Evaluator` protocol (evotune/worker/evaluator.py) for
`evotune search --ray ADDRESS`. Each actor runs a `WorkerPool` on its own host, so kernels
compile there and a crashing config still only kills that actor's isolated worker process
(the pool marks the trial and replaces the worker). Each actor is kept fed with as many
requests as its pool can work on at once (its GPU worker and compile processes), so its
compile processes compile ahead of its GPU as they do on one host; results come back to
the driver, which stays the only database writer. When an actor or its host is lost, the
trials it had accepted end `crashed` with the reason, the ones it had not yet accepted go
back to the queue; the actor is replaced where the cluster still has room, and the search
goes on with the others.

`ray` is an optional dependency (`pip install 'evotune[ray]'`), imported only here and
only when a `RayEvaluator` is built.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import time
from collections import deque
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import TYPE_CHECKING, Any

from evotune.errors import NoGpuError, UserError, WorkerError
from evotune.fingerprint import fingerprint_hash
from evotune.records import TrialRequest, TrialResult, TrialStatus

if TYPE_CHECKING:
    from evotune.worker.pool import WorkerPool

__all__ = ["RayEvaluator", "import_ray"]

# Slack on top of the pool's own limits before the driver gives up on a silent actor: the
# pool answers every trial itself (timeouts included), so only a wedged actor or an
# unreachable host that Ray has not yet declared dead runs into this.
_WATCHDOG_SLACK_S = 60.0
# The pool's own defaults (evotune/worker/pool.py): a worker start and a compile.
_POOL_START_S = 180.0
_POOL_COMPILE_S = 120.0
# Replacements a slot may need in a row before the driver stops trying it.
_MAX_REPLACEMENTS = 3
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def import_ray() -> ModuleType:
    """The `ray` module, or one clear line saying how to get it."""
    try:
        import ray
    except ImportError:
        raise UserError(
            "--ray needs the Ray package on this host and on every node of the cluster: "
            "pip install 'evotune[ray]'"
        ) from None
    return ray


class _PoolHost:
    """What runs inside each Ray actor: a local WorkerPool on the actor's host and GPU."""

    def __init__(self, kernel_module: str, interpreted: bool, compile_workers: int | None) -> None:
        from evotune.worker.pool import WorkerPool

        self.host = socket.gethostname()
        self.pool: WorkerPool | None = None
        # Kept for ready() to raise: an exception in an actor's constructor reaches the
        # driver only as text, one raised in a method arrives as itself.
        self.error: Exception | None = None
        try:
            gpus = None if interpreted else [_assigned_gpu()]
            if compile_workers is None and not interpreted:
                compile_workers = _compile_workers_per_actor()
            self.pool = WorkerPool(
                kernel_module, interpreted=interpreted, gpus=gpus, compile_workers=compile_workers
            )
        except Exception as exc:
            self.error = exc

    def _pool(self) -> WorkerPool:
        if self.pool is None:
            raise self.error or WorkerError("the worker pool did not start")
        return self.pool

    def ready(self) -> tuple[str, dict[str, Any], int]:
        """The host name, the fingerprint of this actor's device and how many requests its
        pool can work on at once (sent once started)."""
        pool = self._pool()
        return self.host, pool.environment(), pool.capacity

    def warm_up(self, request: TrialRequest) -> None:
        self._pool().warm_up(request)

    def submit(self, requests: list[TrialRequest]) -> None:
        """Queue requests in this actor's pool (its compile processes start on them now)."""
        self._pool().submit(requests)

    def collect(self) -> list[TrialResult]:
        """Wait until at least one queued request has finished; return all that have."""
        return self._pool().collect()

    def shootout(self, requests: list[TrialRequest], rounds: int) -> list[TrialResult]:
        return self._pool().shootout(requests, rounds)

    def pids(self) -> tuple[int, list[int | None]]:
        """This actor's process id and its pool's worker process ids (tests use them)."""
        return os.getpid(), self._pool().worker_pids

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close()


def _assigned_gpu() -> int:
    """The GPU Ray gave this actor, as the index the pool puts in CUDA_VISIBLE_DEVICES.

    The pool sets its worker's CUDA_VISIBLE_DEVICES to the index it is given, so it must get
    the one Ray chose (Ray has already narrowed this process to it), not 0.
    """
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")
    visible = [v.strip() for v in visible if v.strip()]
    if len(visible) != 1:
        raise NoGpuError(f"this Ray actor was given GPUs {visible or 'none'}; it needs exactly one")
    try:
        return int(visible[0])
    except ValueError:
        raise WorkerError(
            f"Ray gave this actor GPU {visible[0]!r}, not an index; the worker pool needs "
            "GPU indices (MIG and UUID-named devices are not supported)"
        ) from None


def _compile_workers_per_actor() -> int:
    """This actor's share of its host's CPUs for compiling: every GPU actor of a host has
    its own pool, so the pool's default (up to 8 per pool) would oversubscribe the host."""
    import ray

    node_id = ray.get_runtime_context().get_node_id()
    node: dict[str, Any] = next((n for n in ray.nodes() if n.get("NodeID") == node_id), {})
    gpus = max(1, int(node.get("Resources", {}).get("GPU", 1)))
    cpus = os.cpu_count() or 2
    return max(1, min(8, (cpus - 1) // gpus))


@dataclass
class _Slot:
    """One actor, and what it holds."""

    index: int
    actor: Any = None
    state: str = "down"  # down | starting | live | dead
    ready_ref: Any = None
    start_deadline: float = 0.0
    capacity: int = 1
    # Requests sent to the actor and not yet answered; `submits` pairs each submit call
    # with its trial ids, so that a lost actor's requests can be told accepted or not.
    pending: dict[int, TrialRequest] = field(default_factory=dict)
    submits: list[tuple[Any, list[int]]] = field(default_factory=list)
    collect_ref: Any = None
    deadline: float = 0.0
    host: str = "?"
    env: dict[str, Any] = field(default_factory=dict)
    replacements: int = 0


class RayEvaluator:
    """Measure trials on Ray actors, one per GPU of the cluster; see the module docstring.

    `address` is what `ray.init` takes ("auto" for the cluster this host belongs to,
    "ray://head:10001" through Ray Client, None to start a local Ray); when Ray is already
    initialized in this process, that connection is used and left open on close().
    `num_workers`: GPU actors (default: every GPU of the cluster) or, with `interpreted`,
    CPU-only interpreter actors (default 1). A cluster whose actors report different
    fingerprints (GPU, driver, CUDA, torch, Triton, kernel source) is refused, as the local
    pool refuses mixed GPUs: one study is measured on one kind of environment.
    """

    def __init__(
        self,
        kernel_module: str,
        interpreted: bool,
        address: str | None,
        num_workers: int | None = None,
        *,
        compile_workers: int | None = None,
        start_timeout_s: float = 300.0,
    ) -> None:
        self._ray = import_ray()
        self.kernel_module = kernel_module
        self.interpreted = bool(interpreted)
        self.compile_workers = compile_workers
        self.start_timeout_s = start_timeout_s
        self._started_ray = False
        self._closed = False
        self._queue: deque[TrialRequest] = deque()  # submitted, not yet sent to an actor
        self._outstanding = 0  # submitted, not yet collected
        self._env: dict[str, Any] = {}
        self._slots: list[_Slot] = []
        try:
            self._connect(address)
            count = self._actor_count(num_workers)
            self._actor_class = self._ray.remote(**self._actor_options())(_PoolHost)
            self._slots = [_Slot(i) for i in range(count)]
            for slot in self._slots:
                self._start(slot)
            self._wait_started()
            self._env = self._check_envs()
        except BaseException:
            self.close()
            raise

    # --- Evaluator --------------------------------------------------------------------------

    def environment(self) -> dict[str, Any]:
        """The fingerprint every actor reported (they are checked to agree)."""
        return dict(self._env)

    @property
    def hosts(self) -> list[str]:
        """Host names of the live actors, one entry per actor."""
        return [s.host for s in self._slots if s.state == "live"]

    @property
    def actors(self) -> list[Any]:
        """The actor handles, one per slot (None for a slot given up on); tests kill them."""
        return [s.actor if s.state != "dead" else None for s in self._slots]

    @property
    def workers(self) -> int:
        """Actors (one GPU each): trials measured at once."""
        return sum(1 for s in self._slots if s.state in ("starting", "live"))

    @property
    def capacity(self) -> int:
        """Requests the actors' pools can work on at once."""
        return sum(s.capacity for s in self._slots if s.state in ("starting", "live"))

    def running(self) -> dict[int, str]:
        """Trial id -> host, for the trials an actor has accepted and not yet answered."""
        return {
            trial_id: slot.host
            for slot in list(self._slots)
            if slot.state == "live"
            for trial_id in self._accepted(slot)
        }

    def warm_up(self, request: TrialRequest) -> None:
        """Let every actor's pool pay its first-use costs (WorkerPool.warm_up), in parallel."""
        if self._outstanding:
            raise WorkerError("warm_up() needs an evaluator with nothing outstanding")
        live = [s for s in self._slots if s.state == "live"]
        refs = [s.actor.warm_up.remote(request) for s in live]
        budget = _POOL_START_S + _POOL_COMPILE_S + request.timeout_s + _WATCHDOG_SLACK_S
        self._ray.wait(refs, num_returns=len(refs), timeout=budget)
        for slot, ref in zip(live, refs, strict=True):
            try:
                self._ray.get(ref, timeout=0)
            except self._ray.exceptions.RayError:  # lost or wedged: replace it, trials go on
                self._replace(slot)

    def submit(self, requests: Sequence[TrialRequest]) -> None:
        """Queue requests behind those already submitted."""
        if self._closed:
            raise WorkerError("the Ray evaluator is closed")
        self._queue.extend(requests)
        self._outstanding += len(requests)

    def collect(self) -> list[TrialResult]:
        """Wait until at least one submitted request has finished; return all that have."""
        done: list[TrialResult] = []
        while self._outstanding and not done:
            for slot in self._slots:
                if slot.state == "live":
                    self._feed(slot)
            if not any(s.state in ("starting", "live") for s in self._slots):
                raise WorkerError(
                    "every Ray actor is lost and none could be replaced; "
                    f"{self._outstanding} trial(s) were not measured"
                )
            refs = [s.collect_ref for s in self._slots if s.collect_ref is not None]
            refs += [s.ready_ref for s in self._slots if s.state == "starting"]
            timeout = max(0.0, min(1.0, self._next_deadline() - time.monotonic()))
            if refs:
                self._ray.wait(refs, num_returns=1, timeout=timeout)
            else:
                time.sleep(timeout)
            for slot in self._slots:
                if slot.state == "starting":
                    self._poll_start(slot)
                elif slot.state == "live" and slot.collect_ref is not None:
                    done += self._poll_collect(slot)
        self._outstanding -= len(done)
        return done

    def evaluate(self, requests: Sequence[TrialRequest]) -> Generator[TrialResult, None, None]:
        """Measure each request; yield results as they finish."""
        if self._outstanding:
            raise WorkerError("evaluate() needs an evaluator with nothing outstanding")
        self.submit(requests)
        try:
            while self._outstanding:
                yield from self.collect()
        finally:
            if self._outstanding:  # abandoned mid-way: no stale answer may reach the next call
                self._queue.clear()
                for slot in self._slots:
                    if slot.pending:
                        self._replace(slot)
                self._outstanding = 0

    def shootout(self, requests: Sequence[TrialRequest], rounds: int = 5) -> list[TrialResult]:
        """Re-measure the finalists interleaved in one process: all on one actor's pool."""
        if not requests:
            return []
        if self._outstanding:
            raise WorkerError("shootout() cannot run while submitted trials are outstanding")
        self._wait_started()
        slot = next((s for s in self._slots if s.state == "live"), None)
        if slot is None:
            raise WorkerError("no Ray actor is left to run the shoot-out")
        ray = self._ray
        budget = (
            sum(_POOL_COMPILE_S + r.timeout_s * (max(1, rounds) + 1) for r in requests)
            + _POOL_START_S
            + _WATCHDOG_SLACK_S
        )
        ref = slot.actor.shootout.remote(list(requests), int(rounds))
        try:
            results: list[TrialResult] = ray.get(ref, timeout=budget)
            return results
        except ray.exceptions.GetTimeoutError:
            why = f"Ray actor on {slot.host} gave no answer to the shoot-out within {budget:.0f} s"
        except (ray.exceptions.RayActorError, ray.exceptions.ObjectLostError) as exc:
            why = f"Ray actor on {slot.host} was lost during the shoot-out: {_first_line(exc)}"
        except ray.exceptions.RayTaskError as exc:
            raise WorkerError(f"the shoot-out failed on {slot.host}: {_first_line(exc)}") from None
        self._replace(slot)
        return [TrialResult(r.trial_id, TrialStatus.CRASHED, error=why) for r in requests]

    def close(self) -> None:
        """Stop the pools, kill the actors; shut Ray down if this evaluator started it."""
        if self._closed:
            return
        self._closed = True
        ray = self._ray
        idle = [s for s in self._slots if s.state == "live" and not s.pending]
        if idle:  # politely first, so that the pools reap their workers
            refs = [s.actor.close.remote() for s in idle]
            ray.wait(refs, num_returns=len(refs), timeout=10.0)
        for slot in self._slots:
            self._kill(slot)
            slot.state = "dead"
        if self._started_ray and ray.is_initialized():
            ray.shutdown()

    def __enter__(self) -> RayEvaluator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- set-up -----------------------------------------------------------------------------

    def _connect(self, address: str | None) -> None:
        ray = self._ray
        if ray.is_initialized():
            return
        try:
            # Actor logs would interleave with the CLI's progress display; trial errors
            # come back in the results. A private local Ray needs no dashboard (a web server
            # and its agents, started by default); a cluster's own settings are not ours.
            local: dict[str, Any] = {"include_dashboard": False} if address is None else {}
            ray.init(address=address, log_to_driver=False, **local)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise UserError(f"cannot connect to Ray at {address!r}: {_first_line(exc)}") from None
        self._started_ray = True

    def _actor_count(self, requested: int | None) -> int:
        resources = self._ray.cluster_resources()
        if requested is not None and requested < 1:
            raise UserError(f"the number of Ray workers must be at least 1, not {requested}")
        if self.interpreted:
            cpus = int(resources.get("CPU", 0))
            count = requested or 1
            if count > cpus:
                raise UserError(
                    f"{count} interpreter actors need {count} CPUs; the cluster has {cpus}"
                )
            return count
        gpus = int(resources.get("GPU", 0))
        if gpus == 0:
            raise NoGpuError(
                "the Ray cluster has no GPUs; use --interpret for CPU-only interpreter actors"
            )
        count = requested or gpus
        if count > gpus:
            raise UserError(f"{count} GPU actors asked for; the Ray cluster has {gpus} GPUs")
        return count

    def _actor_options(self) -> dict[str, Any]:
        # We replace lost actors ourselves (and mark their trial), so Ray must not retry.
        options: dict[str, Any] = {"max_restarts": 0, "max_task_retries": 0}
        if self.interpreted:
            options.update(num_cpus=1, num_gpus=0)
        else:
            options.update(num_cpus=1, num_gpus=1)
        return options

    def _start(self, slot: _Slot) -> None:
        slot.actor = self._actor_class.remote(
            self.kernel_module, self.interpreted, self.compile_workers
        )
        slot.ready_ref = slot.actor.ready.remote()
        slot.state = "starting"
        slot.start_deadline = time.monotonic() + self.start_timeout_s

    def _wait_started(self) -> None:
        """Block until no actor is starting (each either runs or has failed)."""
        ray = self._ray
        while any(s.state == "starting" for s in self._slots):
            refs = [s.ready_ref for s in self._slots if s.state == "starting"]
            ray.wait(refs, num_returns=len(refs), timeout=1.0)
            for slot in self._slots:
                if slot.state == "starting":
                    self._poll_start(slot, strict=not self._env)

    def _poll_start(self, slot: _Slot, strict: bool = False) -> None:
        """Check a starting actor. At construction (`strict`) failures raise; later, a
        replacement that fails leaves its slot dead and the search goes on."""
        ray = self._ray
        ready, _ = ray.wait([slot.ready_ref], timeout=0)
        if not ready:
            if time.monotonic() < slot.start_deadline:
                return
            why = (
                f"a Ray actor did not start within {self.start_timeout_s:.0f} s (the cluster "
                f"may lack a free {'CPU' if self.interpreted else 'GPU'})"
            )
            self._kill(slot)
            if strict:
                raise WorkerError(why)
            slot.state = "dead"
            return
        try:
            host, env, capacity = ray.get(slot.ready_ref)
        except ray.exceptions.RayError as exc:
            self._kill(slot)
            if strict:
                raise _start_error(exc) from None
            slot.replacements += 1
            if slot.replacements < _MAX_REPLACEMENTS:
                self._start(slot)
            else:
                slot.state = "dead"
            return
        slot.host, slot.env, slot.ready_ref = host, env, None
        slot.capacity = max(1, int(capacity))
        if self._env and fingerprint_hash(env) != fingerprint_hash(self._env):
            # A replacement landed on another kind of host: its numbers would not compare.
            self._kill(slot)
            slot.state = "dead"
            return
        slot.state = "live"

    def _check_envs(self) -> dict[str, Any]:
        envs = [(s.host, s.env) for s in self._slots]
        if len({fingerprint_hash(env) for _, env in envs}) > 1:
            kinds = sorted({f"{host}: {env.get('gpu')} (torch {env.get('torch')}, "
                            f"triton {env.get('triton')}, kernel {env.get('kernel_source_hash')})"
                            for host, env in envs})  # fmt: skip
            raise WorkerError(
                "the Ray actors' environments differ (" + "; ".join(kinds) + "); run one "
                "search per kind of host (Ray custom resources can pin actors to one kind)"
            )
        return dict(envs[0][1])

    # --- trials -----------------------------------------------------------------------------

    def _feed(self, slot: _Slot) -> None:
        """Send queued requests up to what the actor's pool can work on, and keep one
        collect call waiting on it while it holds any (calls run in the order sent)."""
        room = slot.capacity - len(slot.pending)
        if room > 0 and self._queue:
            batch = [self._queue.popleft() for _ in range(min(room, len(self._queue)))]
            ref = slot.actor.submit.remote(batch)
            slot.submits.append((ref, [r.trial_id for r in batch]))
            slot.pending.update((r.trial_id, r) for r in batch)
        if slot.pending and slot.collect_ref is None:
            slot.collect_ref = slot.actor.collect.remote()
            # The pool answers every trial itself (timeouts included) and collect returns
            # with the first one: only a wedged actor or an unreachable host runs past this.
            longest = max(r.timeout_s for r in slot.pending.values())
            compile_s = max(r.compile_timeout_s or _POOL_COMPILE_S for r in slot.pending.values())
            slot.deadline = (
                time.monotonic() + _POOL_START_S + compile_s + longest + _WATCHDOG_SLACK_S
            )

    def _poll_collect(self, slot: _Slot) -> list[TrialResult]:
        """Results of a live actor's collect call if it has answered (or is lost), else []."""
        ray = self._ray
        ready, _ = ray.wait([slot.collect_ref], timeout=0)
        if not ready:
            if time.monotonic() < slot.deadline:
                return []
            return self._lost(slot, "gave no answer in time; killed and replaced")
        try:
            results: list[TrialResult] = ray.get(slot.collect_ref)
        except (ray.exceptions.RayActorError, ray.exceptions.ObjectLostError) as exc:
            return self._lost(slot, f"was lost during this trial ({_first_line(exc)}); replaced")
        except ray.exceptions.RayTaskError as exc:
            # The pool itself failed on that host (not the trial: trials fail as data).
            raise WorkerError(
                f"the worker pool on {slot.host} failed: {_first_line(exc)}"
            ) from None
        slot.collect_ref = None
        slot.replacements = 0
        for result in results:
            slot.pending.pop(result.trial_id, None)
        unanswered = set(slot.pending)
        slot.submits = [(ref, ids) for ref, ids in slot.submits if unanswered.intersection(ids)]
        return results

    def _accepted(self, slot: _Slot) -> set[int]:
        """Trial ids of `slot.pending` whose submit call the actor has carried out."""
        ray = self._ray
        accepted: set[int] = set()
        for ref, ids in slot.submits:
            ready, _ = ray.wait([ref], timeout=0)
            if not ready:
                continue
            try:
                ray.get(ref)
            except ray.exceptions.RayError:
                continue
            accepted.update(i for i in ids if i in slot.pending)
        return accepted

    def _lost(self, slot: _Slot, why: str) -> list[TrialResult]:
        """An actor is gone: what it had accepted ends crashed, the rest goes back first in
        the queue; then the slot gets a fresh actor."""
        accepted = self._accepted(slot)
        results = [
            TrialResult(trial_id, TrialStatus.CRASHED, error=f"Ray actor on {slot.host} {why}")
            for trial_id in slot.pending
            if trial_id in accepted
        ]
        unsent = [r for trial_id, r in slot.pending.items() if trial_id not in accepted]
        self._queue.extendleft(reversed(unsent))
        self._replace(slot)
        return results

    def _replace(self, slot: _Slot) -> None:
        self._kill(slot)
        slot.replacements += 1
        if slot.replacements > _MAX_REPLACEMENTS:
            slot.state = "dead"
            return
        self._start(slot)

    def _kill(self, slot: _Slot) -> None:
        if slot.actor is not None:
            # It may be gone already, or Ray shutting down: either way it is no more.
            with contextlib.suppress(Exception):
                self._ray.kill(slot.actor, no_restart=True)
        slot.actor, slot.collect_ref, slot.ready_ref = None, None, None
        slot.pending, slot.submits = {}, []
        slot.state = "down"

    def _next_deadline(self) -> float:
        times = [s.deadline for s in self._slots if s.collect_ref is not None]
        times += [s.start_deadline for s in self._slots if s.state == "starting"]
        return min(times, default=time.monotonic() + 1.0)


def _first_line(exc: BaseException) -> str:
    """One line on why: the remote exception itself where Ray wraps one."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, BaseException):
        exc = cause
    text = _ANSI.sub("", str(exc)).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


def _start_error(exc: BaseException) -> Exception:
    """The error an actor's start raised, as evotune's own (a user error stays one)."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, UserError | WorkerError):
        return type(cause)(str(cause))
    return WorkerError(f"a Ray actor could not start its worker pool: {_first_line(exc)}")
