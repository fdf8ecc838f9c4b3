"""The CLI's `--json` and the REST API print the same records (evotune.schemas) as strict JSON."""

from __future__ import annotations

import json
from typing import Any

from fastapi.testclient import TestClient
from typer.testing import CliRunner

from evotune.cli import app
from tests.api.conftest import SampleData


def _strict(text: str) -> Any:
    def refuse(constant: str) -> Any:
        raise AssertionError(f"not JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


def _cli(sample: SampleData, *args: str) -> Any:
    result = CliRunner().invoke(app, [*args, "--db", sample.url, "--json"])
    assert result.exit_code == 0, result.output
    return _strict(result.stdout)


def test_trials_match_the_api_with_an_infinite_max_error(
    client: TestClient, sample: SampleData
) -> None:
    study = sample.mission
    assert study.statuses.get("wrong_result"), "the sample stores max_error inf for these"
    api = client.get(f"/v1/studies/{study.id}/trials", params={"limit": 2000})
    api_items = _strict(api.text)["items"]
    cli_items = _cli(sample, "trials", str(study.id))
    assert cli_items == api_items and len(cli_items) == len(study.trials)
    assert all(t["max_error"] is None for t in cli_items if t["status"] == "wrong_result")


def test_studies_and_best_match_the_api(client: TestClient, sample: SampleData) -> None:
    api_studies = _strict(client.get("/v1/studies", params={"limit": 500}).text)["items"]
    assert _cli(sample, "studies") == api_studies
    api_best = _strict(
        client.get("/v1/best", params={"kernel": "attention", "shape": "mission"}).text
    )
    assert _cli(sample, "best", "--shape", "mission") == api_best
