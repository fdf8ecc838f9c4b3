"""schemathesis: generated requests against /openapi.json; zero server errors, answers match it.

The schema is loaded at import (schemathesis's lazy `from_fixture` loader does not run under
pytest 9), over its own copy of the sample database.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

schemathesis = pytest.importorskip("schemathesis")

from schemathesis.specs.openapi.checks import positive_data_acceptance  # noqa: E402

from evotune.api import create_app  # noqa: E402
from tests.api.conftest import TOKEN, build_sample_db  # noqa: E402

_FOLDER = tempfile.TemporaryDirectory(prefix="evotune-fuzz-")
_SAMPLE = build_sample_db(Path(_FOLDER.name) / "fuzz.db")
# POSTs that pass validation start a child that exits at once: no search runs.
_APP = create_app(
    _SAMPLE.url,
    token=TOKEN,
    launcher=[sys.executable, "-c", "pass"],
    job_log_dir=Path(_FOLDER.name) / "jobs",
)
schema = schemathesis.openapi.from_asgi("/openapi.json", _APP)


@schema.parametrize()
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_api_conforms_to_its_schema(case: Any) -> None:
    excluded = []
    if case.operation.path == "/v1/best":
        # OpenAPI cannot say "shape= or every dim, not both": such schema-valid requests are
        # 422 on purpose, so only this check is off here; all the others still run.
        excluded.append(positive_data_acceptance)
    case.call_and_validate(headers={"Authorization": f"Bearer {TOKEN}"}, excluded_checks=excluded)
