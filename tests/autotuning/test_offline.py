"""`evotune tune-pending` in Triton's CPU interpreter: a recorded miss tuned offline, a new
process launching its winner, and one reason per miss that cannot be tuned here."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import torch
import triton

import evotune
from evotune.autotuning import Autotuned
from evotune.autotuning.offline import Outcome, tune_pending
from evotune.autotuning.recipe import RECIPE_KEY
from evotune.autotuning.store import OFFLINE_NOTE, Target, TuningStore, open_store
from evotune.errors import UserError
from evotune.fingerprint import device_environment
from evotune.source_hash import function_source_hash
from evotune.space import Shape
from evotune.storage import BestConfig, SqlTrialStore, Study, Trial, open_database
from tests.autotune_kernels import accumulate, gather, gather_inputs

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = {"BLOCK": [32, 64, 128, 256], "num_warps": [2, 4]}
N = 300
KERNEL = "tests.autotune_kernels.accumulate"


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'tune.db'}"


def miss(url: str, n: int = N, **options: Any) -> Autotuned:
    """Launch `y += x` once through a decorator that does not tune: a recorded miss."""
    kernel = evotune.autotune(configs=CONFIGS, key=["n"], store=url, **options)(accumulate)
    x, y = torch.randn(n), torch.zeros(n)
    kernel[lambda meta: (triton.cdiv(n, meta["BLOCK"]),)](x, y, n)
    assert torch.equal(y, x)
    return kernel


def studies(url: str) -> list[tuple[str, str | None, int, bool]]:
    """(state, note, trials, published) of every study, in id order."""
    db = open_database(url)
    try:
        with db.session() as session:
            rows = []
            for study in session.query(Study).order_by(Study.id):
                trials = session.query(Trial).filter_by(study_id=study.id).count()
                published = session.query(BestConfig).filter_by(study_id=study.id).count() > 0
                rows.append((study.state, study.note, trials, published))
            return rows
    finally:
        db.dispose()


def run(url: str, **options: Any) -> list[Outcome]:
    db = open_database(url)
    try:
        return tune_pending(SqlTrialStore(db), **options)
    finally:
        db.dispose()


def _python(script: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": str(ROOT), "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_a_recorded_miss_is_tuned_offline_and_a_new_process_launches_the_winner(
    url: str,
) -> None:
    miss(url)
    tuned = _python(
        f"""
        from evotune.cli import main
        import sys
        sys.argv = ["evotune", "tune-pending", "--interpret", "--db", {url!r}]
        main()
        """
    )
    assert tuned.returncode == 0, tuned.stderr
    line, summary = tuned.stdout.strip().splitlines()
    assert line.startswith(f"study 1 {KERNEL} (n={N} dtypes=float32,float32): tuned, 8 trials")
    assert summary == "1 pending: 1 tuned"
    assert studies(url) == [("finished", OFFLINE_NOTE, 8, True)]  # the pending study, tuned

    launched = _python(
        f"""
        import json, torch, triton, evotune
        from tests.autotune_kernels import accumulate
        kernel = evotune.autotune(configs={CONFIGS!r}, key=["n"], store={url!r})(accumulate)
        x, y = torch.randn({N}), torch.zeros({N})
        kernel[lambda meta: (triton.cdiv({N}, meta["BLOCK"]),)](x, y, {N})
        assert torch.equal(y, x)
        print(json.dumps(kernel.last_config))
        """
    )
    assert launched.returncode == 0, launched.stderr
    winner = json.loads(launched.stdout.splitlines()[-1])
    assert f"best {json.dumps(winner)}, p50 " in line
    assert winner["BLOCK"] != 256  # BLOCK 256 fails to compile: never the winner
    assert len(studies(url)) == 1 and run(url) == []  # a hit records nothing: nothing pending


def test_every_trial_goes_through_the_gate(url: str) -> None:
    kernel = evotune.autotune(configs={"BLOCK": [64, 128], "BUG": [0, 1]}, key=["n"], store=url)(
        accumulate
    )
    x, y = torch.randn(N), torch.zeros(N)
    kernel[lambda meta: (triton.cdiv(N, meta["BLOCK"]),)](x, y, N)
    (outcome,) = run(url)
    assert outcome.result == "tuned" and outcome.config is not None
    assert outcome.config["BUG"] == 0
    db = open_database(url)
    try:
        with db.session() as session:
            statuses = {
                (t.config["BUG"], t.status) for t in session.query(Trial).filter_by(study_id=1)
            }
    finally:
        db.dispose()
    assert statuses == {(0, "ok"), (1, "wrong_result")}


def test_an_inputs_hook_builds_what_random_contents_cannot(url: str) -> None:
    configs = {"BLOCK": [32, 64]}
    kernel = evotune.autotune(configs=configs, key=["n"], store=url, inputs=gather_inputs)(gather)
    x, idx, y = torch.randn(N), torch.arange(N).flip(0), torch.zeros(N)
    kernel[lambda meta: (triton.cdiv(N, meta["BLOCK"]),)](x, idx, y, N)
    (outcome,) = run(url)
    assert (outcome.result, outcome.trials) == ("tuned", 2)


def _target(env: dict[str, Any], n: int = N) -> Target:
    return Target(KERNEL, Shape(None, {"n": n, "dtypes": "float32,float32"}), env)


def _interpreted_env(source_hash: str | None = None) -> dict[str, Any]:
    source = source_hash or function_source_hash(accumulate.fn)
    return device_environment(source, interpreted=True)


def _recipe(url: str) -> dict[str, Any]:
    """The recipe a real miss records (taken from its study)."""
    miss(url, n=N + 1)
    (pending,) = TuningStore(open_store(url)).pending()
    assert pending.recipe is not None
    return pending.recipe


def test_a_miss_that_cannot_be_tuned_here_is_one_line(url: str, tmp_path: Path) -> None:
    recipe = _recipe(f"sqlite:///{tmp_path / 'other.db'}")
    store = TuningStore(open_store(url))
    gpu = {**_interpreted_env(), "gpu": "NVIDIA H100", "interpreted": False, "sm_count": 132}
    store.record_miss(_target(gpu, 1), 8, 0, recipe)
    store.record_miss(_target(_interpreted_env("0123456789abcdef"), 2), 8, 0, recipe)
    store.record_miss(_target(_interpreted_env(), 3), 8, 0, {"refused": "the kernel is odd"})
    store.record_miss(_target({**_interpreted_env(), "triton": "0.1"}, 4), 8, 0, recipe)
    gone = {**recipe, "kernel": {"module": "tests.autotune_kernels", "qualname": "gone"}}
    store.record_miss(_target(_interpreted_env(), 5), 8, 0, gone)
    lines = [o.line() for o in run(url)]
    assert [line.split(": ", 1)[0] for line in lines] == [
        f"study {i} {KERNEL} (n={i} dtypes=float32,float32)" for i in range(1, 6)
    ]
    reasons = [line.split(": ", 2)[2] for line in lines]
    assert reasons[0] == (
        "recorded on GPU NVIDIA H100; rerun on a host with it, without --interpret (and "
        "without TRITON_INTERPRET=1)"
    )
    assert reasons[1].startswith("the kernel's source changed since the miss")
    assert reasons[2] == "the kernel is odd"
    assert reasons[3].startswith("recorded in another environment (triton 0.1 here ")
    assert (
        reasons[4]
        == "the kernel tests.autotune_kernels.gone is gone: the module has no such name now"
    )
    assert [s[0] for s in studies(url)] == ["pending"] * 5


def test_a_miss_recorded_without_a_recipe_says_to_launch_again(url: str) -> None:
    miss(url)
    db = open_database(url)
    with db.session() as session:
        study = session.get(Study, 1)
        assert study is not None
        study.settings = {k: v for k, v in study.settings.items() if k != RECIPE_KEY}
    (outcome,) = run(url)
    assert outcome.result == "skipped" and "launch the program once more" in (outcome.reason or "")
    miss(url)  # a launch of this evotune adds the recipe to the pending study
    assert run(url)[0].result == "tuned"


def test_dry_run_and_kernel_filter(url: str) -> None:
    miss(url)
    evotune.autotune(configs={"BLOCK": [32]}, key=["n"], store=url)(gather)[(1,)](
        torch.randn(4), torch.arange(4), torch.zeros(4), 4
    )
    assert [o.result for o in run(url, dry_run=True)] == ["ready", "ready"]
    assert [s[0] for s in studies(url)] == ["pending", "pending"]
    (only,) = run(url, kernel="tests.autotune_kernels.gather")
    assert only.kernel == "tests.autotune_kernels.gather" and only.result == "tuned"
    assert [s[0] for s in studies(url)] == ["pending", "finished"]
    with pytest.raises(UserError, match="no kernel 'accumulate' in the database"):
        run(url, kernel="accumulate")


def test_an_interrupted_tune_is_pending_again(url: str) -> None:
    miss(url)
    store = TuningStore(open_store(url))
    target = _target(_interpreted_env())
    study_id = store.start_study(target, 8, 0, OFFLINE_NOTE)
    store.finish_study(study_id, "interrupted")  # as Ctrl-C leaves it
    (pending,) = store.pending()
    assert (pending.study_id, pending.state) == (study_id, "interrupted")
    (outcome,) = run(url, budget=3)
    assert (outcome.result, outcome.trials, outcome.study_id) == ("tuned", 3, 2)
    assert [s[0] for s in studies(url)] == ["interrupted", "finished"]
    assert store.pending() == []


def test_the_cli_reports_nothing_pending_and_refuses_an_unknown_kernel(url: str) -> None:
    from typer.testing import CliRunner

    from evotune.cli import app

    runner = CliRunner()
    result = runner.invoke(app, ["tune-pending", "--db", url])
    assert result.exit_code == 0 and result.stdout.strip() == "nothing pending"
    miss(url)
    result = runner.invoke(app, ["tune-pending", "--db", url, "--dry-run", "--json"])
    assert result.exit_code == 0
    (entry,) = json.loads(result.stdout)
    assert entry["result"] == "ready" and entry["study_id"] == 1
    refused = subprocess.run(
        [sys.executable, "-m", "evotune", "tune-pending", "--db", url, "--kernel", "nope"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert refused.returncode == 2 and refused.stdout == ""
    assert refused.stderr.strip().splitlines() == [
        "error: no kernel 'nope' in the database (a decorated kernel is named <module>.<qualified "
        "name>, as `evotune studies` shows)"
    ]


@pytest.mark.gpu
def test_a_miss_on_a_gpu_is_tuned_offline_on_that_gpu(url: str) -> None:
    n = 1 << 20
    grid = lambda meta: (triton.cdiv(n, meta["BLOCK"]),)  # noqa: E731
    kernel = evotune.autotune(configs=CONFIGS, key=["n"], store=url)(accumulate)
    x = torch.randn(n, device="cuda")
    kernel[grid](x, torch.zeros_like(x), n)
    (outcome,) = run(url)
    assert (outcome.result, outcome.trials) == ("tuned", 8)  # BLOCK 256 fails to compile
    assert studies(url) == [("finished", OFFLINE_NOTE, 8, True)]
    again = evotune.autotune(configs=CONFIGS, key=["n"], store=url)(accumulate)
    y = torch.zeros_like(x)
    again[grid](x, y, n)
    assert again.last_config == outcome.config and torch.equal(y, x)
