"""The dashboard's pages (/, /studies/{id}, /compare, /overview); the data comes from /v1."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from evotune.api.dashboard import TEMPLATES_DIR

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=str(TEMPLATES_DIR))


@router.get("/", response_class=HTMLResponse)
async def index(request: Request) -> HTMLResponse:
    return templates.TemplateResponse(request, "index.html", {"page": "index"})


@router.get("/studies/{study_id}", response_class=HTMLResponse)
async def study_page(
    request: Request, study_id: Annotated[int, Path(ge=1, le=2**62)]
) -> HTMLResponse:
    return templates.TemplateResponse(
        request, "study.html", {"page": "study", "study_id": study_id}
    )


@router.get("/compare", response_class=HTMLResponse)
async def compare_page(request: Request) -> HTMLResponse:
    """Several studies on one convergence plot: /compare?studies=1,2,3."""
    return templates.TemplateResponse(request, "compare.html", {"page": "compare"})


@router.get("/overview", response_class=HTMLResponse)
async def overview_page(request: Request) -> HTMLResponse:
    return templates.TemplateResponse(request, "overview.html", {"page": "overview"})
