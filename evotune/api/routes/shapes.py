"""GET /v1/shapes: named shapes of the search spaces, ad-hoc shapes the database knows, and the
shapes of kernels known only from their studies (decorated with `evotune.autotune`)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from sqlalchemy.orm import Session

from evotune.api.deps import GateDep, SpacesDep
from evotune.api.errors import error_responses
from evotune.api.params import resolve_kernel
from evotune.api.responses import JSONBytes, dump_list
from evotune.api.schemas import ShapeOut
from evotune.api.spaces import SpaceCatalog
from evotune.errors import UserError
from evotune.space import Shape
from evotune.storage import repository

router = APIRouter(prefix="/v1", tags=["shapes"])


@router.get("/shapes", response_model=list[ShapeOut], responses=error_responses(422, 503))
async def list_shapes(
    gate: GateDep,
    spaces: SpacesDep,
    kernel: Annotated[
        str | None, Query(max_length=100, description="only this kernel's shapes")
    ] = None,
) -> JSONBytes:
    """Named shapes first (in file order), then ad-hoc shapes that have studies. Without
    `kernel`, then the shapes of kernels known only from their studies (kernels decorated
    with `evotune.autotune`, which have no search-space file)."""
    if kernel is not None:
        kernels = [resolve_kernel(spaces, kernel).kernel]
    else:
        kernels = []
        for name in spaces.kernels():
            try:
                kernels.append(spaces.get(name).kernel)
            except UserError:
                continue
    every = kernel is None
    return JSONBytes(
        await gate.read(lambda session: dump_list(_shapes(session, spaces, kernels, every)))
    )


def _shapes(
    session: Session, spaces: SpaceCatalog, kernels: list[str], without_file: bool
) -> list[ShapeOut]:
    tuned = repository.tuned_gpus_by_shape(session)
    newest = repository.newest_study_by_shape(session)
    out: list[ShapeOut] = []
    for name in kernels:
        space = spaces.get(name)
        seen: set[str] = set()
        for shape_name, dims in space.shapes.items():
            shape = Shape(shape_name, dict(dims))
            seen.add(shape.key)
            out.append(_shape_out(name, shape_name, shape.key, shape.dims, "space", tuned, newest))
        for row in repository.shapes_in_database(session, name):
            if row.key not in seen:
                seen.add(row.key)
                out.append(_shape_out(name, row.name, row.key, row.dims, "database", tuned, newest))
    if without_file:
        for name in sorted({name for name, _ in newest} - set(spaces.kernels())):
            for row in repository.shapes_in_database(session, name):
                out.append(_shape_out(name, row.name, row.key, row.dims, "database", tuned, newest))
    return out


def _shape_out(
    kernel: str,
    name: str | None,
    key: str,
    dims: dict[str, Any],
    source: Literal["space", "database"],
    tuned: dict[tuple[str, str], list[str]],
    newest: dict[tuple[str, str], int],
) -> ShapeOut:
    return ShapeOut(
        kernel=kernel,
        name=name,
        key=key,
        dims=dict(dims),
        source=source,
        tuned_on=tuned.get((kernel, key), []),
        newest_study_id=newest.get((kernel, key)),
    )
