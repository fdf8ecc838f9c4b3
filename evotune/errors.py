"""One exception tree for everything evotune raises on purpose.

Errors a user can cause derive from `UserError`: the CLI prints their message as one line
and exits with code 2. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

__all__ = [
    "DatabaseError",
    "EvotuneError",
    "KernelNotFoundError",
    "NoGpuError",
    "ShapeNotFoundError",
    "SpaceFileError",
    "StudyBusyError",
    "StudyNotFoundError",
    "UserError",
    "WorkerError",
]


class EvotuneError(Exception):
    """Root of every error evotune raises deliberately."""


class UserError(EvotuneError):
    """Caused by the user's input; the message says what is wrong and what to do."""


class SpaceFileError(UserError):
    """A search-space file is missing, unreadable or invalid."""


class KernelNotFoundError(UserError):
    """No search-space file (and so no kernel plug-in) has that name."""


class ShapeNotFoundError(UserError):
    """The search space names no shape like that."""


class StudyNotFoundError(UserError):
    """No study has that id."""


class StudyBusyError(UserError):
    """Another search process is running the study this one would resume."""


class DatabaseError(UserError):
    """The database URL cannot be opened or its schema is not usable."""


class NoGpuError(UserError):
    """A GPU run was asked for on a machine without a CUDA GPU."""


class WorkerError(EvotuneError):
    """The worker machinery itself failed (not a trial: trials fail as data)."""
