"""GET /v1/overview: the served best config of every kernel x shape x GPU, and its gain.

The gain is over the space's default config measured in the same study (the shoot-out
re-measures it beside the finalists), and over the plug-in's baseline when the study's
shoot-out recorded one (an entry `{"baseline": NAME, "p50_us": T}`).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from sqlalchemy.orm import Session

from evotune.api.deps import GateDep, SpacesDep
from evotune.api.errors import error_responses
from evotune.api.params import resolve_kernel
from evotune.api.responses import JSONBytes, dump_list
from evotune.api.schemas import BaselineOut, OverviewRow
from evotune.api.spaces import SpaceCatalog
from evotune.errors import UserError
from evotune.records import config_hash
from evotune.schemas import finite, shape_ref
from evotune.storage import BestConfig, Study, Trial, repository

router = APIRouter(prefix="/v1", tags=["best"])


@router.get("/overview", response_model=list[OverviewRow], responses=error_responses(422, 503))
async def overview(
    gate: GateDep,
    spaces: SpacesDep,
    kernel: Annotated[str | None, Query(max_length=100, description="only this kernel")] = None,
    interpreted: Annotated[
        bool, Query(description="also bests found under Triton's CPU interpreter")
    ] = False,
) -> JSONBytes:
    """One row per kernel x shape x GPU: the best `/v1/best` serves for that GPU (newest
    measured first), sorted by kernel, shape and GPU."""
    if kernel is not None:
        kernel = resolve_kernel(spaces, kernel).kernel
    return JSONBytes(
        await gate.read(
            lambda session: dump_list(overview_rows(session, spaces, kernel, interpreted))
        )
    )


def overview_rows(
    session: Session, spaces: SpaceCatalog, kernel: str | None, interpreted: bool
) -> list[OverviewRow]:
    chosen: dict[tuple[str, str, str], tuple[BestConfig, int]] = {}
    for row in repository.published_bests(session, kernel, interpreted):
        key = (row.kernel.name, row.shape.key, row.environment.gpu)
        first, count = chosen.get(key, (row, 0))  # newest first: the first row is served
        chosen[key] = (first, count + 1)
    rows = [best for best, _ in chosen.values()]
    defaults = _default_trials(session, spaces, rows)
    out = []
    for (kernel_name, _, gpu), (best, count) in chosen.items():
        p50 = best.shootout_p50_us or best.p50_us
        default = defaults.get(best.study_id)
        default_p50 = (default.shootout_p50_us or default.p50_us) if default else None
        study = session.get(Study, best.study_id)
        out.append(
            OverviewRow(
                kernel=kernel_name,
                shape=shape_ref(best.shape),
                gpu=gpu,
                interpreted=best.environment.interpreted,
                environments=count,
                study_id=best.study_id,
                trial_id=best.trial_id,
                config=dict(best.config),
                p50_us=p50,
                tflops=finite(best.tflops),
                measured_at=best.measured_at,
                default_p50_us=default_p50,
                speedup_over_default=_ratio(default_p50, p50),
                baseline=_baseline(study, p50),
            )
        )
    return sorted(out, key=lambda r: (r.kernel, r.shape.name or "", r.shape.key, r.gpu))


def _default_trials(
    session: Session, spaces: SpaceCatalog, rows: list[BestConfig]
) -> dict[int, Trial]:
    """Study id -> its trial of the kernel's default config (ok), where there is one."""
    hashes: dict[str, str] = {}
    for name in {row.kernel.name for row in rows}:
        try:
            hashes[name] = config_hash(spaces.get(name).default_config())
        except UserError:  # the kernel's file went away: no default to compare with
            continue
    trials = repository.trials_by_hash(session, [r.study_id for r in rows], list(hashes.values()))
    return {t.study_id: t for t in trials}


def _baseline(study: Study | None, p50: float) -> BaselineOut | None:
    entries: list[Any] = list(study.shootout or []) if study is not None else []
    for entry in entries:
        if isinstance(entry, dict) and entry.get("baseline") and entry.get("p50_us"):
            base = float(entry["p50_us"])
            return BaselineOut(name=str(entry["baseline"]), p50_us=base, speedup=base / p50)
    return None


def _ratio(slower: float | None, faster: float) -> float | None:
    return None if slower is None or faster <= 0 else slower / faster
