"""Parameter importance of a study: Optuna's evaluators on its ok trials (p50, minimized).

The trials become an in-memory Optuna study (every parameter categorical, its choices from
the search space), and `optuna.importance.get_param_importances` ranks the parameters.
PED-ANOVA needs nothing beyond Optuna; fANOVA and mean decrease impurity need scikit-learn
and are offered only where it is installed.
"""

from __future__ import annotations

import importlib.util
import warnings
from collections.abc import Sequence
from typing import Any

__all__ = ["MIN_TRIALS", "available_evaluators", "param_importances"]

MIN_TRIALS = 4


def available_evaluators() -> list[str]:
    names = ["ped_anova"]
    if importlib.util.find_spec("sklearn") is not None:
        names += ["fanova", "mean_decrease_impurity"]
    return names


def _evaluator(name: str) -> Any:
    from optuna.importance import (
        FanovaImportanceEvaluator,
        MeanDecreaseImpurityImportanceEvaluator,
        PedAnovaImportanceEvaluator,
    )

    if name == "fanova":
        return FanovaImportanceEvaluator(seed=0)
    if name == "mean_decrease_impurity":
        return MeanDecreaseImpurityImportanceEvaluator(seed=0)
    return PedAnovaImportanceEvaluator()


def param_importances(
    points: Sequence[tuple[dict[str, Any], float]],
    choices: dict[str, list[Any]],
    evaluator: str = "ped_anova",
) -> tuple[dict[str, float], list[str]]:
    """(parameter -> importance, parameters skipped) of (config, p50) points.

    A parameter is assessed when it takes more than one value (a constant explains
    nothing). PED-ANOVA handles conditional parameters (set only where their `when` holds);
    the other evaluators assess only parameters that every point sets.
    """
    import optuna
    from optuna.distributions import CategoricalDistribution

    def values(name: str) -> set[str]:
        return {repr(config[name]) for config, _ in points if name in config}

    conditional_ok = evaluator == "ped_anova"
    assessed = [
        n
        for n in choices
        if len(values(n)) > 1 and (conditional_ok or all(n in c for c, _ in points))
    ]
    skipped = [n for n in choices if n not in assessed]
    if len(points) < MIN_TRIALS or not assessed:
        return {}, skipped
    distributions = {n: CategoricalDistribution(_choices(choices[n], points, n)) for n in assessed}
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="minimize")
    study.add_trials(
        optuna.trial.create_trial(
            params={n: config[n] for n in assessed if n in config},
            distributions={n: distributions[n] for n in assessed if n in config},
            value=p50,
        )
        for config, p50 in points
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # experimental-feature warnings of the evaluators
        ranked = optuna.importance.get_param_importances(study, evaluator=_evaluator(evaluator))
    return {name: float(value) for name, value in ranked.items()}, skipped


def _choices(
    declared: list[Any], points: Sequence[tuple[dict[str, Any], float]], name: str
) -> list[Any]:
    """The space's choices, plus any value a trial has that the space no longer declares."""
    values = list(declared)
    for config, _ in points:
        if name in config and config[name] not in values:
            values.append(config[name])
    return values
