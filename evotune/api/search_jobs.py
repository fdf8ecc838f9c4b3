"""Searches the service starts for POST /v1/studies: `evotune search` in a child process.

The child is the CLI itself (`python -m evotune search ...`), so a search started over REST
behaves exactly like one started by hand, and a crash in it cannot take the service down.
The database URL travels in EVOTUNE_DB (not argv, which the API shows and `ps` lists), and
the service's token is not passed on. One search runs at a time by default: two searches on
one GPU would spoil each other's timings.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from evotune.errors import JobsBusyError

__all__ = ["DEFAULT_LAUNCHER", "SearchJob", "SearchJobs", "search_argv"]

DEFAULT_LAUNCHER: tuple[str, ...] = (sys.executable, "-m", "evotune")
LOG_TAIL_BYTES = 4096


def search_argv(
    launcher: Sequence[str],
    kernel: str,
    shape: str,
    strategy: str,
    budget: int,
    seed: int,
    interpret: bool,
    fresh: bool = False,
) -> list[str]:
    """The `evotune search` command line for one request (no database URL: it is in env)."""
    argv = [*launcher, "search", "--kernel", kernel, "--shape", shape, "--strategy", strategy]
    argv += ["--budget", str(budget), "--seed", str(seed)]
    if interpret:
        argv.append("--interpret")
    if fresh:
        argv.append("--fresh")
    return argv


def _now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass
class SearchJob:
    """One child search process and where its output goes."""

    id: str
    command: list[str]
    request: dict[str, Any]
    process: subprocess.Popen[bytes]
    log_path: Path
    started_at: datetime = field(default_factory=_now)
    finished_at: datetime | None = None
    stop_requested: bool = False

    @property
    def pid(self) -> int:
        return self.process.pid

    def poll(self) -> int | None:
        code = self.process.poll()
        if code is not None and self.finished_at is None:
            self.finished_at = _now()
        return code

    @property
    def state(self) -> Literal["running", "stopping", "succeeded", "failed", "stopped"]:
        code = self.poll()
        if code is None:
            return "stopping" if self.stop_requested else "running"
        if code == 0:
            return "succeeded"
        return "stopped" if self.stop_requested else "failed"

    def log_tail(self, limit: int = LOG_TAIL_BYTES) -> str:
        try:
            with self.log_path.open("rb") as fh:
                fh.seek(0, os.SEEK_END)
                size = fh.tell()
                fh.seek(max(0, size - limit))
                return fh.read().decode("utf-8", "replace")
        except OSError:
            return ""


class SearchJobs:
    """Starts, tracks and (on shutdown) stops the service's search processes."""

    def __init__(
        self,
        db_url: str,
        launcher: Sequence[str] = DEFAULT_LAUNCHER,
        log_dir: Path | None = None,
        max_running: int = 1,
    ) -> None:
        self.db_url = db_url
        self.launcher = tuple(launcher)
        self.max_running = max_running
        self._log_dir = log_dir
        self._jobs: dict[str, SearchJob] = {}
        self._stopped: list[SearchJob] = []  # stopped and forgotten, maybe still exiting
        self._lock = threading.Lock()

    def _logs(self) -> Path:
        if self._log_dir is None:
            self._log_dir = Path(tempfile.mkdtemp(prefix="evotune-jobs-"))
        self._log_dir.mkdir(parents=True, exist_ok=True)
        return self._log_dir

    def running(self) -> list[SearchJob]:
        return [job for job in (*self._jobs.values(), *self._stopped) if job.poll() is None]

    def start(
        self,
        kernel: str,
        shape: str,
        strategy: str,
        budget: int,
        seed: int = 0,
        interpret: bool = False,
        fresh: bool = False,
    ) -> SearchJob:
        """Launch one search; JobsBusyError when `max_running` are still going."""
        with self._lock:
            busy = self.running()
            if len(busy) >= self.max_running:
                ids = ", ".join(job.id for job in busy)
                raise JobsBusyError(
                    f"a search is already running (job {ids}); wait for it, or stop it with "
                    f"DELETE /v1/jobs/{busy[0].id}"
                )
            job_id = uuid.uuid4().hex[:12]
            command = search_argv(
                self.launcher, kernel, shape, strategy, budget, seed, interpret, fresh
            )
            env = {k: v for k, v in os.environ.items() if k != "EVOTUNE_TOKEN"}
            env["EVOTUNE_DB"] = self.db_url
            log_path = self._logs() / f"{job_id}.log"
            with log_path.open("wb") as log:
                process = subprocess.Popen(
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                    # Own session: a Ctrl-C at the service's terminal reaches the service,
                    # which then stops its searches in order (see shutdown).
                    start_new_session=True,
                )
            request = {
                "kernel": kernel,
                "shape": shape,
                "strategy": strategy,
                "budget": budget,
                "seed": seed,
                "interpret": interpret,
                "fresh": fresh,
            }
            job = SearchJob(job_id, command, request, process, log_path)
            self._jobs[job_id] = job
            return job

    def get(self, job_id: str) -> SearchJob | None:
        return self._jobs.get(job_id)

    def all(self) -> list[SearchJob]:
        return sorted(self._jobs.values(), key=lambda job: job.started_at, reverse=True)

    def stop(self, job: SearchJob, grace_s: float = 10.0) -> None:
        """Interrupt a search (it marks its study interrupted) and forget the job; kill it
        after `grace_s` if it has not ended. Returns at once; until it has exited it still
        counts as running (one search at a time)."""
        with self._lock:
            if self._jobs.pop(job.id, None) is None:
                return
            self._stopped = [j for j in self._stopped if j.poll() is None] + [job]
        if job.poll() is not None:
            return
        job.stop_requested = True
        _signal(job.process, signal.SIGINT)
        threading.Thread(
            target=_kill_after, args=(job.process, grace_s), name=f"stop-{job.id}", daemon=True
        ).start()

    def shutdown(self, grace_s: float = 3.0) -> None:
        """Interrupt running searches (they mark their study interrupted), then kill stragglers."""
        running = self.running()
        for job in running:
            _signal(job.process, signal.SIGINT)
        for job in running:
            try:
                job.process.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                _signal(job.process, signal.SIGKILL)
                job.process.wait()
            job.poll()


def _kill_after(process: subprocess.Popen[bytes], grace_s: float) -> None:
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        _signal(process, signal.SIGKILL)
        process.wait()


def _signal(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    """Signal the search and its workers: its own process group, as Ctrl-C would."""
    with contextlib.suppress(ProcessLookupError, PermissionError):  # it ended meanwhile
        os.killpg(process.pid, sig)
