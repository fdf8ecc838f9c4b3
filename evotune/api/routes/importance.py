"""GET /v1/studies/{id}/importance: which parameters the p50 depends on (Optuna's evaluators).

The trials are read through the database gate; the evaluation runs in a thread of its own
(one at a time, it is CPU work) and is remembered per study, evaluator and trial count.
"""

from __future__ import annotations

from collections import OrderedDict
from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, Request, status
from sqlalchemy.orm import Session

from evotune.api.deps import GateDep, SpacesDep
from evotune.api.errors import error_responses
from evotune.api.gate import Gate
from evotune.api.importance import MIN_TRIALS, available_evaluators, param_importances
from evotune.api.params import bad_query
from evotune.api.responses import JSONBytes, dump
from evotune.api.schemas import ImportanceOut, ParamImportance
from evotune.errors import StudyNotFoundError, UserError
from evotune.storage import repository

router = APIRouter(prefix="/v1", tags=["studies"])

_CACHE_SIZE = 64
# One evaluation at a time (CPU work, the GIL); a few may wait, briefly: then 503 busy.
_EVALUATIONS = Gate(slots=1, queue=4, wait_s=2.0, what="importance evaluations")


@router.get(
    "/studies/{study_id}/importance",
    response_model=ImportanceOut,
    responses=error_responses(404, 422, 503, s404="no study with that id"),
)
async def study_importance(
    request: Request,
    gate: GateDep,
    spaces: SpacesDep,
    study_id: Annotated[int, Path(ge=1, le=2**62, description="a study id")],
    evaluator: Annotated[
        str,
        Query(
            max_length=40,
            description="Optuna's importance evaluator: ped_anova; fanova and "
            "mean_decrease_impurity where scikit-learn is installed",
        ),
    ] = "ped_anova",
) -> JSONBytes:
    """Importance of each parameter for the p50 of the study's ok trials (sums to 1)."""
    known = available_evaluators()
    if evaluator not in known:
        raise bad_query("evaluator", f"unknown evaluator {evaluator!r}; here: {', '.join(known)}")

    def read(session: Session) -> tuple[str, list[tuple[dict[str, Any], float]]]:
        try:
            study = repository.get_study(session, study_id)
        except StudyNotFoundError as exc:
            raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None
        return study.kernel.name, repository.ok_trial_points(session, study_id)

    name = evaluator

    kernel, points = await gate.read(read)
    try:
        choices = {n: p.choices() for n, p in spaces.get(kernel).parameters.items()}
    except UserError:  # the kernel's file went away: the trials' own values
        choices = {}
        for config, _ in points:
            for key, value in config.items():
                choices.setdefault(key, []).append(value)
    cache: OrderedDict[tuple[int, str, int], bytes] = request.app.state.importance_cache
    cached = (study_id, name, len(points))
    if cached not in cache:
        ranked, skipped = await _EVALUATIONS.run(partial(param_importances, points, choices, name))
        note = None
        if len(points) < MIN_TRIALS:
            note = f"needs at least {MIN_TRIALS} ok trials; the study has {len(points)}"
        out = ImportanceOut(
            study_id=study_id,
            evaluator=name,
            trials=len(points),
            importances=[ParamImportance(param=p, importance=v) for p, v in ranked.items()],
            skipped=skipped,
            note=note,
        )
        cache[cached] = dump(out)
        while len(cache) > _CACHE_SIZE:
            cache.popitem(last=False)
    return JSONBytes(cache[cached])
