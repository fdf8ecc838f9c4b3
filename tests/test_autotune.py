"""`evotune.autotune` in Triton's CPU interpreter: misses, in-process tuning, stored winners
served to a new process, failing and wrong configs, constraints, and a changed kernel."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from importlib.util import module_from_spec, spec_from_file_location
from pathlib import Path
from typing import Any

import pytest
import torch
import triton
from sqlalchemy import select
from sqlalchemy.orm import joinedload

import evotune
from evotune.autotuning import Autotuned
from evotune.errors import UserError
from evotune.storage import BestConfig, Study, Trial, open_database
from tests.autotune_kernels import accumulate

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = {"BLOCK": [32, 64, 128, 256], "num_warps": [2, 4]}
FIRST = {"BLOCK": 32, "num_warps": 2}
N = 700


def launch(kernel: Autotuned, n: int = N) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Run `y += x` on fresh inputs; returns x, y before, y after."""
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(n, generator=gen), torch.randn(n, generator=gen)
    before = y.clone()
    kernel[lambda meta: (triton.cdiv(n, meta["BLOCK"]),)](x, y, n)
    return x, before, y


def stored(url: str) -> tuple[list[Study], list[Trial], list[BestConfig]]:
    loaded = [joinedload(Study.kernel), joinedload(Study.shape), joinedload(Study.environment)]
    db = open_database(url)
    try:
        with db.session() as session:
            return (
                list(session.scalars(select(Study).options(*loaded).order_by(Study.id))),
                list(session.scalars(select(Trial).order_by(Trial.study_id, Trial.number))),
                list(session.scalars(select(BestConfig))),
            )
    finally:
        db.dispose()


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'tune.db'}"


@pytest.fixture
def tuned(url: str) -> tuple[Autotuned, torch.Tensor, torch.Tensor, torch.Tensor]:
    kernel = evotune.autotune(configs=CONFIGS, key=["n"], store=url, tune=True)(accumulate)
    return (kernel, *launch(kernel))


def test_a_miss_launches_the_first_config_and_is_recorded(url: str) -> None:
    kernel = evotune.autotune(configs=CONFIGS, key=["n"], store=url)(accumulate)
    x, before, y = launch(kernel)
    assert kernel.last_config == FIRST
    torch.testing.assert_close(y, before + x)
    launch(kernel)
    launch(evotune.autotune(configs=CONFIGS, key=["n"], store=url)(accumulate))  # a new object
    studies, trials, bests = stored(url)
    assert [(s.state, s.kernel.name) for s in studies] == [
        ("pending", "tests.autotune_kernels.accumulate")
    ]
    assert studies[0].shape.dims == {"n": N, "dtypes": "float32,float32"}
    assert studies[0].environment.interpreted
    assert not trials and not bests


def test_tune_stores_every_trial_publishes_the_winner_and_restores_arguments(
    url: str, tuned: tuple[Autotuned, torch.Tensor, torch.Tensor, torch.Tensor]
) -> None:
    kernel, x, before, y = tuned
    torch.testing.assert_close(y, before + x)  # every trial's `y += x` was undone
    studies, trials, bests = stored(url)
    assert [s.state for s in studies] == ["finished"]
    assert len(trials) == 8  # the whole space: fewer valid configs than the budget
    assert trials[0].config == FIRST  # the reference is measured first
    assert {t.status for t in trials} == {"ok", "compile_error"}
    ok = [t for t in trials if t.status == "ok"]
    assert all(t.p50_us and t.n_runs == 3 for t in ok)
    fastest = min(ok, key=lambda t: t.p50_us or 0.0)
    assert [b.config for b in bests] == [fastest.config] == [kernel.last_config]
    assert studies[0].best_trial_id == fastest.id


def test_a_new_process_launches_the_stored_winner(
    url: str, tuned: tuple[Autotuned, torch.Tensor, torch.Tensor, torch.Tensor]
) -> None:
    published = stored(url)[2][0].config
    script = textwrap.dedent(
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
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[-1]) == published
    studies, trials, _ = stored(url)
    assert len(studies) == 1 and len(trials) == 8  # a hit records nothing


def test_a_config_that_fails_to_compile_is_stored_and_never_wins(
    url: str, tuned: tuple[Autotuned, torch.Tensor, torch.Tensor, torch.Tensor]
) -> None:
    _, trials, bests = stored(url)
    failed = [t for t in trials if t.config["BLOCK"] == 256]
    assert len(failed) == 2
    assert all(t.status == "compile_error" and "AssertionError" in (t.error or "") for t in failed)
    assert all(t.p50_us is None for t in failed)
    assert bests[0].config["BLOCK"] != 256


