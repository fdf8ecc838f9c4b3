"""GET /v1/kernels: the kernels this service knows, with their dims, parameters and shapes."""

from __future__ import annotations

from fastapi import APIRouter

from evotune.api.deps import SpacesDep
from evotune.api.schemas import KernelOut, ParameterOut
from evotune.errors import UserError

router = APIRouter(prefix="/v1", tags=["kernels"])


@router.get("/kernels", response_model=list[KernelOut])
async def list_kernels(spaces: SpacesDep) -> list[KernelOut]:
    """Every kernel with a valid search-space file (a broken file is left out, not a 500)."""
    out: list[KernelOut] = []
    for name in spaces.kernels():
        try:
            space = spaces.get(name)
        except UserError:
            continue
        parameters = [
            ParameterOut(
                name=pname,
                kind=param.kind,
                choices=param.choices(),
                default=param.default,
                when=param.when,
                doc=param.doc,
            )
            for pname, param in space.parameters.items()
        ]
        out.append(
            KernelOut(
                name=space.kernel,
                description=space.description,
                dims=dict(space.dims),
                parameters=parameters,
                shapes=list(space.shapes),
            )
        )
    return out
