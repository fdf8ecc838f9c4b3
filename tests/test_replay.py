"""ReplayEvaluator: answers trial requests by lookup in a landscape."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from evotune.errors import UserError
from evotune.landscape import Landscape, LandscapeTrial
from evotune.pool_model import PoolModel
from evotune.records import TrialRequest, TrialStatus
from evotune.replay import ReplayEvaluator
from evotune.space import Shape
from evotune.worker.evaluator import Evaluator

DIMS = {"S": 128, "D": 64}
MISSION_TRITON = "tests/data/landscapes/mission-triton.json"


def landscape() -> Landscape:
    trials = [
        LandscapeTrial(
            {"BLOCK": 64}, TrialStatus.OK, p50_us=12.5, p20_us=12.0, p80_us=13.0, n_runs=30
        ),
        LandscapeTrial({"BLOCK": 128}, TrialStatus.OUT_OF_RESOURCES, error="shared memory"),
    ]
    return Landscape(
        "attention", Shape("s", dict(DIMS)), {"gpu": "H100", "triton": "3.6.0"}, 3, trials
    )


def request(trial_id: int, config: dict, **kw: object) -> TrialRequest:
    base = {"kernel": "attention", "dims": dict(DIMS), "seed": 0, "tolerance": {"atol": 0.01}}
    base.update(kw)
    return TrialRequest(trial_id=trial_id, config=config, **base)  # type: ignore[arg-type]


def test_answers_by_lookup_and_marks_missing_configs_invalid() -> None:
    replay = ReplayEvaluator(landscape())
    evaluator: Evaluator = replay  # it satisfies the protocol
    results = list(
        evaluator.evaluate(
            [request(1, {"BLOCK": 64}), request(2, {"BLOCK": 128}), request(3, {"BLOCK": 32})]
        )
    )
    assert [r.trial_id for r in results] == [1, 2, 3]
    ok, oor, missing = results
    assert ok.status is TrialStatus.OK and (ok.p50_us, ok.p20_us, ok.p80_us) == (12.5, 12.0, 13.0)
    assert ok.n_runs == 30
    assert oor.status is TrialStatus.OUT_OF_RESOURCES and oor.p50_us is None
    assert oor.error == "shared memory"
    assert missing.status is TrialStatus.INVALID and missing.error == "not in landscape"
    assert (replay.lookups, replay.misses) == (3, 1)


def test_shootout_and_environment() -> None:
    replay = ReplayEvaluator(landscape())
    results = replay.shootout([request(5, {"BLOCK": 64}), request(4, {"BLOCK": 64})], rounds=3)
    assert [(r.trial_id, r.p50_us) for r in results] == [(5, 12.5), (4, 12.5)]
    env = replay.environment()
    assert env["replay"] is True and env["gpu"] == "H100"
    replay.close()


def test_on_a_simulated_pool_results_come_on_its_clock() -> None:
    """Compiles take the landscape's recorded time where it has one, else the model's; a
    config the landscape lacks is refused in the compile pool; one GPU runs the rest in the
    order they compiled."""
    recorded = Landscape(
        "attention",
        Shape("s", dict(DIMS)),
        {"gpu": "H100"},
        3,
        [
            LandscapeTrial({"BLOCK": 64}, TrialStatus.OK, p50_us=12.5, compile_s=3.0),
            LandscapeTrial({"BLOCK": 128}, TrialStatus.OK, p50_us=10.0),
        ],
    )
    pool = PoolModel(gpus=1, compilers=2, compile_s=1.0, gpu_s=0.5, refusal_s=0.25)
    replay = ReplayEvaluator(recorded, pool)
    assert (replay.workers, replay.capacity, replay.now) == (1, 3, 0.0)
    replay.submit([request(1, {"BLOCK": 64}), request(2, {"BLOCK": 128})])
    replay.submit([request(3, {"BLOCK": 32})])
    arrivals = []
    while results := replay.collect():
        (result,) = results
        arrivals.append((result.trial_id, result.status, replay.now))
    assert arrivals == [
        (3, TrialStatus.INVALID, 1.25),  # refused by the compiler free at 1.0
        (2, TrialStatus.OK, 1.5),  # compiled at 1.0 (the model's 1 s), ran 0.5 s
        (1, TrialStatus.OK, 3.5),  # compiled at 3.0 (recorded), ran 0.5 s
    ]


def test_another_shape_or_kernel_is_a_user_error() -> None:
    replay = ReplayEvaluator(landscape())
    with pytest.raises(UserError, match="shape"):
        list(replay.evaluate([request(1, {"BLOCK": 64}, dims={"S": 256, "D": 64})]))
    with pytest.raises(UserError, match="kernel"):
        list(replay.evaluate([request(1, {"BLOCK": 64}, kernel="matmul")]))


# Runs an evotune command with imports of the kernel plug-ins, torch and triton recorded;
# prints them last as a JSON list.
_WATCH_IMPORTS = """
import json, sys
seen = []
class Watch:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("kernels", "torch", "triton"):
            seen.append(name)
        return None
sys.meta_path.insert(0, Watch())
sys.argv = ["evotune", *sys.argv[1:]]
from evotune.cli import main
try:
    main()
finally:
    print(json.dumps(seen))
"""


@pytest.mark.parametrize(
    "args",
    [
        ("compare", "--landscape", MISSION_TRITON, "--seeds", "2", "--strategies",
         "evolution,random", "--max-evals", "20", "--json"),
        ("search", "--shape", "mission", "--replay", MISSION_TRITON, "--budget", "8",
         "--restrict", "impl == 'triton'", "--db", "sqlite:///{tmp}/replay.db"),
        # The workers load the plug-in and report its flops with their results.
        ("search", "--shape", "tiny", "--interpret", "--budget", "3", "--json",
         "--db", "sqlite:///{tmp}/interpret.db"),
    ],
)  # fmt: skip
def test_the_parent_imports_no_kernel_module_nor_torch(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    """A replay must run where the kernels cannot: no GPU stack, e.g. a laptop or CI. A
    measured search leaves the kernel to its worker processes (and still gives TFLOPS)."""
    command = [a.replace("{tmp}", str(tmp_path)) for a in args]
    result = subprocess.run(
        [sys.executable, "-c", _WATCH_IMPORTS, *command],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    *output, imported = result.stdout.strip().splitlines()
    assert json.loads(imported) == []
    if "--interpret" in args:
        assert json.loads("\n".join(output))["best_tflops"] > 0