def test_a_wrong_config_fails_the_gate_and_never_wins(url: str) -> None:
    configs = {"BLOCK": [64, 128], "BUG": [0, 1]}
    kernel = evotune.autotune(configs=configs, key=["n"], store=url, tune=True)(accumulate)
    x, before, y = launch(kernel)
    torch.testing.assert_close(y, before + x)
    _, trials, bests = stored(url)
    wrong = [t for t in trials if t.config["BUG"] == 1]
    assert [t.status for t in wrong] == ["wrong_result"] * 2
    assert all("argument 'y_ptr'" in (t.error or "") for t in wrong)
    assert bests[0].config["BUG"] == 0 and kernel.last_config == bests[0].config


def test_constraints_exclude_configs(url: str) -> None:
    rule = "BLOCK * num_warps <= 128 and BLOCK < n // 8"  # n // 8 = 87: BLOCK 32 or 64
    kernel = evotune.autotune(configs=CONFIGS, key=["n"], store=url, tune=True, constraints=[rule])(
        accumulate
    )
    launch(kernel)
    _, trials, _ = stored(url)
    assert sorted((t.config["BLOCK"], t.config["num_warps"]) for t in trials) == [
        (32, 2),
        (32, 4),
        (64, 2),
    ]
    first_excluded = evotune.autotune(
        configs=CONFIGS, key=["n"], store=url, constraints=["BLOCK >= 64"]
    )(accumulate)
    launch(first_excluded, n=64)  # a miss (other key) launches the first *valid* config
    assert first_excluded.last_config == {"BLOCK": 64, "num_warps": 2}


def _load_variant(folder: Path, body: str) -> Any:
    """A kernel `changed.scale` loaded from its own file: same name, the given body."""
    folder.mkdir()
    path = folder / "changed.py"
    path.write_text(
        "import triton\nimport triton.language as tl\n\n\n@triton.jit\n"
        "def scale(x_ptr, y_ptr, n, BLOCK: tl.constexpr):\n"
        "    offsets = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)\n"
        "    mask = offsets < n\n"
        f"    tl.store(y_ptr + offsets, {body}, mask=mask)\n"
    )
    spec = spec_from_file_location("changed", path)
    assert spec is not None and spec.loader is not None
    module = module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.scale


def test_a_changed_kernel_source_does_not_get_the_old_best(url: str, tmp_path: Path) -> None:
    configs = {"BLOCK": [32, 128]}
    old = _load_variant(tmp_path / "v1", "tl.load(x_ptr + offsets, mask=mask) * 2")
    new = _load_variant(tmp_path / "v2", "tl.load(x_ptr + offsets, mask=mask) * 3")
    decorate: Callable[..., Callable[[Any], Autotuned]] = evotune.autotune
    tuned = decorate(configs=configs, key=["n"], store=url, tune=True)(old)
    launch(tuned)
    assert tuned.last_config == {"BLOCK": 128}  # 5 programs beat 22 in the interpreter
    changed = decorate(configs=configs, key=["n"], store=url)(new)
    x, _, y = launch(changed)
    assert changed.last_config == {"BLOCK": 32}  # a miss: the old source's best is not served
    torch.testing.assert_close(y, x * 3)
    studies, _, _ = stored(url)
    assert [s.state for s in studies] == ["finished", "pending"]
    assert studies[0].environment_id != studies[1].environment_id


def test_a_list_of_triton_configs_is_one_categorical_knob(url: str) -> None:
    configs = [triton.Config({"BLOCK": 128}, num_warps=2), triton.Config({"BLOCK": 32})]
    kernel = evotune.autotune(configs=configs, key=["n"], store=url, tune=True)(accumulate)
    x, before, y = launch(kernel)
    torch.testing.assert_close(y, before + x)
    _, trials, bests = stored(url)
    labels = [t.config["config"] for t in trials]  # Config.all_kwargs(), in its order
    assert len(labels) == 2
    assert labels[0].startswith("BLOCK=128, num_warps=2,") and "num_stages=3" in labels[0]
    assert labels[1].startswith("BLOCK=32, num_warps=4,")
    assert kernel.last_config is not None and kernel.last_config["BLOCK"] in (32, 128)
    assert bests[0].config["config"].startswith(f"BLOCK={kernel.last_config['BLOCK']},")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"configs": {"BLOCK": [32]}, "key": ["m"]}, "names no argument"),
        ({"configs": {"BLOCKS": [32]}, "key": ["n"]}, "neither an argument"),
        ({"configs": {"BLOCK": [32]}, "key": ["n"], "constraints": ["BLOCK <"]}, "constraints"),
        ({"configs": CONFIGS, "key": ["n"], "store": "http://localhost:8000"}, "service"),
    ],
)
def test_bad_options_are_refused_at_decoration(options: dict[str, Any], message: str) -> None:
    with pytest.raises(UserError, match=message):
        evotune.autotune(**options)(accumulate)
