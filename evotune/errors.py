"""One exception tree for everything evotune raises on purpose.

Errors a user can cause derive from `UserError`: the CLI prints their message as one line
and exits with code 2. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

__all__ = [
    "DatabaseError",
    "EvotuneError",
    "ExpressionError",
    "ImpossibleShapeError",
    "JobsBusyError",
    "KernelNotFoundError",
    "LandscapeFileError",
    "NoGpuError",
    "NotTunableOfflineError",
    "ServiceUnavailableError",
    "ShapeNotFoundError",
    "SourceError",
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


class ExpressionError(UserError, ValueError):
    """An expression (a space file's constraint or default, `--restrict`, a compile rule) that
    is not allowed, does not parse, or cannot be evaluated. Also a ValueError, so that the
    pydantic validators of a space file report it with its place in the file."""


class KernelNotFoundError(UserError):
    """No search-space file (and so no kernel plug-in) has that name."""


class ShapeNotFoundError(UserError):
    """The search space names no shape like that."""


class ImpossibleShapeError(UserError):
    """Well-formed dims that break a rule of the kernel's shapes (its `shape_constraints`,
    e.g. K/V heads that do not divide the query heads): no config can run them."""


class StudyNotFoundError(UserError):
    """No study has that id."""


class StudyBusyError(UserError):
    """Another search process is running the study this one would resume."""


class DatabaseError(UserError):
    """The database URL cannot be opened or its schema is not usable."""


class LandscapeFileError(UserError):
    """A landscape file is missing, unreadable or malformed, or landscapes do not merge."""


class SourceError(UserError):
    """`evotune.client`'s source of best configs cannot answer: unreachable, unreadable, or
    refused."""


class JobsBusyError(UserError):
    """The service already runs as many searches as it allows (POST /v1/studies: 409)."""


class NoGpuError(UserError):
    """A GPU run was asked for on a machine without a CUDA GPU."""


class WorkerError(EvotuneError):
    """The worker machinery itself failed (not a trial: trials fail as data)."""


class ServiceUnavailableError(EvotuneError):
    """The service's database cannot answer now (missing, unmigrated, busy, too slow): the
    REST API answers 503 with `code` and a Retry-After of `retry_after` seconds."""

    def __init__(self, detail: str, code: str = "unavailable", retry_after: int = 1) -> None:
        super().__init__(detail)
        self.detail = detail
        self.code = code
        self.retry_after = retry_after


class NotTunableOfflineError(UserError):
    """A recorded miss of `evotune.autotune` whose call cannot be rebuilt and tuned offline
    (`evotune tune-pending` reports why, one line per miss)."""
