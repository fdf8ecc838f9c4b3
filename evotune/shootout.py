"""The end of a search: the finalists re-measured interleaved in one worker (the shoot-out),
ranked, and the winner published. Also the plain "fastest by the search's p50" that a study
without a shoot-out falls back to.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from evotune.records import TrialRequest, TrialStatus, config_hash
from evotune.space import SearchSpace, Shape
from evotune.storage.trial_store import StudyRecord, TrialRecord, TrialStore
from evotune.worker.evaluator import Evaluator

__all__ = ["fastest", "shootout_and_publish"]


def fastest(trials: Sequence[TrialRecord]) -> TrialRecord | None:
    """The trial with the lowest search p50 (ties: the earlier one)."""
    return min(trials, key=lambda t: t.p50_us or math.inf, default=None)


def shootout_and_publish(
    store: TrialStore,
    study: StudyRecord,
    space: SearchSpace,
    shape: Shape,
    evaluator: Evaluator,
    finalists_wanted: int,
    rounds: int,
    tolerance: dict[str, float],
    flops: float | None,
) -> float | None:
    """Re-measure the top few interleaved in one worker; publish the winner of that.
    Returns the shape's flops (`flops`, or as the shoot-out's results report it)."""
    ok = store.trials(study.id, TrialStatus.OK.value)
    finalists = sorted(ok, key=lambda t: t.p50_us or math.inf)[: max(1, finalists_wanted)]
    # The default config joins the shoot-out so the speedup over it is measured alike.
    default_hash = config_hash(space.default_config())
    default = next((t for t in ok if t.config_hash == default_hash), None)
    if default is not None and default not in finalists:
        finalists.append(default)
    if not finalists:
        return flops
    requests = [
        TrialRequest(t.id, space.kernel, dict(shape.dims), dict(t.config), t.seed, tolerance)
        for t in finalists
    ]
    results = evaluator.shootout(requests, rounds) if len(requests) > 1 else []
    flops = next((r.flops for r in results if r.flops), flops)
    finalist_ids = {t.id for t in finalists}
    for result in results:
        if result.trial_id not in finalist_ids:
            continue
        if result.status is TrialStatus.OK and result.p50_us is not None:
            store.record_shootout(result.trial_id, result.p50_us)
        elif result.status is TrialStatus.WRONG_RESULT:
            # Its own fault (wrong on a later launch, or under the physical floor): it must
            # never win. Crashes and timeouts may be another finalist's doing.
            store.fail_finalist(result)
    # Still `ok` after the shoot-out, in the order they were asked: (rank, trial, the
    # shoot-out p50 it is ranked by, None when ranked by the search's p50).
    after = {t.id: t for t in store.trials(study.id, TrialStatus.OK.value)}
    still_ok = [t for t in (after.get(f.id) for f in finalists) if t and t.p50_us is not None]
    scored: list[tuple[float, TrialRecord, float | None]] = [
        (t.p50_us, t, None) for t in still_ok if t.p50_us is not None
    ]
    if results:
        # Ranked by the shoot-out; by the search's p50 only if it measured none of them.
        scored = [
            (t.shootout_p50_us, t, t.shootout_p50_us)
            for t in still_ok
            if t.shootout_p50_us is not None
        ] or scored
    if not scored:
        store.set_winner(study.id, None)
        return flops  # every finalist was wrong: nothing is published
    ranked_p50, winner, shootout_p50 = min(scored, key=lambda item: item[0])
    store.set_winner(
        study.id,
        winner.id,
        [
            {"trial_id": t.id, "p50_us": t.p50_us, "shootout_p50_us": t.shootout_p50_us}
            for _, t, _ in scored
        ],
    )
    tflops = flops / (ranked_p50 * 1e-6) / 1e12 if flops else None
    store.publish_best(study.id, winner.id, shootout_p50, tflops)
    return flops
