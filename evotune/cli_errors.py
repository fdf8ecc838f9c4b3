"""Which exceptions a user caused, and the one line each prints (the CLI's only error handler).

A user error is one of evotune's `UserError`s, a command-line usage error (an unknown option,
a missing or out-of-range value: Typer's own exception types from 0.29 on, click's before),
or the database refusing an operation for a reason outside evotune (read-only, locked,
unreachable). Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from typing import Any

from evotune.errors import UserError

__all__ = ["USAGE_EXIT_CODE", "one_line", "user_error_message"]

USAGE_EXIT_CODE = 2


def _usage_error_types() -> tuple[type[BaseException], ...]:
    """Typer >= 0.29 raises its vendored click's exceptions (TyperException's subclasses);
    older Typer raises click's own. Both are user errors."""
    import typer

    types: list[type[BaseException]] = []
    if isinstance(getattr(typer, "TyperException", None), type):
        types.append(typer.TyperException)
    try:
        import click
    except ImportError:
        pass
    else:
        types.append(click.ClickException)
    return tuple(types)


def one_line(text: str) -> str:
    """The text with its line breaks folded, so that an error stays one line."""
    return " ".join(part.strip() for part in text.splitlines() if part.strip())


def _usage_message(exc: Any) -> str:
    message = str(exc.format_message())
    ctx = getattr(exc, "ctx", None)
    if ctx is not None and getattr(ctx, "command_path", None):
        message += f" (see `{ctx.command_path} --help`)"
    return message


def _database_message(exc: BaseException) -> str | None:
    """The reason of an operational database failure (sqlalchemy.exc.OperationalError)."""
    try:
        from sqlalchemy.exc import OperationalError
    except ImportError:
        return None
    if not isinstance(exc, OperationalError):
        return None
    reason = str(exc.orig) if exc.orig is not None else str(exc)
    return f"the database refused the operation: {reason}"


def user_error_message(exc: BaseException) -> str | None:
    """The one line a user error prints, or None when `exc` is a bug."""
    if isinstance(exc, UserError):
        return one_line(str(exc))
    if isinstance(exc, _usage_error_types()):
        return one_line(_usage_message(exc))
    database = _database_message(exc)
    return one_line(database) if database is not None else None
