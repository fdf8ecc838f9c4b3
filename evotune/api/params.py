"""Query parameters that depend on a kernel's search space: its name, a shape, its dims.

Bad values answer 422 in FastAPI's own validation-error format, so clients parse one shape of
error whether pydantic or the search space rejected the request.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from fastapi.exceptions import RequestValidationError

from evotune.api.spaces import SpaceCatalog
from evotune.errors import UserError
from evotune.space import SearchSpace, Shape

__all__ = [
    "BOOL_FALSE",
    "BOOL_TRUE",
    "bad_query",
    "parse_dim",
    "resolve_kernel",
    "resolve_shape",
]

BOOL_TRUE = frozenset({"true", "1", "yes", "on"})
BOOL_FALSE = frozenset({"false", "0", "no", "off"})
_INT = re.compile(r"^[+-]?\d{1,18}$")


def bad_query(name: str, message: str, value: Any = None) -> RequestValidationError:
    """A 422 naming one query parameter."""
    return RequestValidationError(
        [{"type": "value_error", "loc": ("query", name), "msg": message, "input": value}]
    )


def resolve_kernel(spaces: SpaceCatalog, kernel: str) -> SearchSpace:
    try:
        return spaces.get(kernel)
    except UserError as exc:
        raise bad_query("kernel", str(exc), kernel) from None


def parse_dim(name: str, kind: str, raw: str) -> Any:
    """A dim's text from the query string, typed as the space declares it."""
    if kind == "int":
        if not _INT.match(raw):
            raise bad_query(name, f"{name} must be an integer", raw)
        return int(raw)
    if kind == "bool":
        lowered = raw.lower()
        if lowered in BOOL_TRUE:
            return True
        if lowered in BOOL_FALSE:
            return False
        raise bad_query(name, f"{name} must be true or false", raw)
    return raw


def resolve_shape(space: SearchSpace, shape: str | None, query: Mapping[str, str]) -> Shape:
    """A named shape (`shape=`) or an ad-hoc one (every dim as its own parameter), not both."""
    given = [dim for dim in space.dims if dim in query]
    if shape is not None:
        if given:
            raise bad_query("shape", f"give shape= or the dims ({', '.join(given)}), not both")
        try:
            return space.shape(shape)
        except UserError as exc:
            raise bad_query("shape", str(exc), shape) from None
    if not given:
        raise bad_query(
            "shape",
            f"give shape= (one of {', '.join(space.shapes)}) or every dim: {', '.join(space.dims)}",
        )
    missing = [dim for dim in space.dims if dim not in query]
    if missing:
        raise bad_query(
            missing[0], f"an ad-hoc shape needs every dim; missing {', '.join(missing)}"
        )
    dims = {dim: parse_dim(dim, kind, query[dim]) for dim, kind in space.dims.items()}
    try:
        return space.adhoc_shape(dims)
    except UserError as exc:
        raise bad_query("shape", str(exc), dims) from None
