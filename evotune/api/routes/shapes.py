"""GET /v1/shapes: named shapes of the search spaces, and ad-hoc shapes the database knows."""

from __future__ import annotations

from typing import Annotated

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
    """Named shapes first (in file order), then ad-hoc shapes that have studies."""
    if kernel is not None:
        kernels = [resolve_kernel(spaces, kernel).kernel]
    else:
        kernels = []
        for name in spaces.kernels():
            try:
                kernels.append(spaces.get(name).kernel)
            except UserError:
                continue
    return JSONBytes(await gate.read(lambda session: dump_list(_shapes(session, spaces, kernels))))


def _shapes(session: Session, spaces: SpaceCatalog, kernels: list[str]) -> list[ShapeOut]:
    tuned = repository.tuned_gpus_by_shape(session)
    out: list[ShapeOut] = []
    for name in kernels:
        space = spaces.get(name)
        seen: set[str] = set()
        for shape_name, dims in space.shapes.items():
            shape = Shape(shape_name, dict(dims))
            seen.add(shape.key)
            out.append(
                ShapeOut(
                    kernel=name,
                    name=shape_name,
                    key=shape.key,
                    dims=shape.dims,
                    source="space",
                    tuned_on=tuned.get((name, shape.key), []),
                )
            )
        for row in repository.shapes_in_database(session, name):
            if row.key in seen:
                continue
            seen.add(row.key)
            out.append(
                ShapeOut(
                    kernel=name,
                    name=row.name,
                    key=row.key,
                    dims=dict(row.dims),
                    source="database",
                    tuned_on=tuned.get((name, row.key), []),
                )
            )
    return out
