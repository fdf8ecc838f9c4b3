"""Isolated GPU workers, the compile pool and honest measurement (see docs/architecture.md).

The parent side (`WorkerPool`, `CompilePool`) imports no torch; measurement code runs
inside the worker processes only.
"""

from __future__ import annotations

from evotune.worker.compile_pool import CompileOutcome, CompilePool
from evotune.worker.evaluator import BatchSubmission, Evaluator
from evotune.worker.pool import WorkerPool

__all__ = ["BatchSubmission", "CompileOutcome", "CompilePool", "Evaluator", "WorkerPool"]
