"""The OpenAPI document, completed with what only the search spaces know.

Kernel names, shape names, dtypes and the dims of an ad-hoc shape are data (search-space
files), not code, so FastAPI cannot put them in the schema; this adds them as enums and
per-kernel variants when /openapi.json is first asked for. Clients (and schemathesis) then
see exactly which requests are valid: every request the document allows is served (2xx or
a documented 404/409/503), and every error answer has the ErrorOut body.
"""

from __future__ import annotations

import copy
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from evotune.api.spaces import SpaceCatalog
from evotune.errors import UserError
from evotune.space import SearchSpace

__all__ = ["complete_schema", "install_openapi", "known_strategies"]

_TYPES = {"int": "integer", "bool": "boolean", "str": "string"}
_INT_LIMIT = 10**18 - 1  # space.parse_dim accepts up to 18 digits


def _spaces(catalog: SpaceCatalog) -> list[SearchSpace]:
    spaces = []
    for name in catalog.kernels():
        try:
            spaces.append(catalog.get(name))
        except UserError:  # a broken file is left out, as /v1/kernels does
            continue
    return spaces


def _dim_schema(kind: str, space: SearchSpace, dim: str) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": _TYPES[kind]}
    if kind == "int":
        schema.update(minimum=-_INT_LIMIT, maximum=_INT_LIMIT)
    if dim == "dtype" and kind == "str":  # space.py checks dtype against the tolerances
        schema["enum"] = sorted(space.tolerances)
    if dim in space.dim_defaults:
        schema["description"] = f"optional; default: {space.dim_defaults[dim]}"
    return schema


def _not_null(schema: dict[str, Any]) -> dict[str, Any]:
    """A query value is text, never null: `anyOf [X, null]` (an optional) is X."""
    branches = [b for b in schema.get("anyOf", []) if b.get("type") != "null"]
    if len(branches) != 1:
        return schema
    rest = {k: v for k, v in schema.items() if k != "anyOf"}
    return {**branches[0], **rest}


def _best_lookup(spaces: list[SearchSpace], common: dict[str, Any]) -> dict[str, Any]:
    """/v1/best's query as one exploded object: per kernel, a named shape or every dim.

    OpenAPI has no "shape= or all of the dims, not both" between separate parameters; as
    the properties of one object (style form, explode: each is its own query parameter, as
    before) it is a `oneOf`, and every request the schema allows is one the server serves.
    """
    variants: list[dict[str, Any]] = []
    for space in spaces:
        kernel = {"type": "string", "enum": [space.kernel]}
        variants.append(
            {
                "title": f"{space.kernel}: a named shape",
                "type": "object",
                "properties": {
                    "kernel": kernel,
                    "shape": {"type": "string", "enum": list(space.shapes)},
                    **common,
                },
                "required": ["kernel", "shape"],
                "additionalProperties": False,
            }
        )
        dims = {dim: _dim_schema(kind, space, dim) for dim, kind in space.dims.items()}
        variants.append(
            {
                "title": f"{space.kernel}: an ad-hoc shape, every dim given",
                "type": "object",
                "properties": {"kernel": kernel, **dims, **common},
                "required": ["kernel", *(d for d in space.dims if d not in space.dim_defaults)],
                "additionalProperties": False,
            }
        )
    return {
        "name": "lookup",
        "in": "query",
        "required": True,
        "style": "form",
        "explode": True,
        "description": "kernel= and either shape= (a named shape) or every dim of the "
        "kernel as its own parameter (an ad-hoc shape), never both; optional filters",
        "schema": {"type": "object", "oneOf": variants},
    }


def known_strategies() -> list[str] | None:
    try:
        from evotune.search.registry import STRATEGIES
    except Exception:  # a broken strategy module must not break the schema
        return None
    return sorted(STRATEGIES)


def complete_schema(schema: dict[str, Any], catalog: SpaceCatalog) -> dict[str, Any]:
    """Enums for kernel/shape/strategy/evaluator and the lookup of /v1/best, in place."""
    from evotune.api.importance import available_evaluators

    spaces = _spaces(catalog)
    kernels = [space.kernel for space in spaces]
    for path in schema.get("paths", {}).values():
        for operation in path.values():
            for param in operation.get("parameters", []):
                if param.get("in") != "query":
                    continue
                if param["name"] == "kernel":
                    param["schema"] = {"type": "string", "enum": kernels}
                elif param["name"] == "evaluator":
                    param["schema"] = {
                        "type": "string",
                        "enum": available_evaluators(),
                        "default": "ped_anova",
                    }
    best = schema["paths"]["/v1/best"]["get"]
    query = [p for p in best.get("parameters", []) if p.get("in") == "query"]
    common = {
        p["name"]: _not_null(p["schema"]) for p in query if p["name"] not in ("kernel", "shape")
    }
    best["parameters"] = [p for p in best.get("parameters", []) if p.get("in") != "query"]
    best["parameters"].append(_best_lookup(spaces, common))
    components = schema.get("components", {}).get("schemas", {})
    if "SearchRequest" in components:
        components["SearchRequest"] = _search_request(components["SearchRequest"], spaces)
    return schema


def _search_request(request: dict[str, Any], spaces: list[SearchSpace]) -> dict[str, Any]:
    """POST /v1/studies's body: one variant per kernel, each with that kernel's shapes."""
    strategies = known_strategies()
    variants = []
    for space in spaces:
        variant = copy.deepcopy(request)
        variant["title"] = f"SearchRequest ({space.kernel})"
        props = variant["properties"]
        props["kernel"]["enum"] = [space.kernel]
        props["shape"]["enum"] = list(space.shapes)
        if strategies:
            props["strategy"]["enum"] = strategies
        variants.append(variant)
    if not variants:
        return request
    return {
        "title": "SearchRequest",
        "description": request.get("description", ""),
        "oneOf": variants,
    }


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
