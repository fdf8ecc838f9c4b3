"""What only the SQL store can show of the `TrialStore` contract: a study whose process died
while it was `running` (its heartbeat stopped) counts as stopped. SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

from evotune.storage import Database, SqlTrialStore, Study
from evotune.storage.heartbeat import LEASE_S
from evotune.storage.models import utcnow
from tests.storage.samples import SPEC

RECIPE = {"recipe": {"args": {"n": 300}}}


def _process_died(db: Database, study_id: int) -> None:
    """As a killed process leaves its study: `running`, with a heartbeat past the lease."""
    with db.session() as session:
        study = session.get(Study, study_id)
        assert study is not None
        study.heartbeat_at = utcnow() - timedelta(seconds=2 * LEASE_S)


def test_a_running_study_whose_process_died_has_stopped(sql_db: Database) -> None:
    store = SqlTrialStore(sql_db)
    with_recipe = store.record_pending(SPEC, "recorded", RECIPE)
    store.start_pending(SPEC, "run", keep=())
    assert store.waiting_studies("evolution") == []  # alive
    _process_died(sql_db, with_recipe.id)
    (waiting,) = store.waiting_studies("evolution")
    assert (waiting.id, waiting.state) == (with_recipe.id, "running")
    assert store.record_pending(SPEC, "missed", RECIPE) == waiting  # waits with its recipe

    # Died without the extra settings: the search is recorded again.
    bare = store.start_pending(SPEC, "run without a recipe", keep=())
    _process_died(sql_db, bare.id)
    pending = store.record_pending(SPEC, "missed", RECIPE)
    assert pending.id not in (with_recipe.id, bare.id) and pending.state == "pending"
    assert store.waiting_studies("evolution") == [pending]
