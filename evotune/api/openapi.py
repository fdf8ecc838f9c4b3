"""The OpenAPI document, completed with what only the search spaces know.

Kernel names, shape names, dtypes and the dims of an ad-hoc shape are data (search-space
files), not code, so FastAPI cannot put them in the schema; this adds them as enums and
parameters when /openapi.json is first asked for. Clients (and schemathesis) then see exactly
which values are valid.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from evotune.api.spaces import SpaceCatalog
from evotune.errors import UserError
from evotune.space import SearchSpace

__all__ = ["complete_schema", "install_openapi", "known_strategies"]

_TYPES = {"int": "integer", "bool": "boolean", "str": "string"}
_INT_LIMIT = 10**18 - 1  # params.parse_dim accepts up to 18 digits


def _spaces(catalog: SpaceCatalog) -> list[SearchSpace]:
    spaces = []
    for name in catalog.kernels():
        try:
            spaces.append(catalog.get(name))
        except UserError:  # a broken file is left out, as /v1/kernels does
            continue
    return spaces


def _dims_parameters(spaces: list[SearchSpace]) -> list[dict[str, Any]]:
    """One optional query parameter per dim of any kernel (an ad-hoc shape gives them all)."""
    types: dict[str, set[str]] = {}
    owners: dict[str, list[str]] = {}
    dtypes: set[str] = set()
    for space in spaces:
        dtypes.update(space.tolerances)
        for dim, kind in space.dims.items():
            types.setdefault(dim, set()).add(_TYPES[kind])
            owners.setdefault(dim, []).append(space.kernel)
    params = []
    for dim in sorted(types):
        kinds = types[dim]
        schema: dict[str, Any] = {"type": next(iter(kinds)) if len(kinds) == 1 else "string"}
        if schema["type"] == "integer":
            schema.update(minimum=-_INT_LIMIT, maximum=_INT_LIMIT)
        if dim == "dtype" and schema["type"] == "string":  # space.py checks dtype this way
            schema["enum"] = sorted(dtypes)
        params.append(
            {
                "name": dim,
                "in": "query",
                "required": False,
                "schema": schema,
                "description": (
                    f"a dim of an ad-hoc shape ({', '.join(owners[dim])}); "
                    "give every dim of the kernel, and no shape="
                ),
            }
        )
    return params


def known_strategies() -> list[str] | None:
    try:
        from evotune.search.registry import STRATEGIES
    except Exception:  # a broken strategy module must not break the schema
        return None
    return sorted(STRATEGIES)


def complete_schema(schema: dict[str, Any], catalog: SpaceCatalog) -> dict[str, Any]:
    """Enums for kernel/shape/strategy and the dims of /v1/best, in place."""
    spaces = _spaces(catalog)
    kernels = [space.kernel for space in spaces]
    shapes = sorted({name for space in spaces for name in space.shapes})
    for path in schema.get("paths", {}).values():
        for operation in path.values():
            for param in operation.get("parameters", []):
                if param.get("in") != "query":
                    continue
                if param["name"] == "kernel":
                    param["schema"] = {"type": "string", "enum": kernels}
                elif param["name"] == "shape" and path is schema["paths"].get("/v1/best"):
                    param["schema"] = {"type": "string", "enum": shapes}
    best = schema["paths"]["/v1/best"]["get"]
    best.setdefault("parameters", []).extend(_dims_parameters(spaces))
    request = schema.get("components", {}).get("schemas", {}).get("SearchRequest")
    if request is not None:
        props = request["properties"]
        props["kernel"]["enum"] = kernels
        props["shape"]["enum"] = shapes
        strategies = known_strategies()
        if strategies:
            props["strategy"]["enum"] = strategies
    return schema


def install_openapi(app: FastAPI) -> None:
    """Serve the completed schema at /openapi.json (built once, on first request)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title, version=app.version, summary=app.summary, routes=app.routes
            )
            app.openapi_schema = complete_schema(schema, app.state.spaces)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
