"""Query parameters that depend on a kernel's search space: its name, a shape, its dims.

Bad values answer 422 in FastAPI's own validation-error format, so clients parse one shape of
error whether pydantic or the search space rejected the request.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi.exceptions import RequestValidationError

from evotune.api.spaces import SpaceCatalog
from evotune.errors import ImpossibleShapeError, UserError
from evotune.space import SearchSpace, Shape, parse_dim

__all__ = ["bad_query", "query_dim", "resolve_kernel", "resolve_shape"]


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


def query_dim(name: str, kind: str, raw: str) -> Any:
    """A dim's text from the query string, typed as the space declares it (`space.parse_dim`)."""
    try:
        return parse_dim(name, kind, raw)
    except UserError as exc:
        raise bad_query(name, str(exc), raw) from None


def resolve_shape(space: SearchSpace, shape: str | None, query: Mapping[str, str]) -> Shape:
    """A named shape (`shape=`) or an ad-hoc one (every dim as its own parameter, those with a
    default optional), not both. Dims that break a shape rule of the kernel raise
    ImpossibleShapeError: the query is well formed, but no config can exist for it."""
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
    missing = [dim for dim in space.dims if dim not in query and dim not in space.dim_defaults]
    if missing:
        raise bad_query(
            missing[0], f"an ad-hoc shape needs every dim; missing {', '.join(missing)}"
        )
    dims = {
        dim: query_dim(dim, kind, query[dim]) for dim, kind in space.dims.items() if dim in query
    }
    try:
        return space.adhoc_shape(dims)
    except ImpossibleShapeError:
        raise
    except UserError as exc:
        raise bad_query("shape", str(exc), dims) from None
