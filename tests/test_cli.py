"""The CLI as a user runs it: a real subprocess, exit codes, one-line errors, JSON output."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from evotune.landscape import Landscape, load_landscape, save_landscape
from evotune.records import config_hash
from tests.conftest import HAS_CUDA


def evotune(
    *args: str, db: Path | None = None, env: dict[str, str] | None = None, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "COLUMNS": "200", **(env or {})}
    if db is not None:
        full_env["EVOTUNE_DB"] = f"sqlite:///{db}"
    return subprocess.run(
        [sys.executable, "-m", "evotune", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
    )


def test_shapes_lists_the_named_shapes() -> None:
    result = evotune("shapes", "--json")
    assert result.returncode == 0, result.stderr
    shapes = json.loads(result.stdout)
    assert shapes["mission"] == {
        "B": 32,
        "H": 8,
        "S": 512,
        "D": 64,
        "causal": True,
        "dtype": "float16",
    }


def test_kernels_and_strategies_list_what_exists() -> None:
    kernels = {k["kernel"]: k for k in json.loads(evotune("kernels", "--json").stdout)}
    assert sorted(kernels) == ["attention", "matmul"]  # one per file in search_spaces/
    assert "mission" in kernels["attention"]["shapes"]
    assert "BLOCK_M" in kernels["attention"]["parameters"]
    assert "BLOCK_K" in kernels["matmul"]["parameters"]
    strategies = json.loads(evotune("strategies", "--json").stdout)
    from evotune.search.registry import STRATEGIES

    assert [s["strategy"] for s in strategies] == list(STRATEGIES)
    assert [s["strategy"] for s in strategies if s["default"]] == ["evolution"]
    assert all(s["description"] and s["settings"] for s in strategies)


def test_landscape_merge_rebuilds_a_landscape_recorded_in_parts(tmp_path: Path) -> None:
    whole = load_landscape("tests/data/landscapes/mission-triton.json")
    parts = []
    for name, restrict in (("small", "BLOCK_M == 64"), ("large", "BLOCK_M != 64")):
        trials = [t for t in whole.trials if (t.config["BLOCK_M"] == 64) == (name == "small")]
        part = Landscape(
            whole.kernel,
            whole.shape,
            whole.environment,
            0,
            trials,
            f"{whole.restrict} and {restrict}",
        )
        parts.append(str(save_landscape(part, tmp_path / f"{name}.json")))
    result = evotune("landscape", "merge", str(tmp_path / "merged.json"), *parts)
    assert result.returncode == 0, result.stderr
    merged = load_landscape(tmp_path / "merged.json")
    assert merged.space_size == whole.space_size == 1056  # recounted over the union
    assert "1056 valid configs, 100.0% recorded" in result.stdout
    assert {config_hash(t.config) for t in merged.trials} == {
        config_hash(t.config) for t in whole.trials
    }
    assert merged.best_p50_us == whole.best_p50_us


def test_landscape_merge_across_kernel_sources_only_when_asked(tmp_path: Path) -> None:
    whole = load_landscape("tests/data/landscapes/mission-triton.json")
    parts = []
    for source, small in (("old", True), ("new", False)):
        trials = [t for t in whole.trials if (t.config["BLOCK_M"] == 64) == small]
        environment = {**whole.environment, "kernel_source_hash": source}
        part = Landscape(whole.kernel, whole.shape, environment, 0, trials, whole.restrict)
        parts.append(str(save_landscape(part, tmp_path / f"{source}.json")))
    out = tmp_path / "merged.json"
    refused = evotune("landscape", "merge", str(out), *parts)
    assert refused.returncode == 2 and "kernel_source_hash 'new'" in refused.stderr
    result = evotune("landscape", "merge", "--across-kernel-sources", str(out), *parts)
    assert result.returncode == 0, result.stderr
    merged = load_landscape(out)
    assert len(merged) == len(whole)
    assert merged.environment["kernel_source_hashes"] == ["old", "new"]


def test_landscape_merge_refuses_other_shapes_in_one_line(tmp_path: Path) -> None:
    result = evotune(
        "landscape",
        "merge",
        str(tmp_path / "m.json"),
        "tests/data/landscapes/mission-triton.json",
        "tests/data/landscapes/llama-d128-triton.json",
    )
    assert result.returncode == 2 and "cannot merge: part 2 is of shape" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "m.json").exists()


def test_malformed_space_file_is_a_user_error(tmp_path: Path) -> None:
    (tmp_path / "attention.yaml").write_text("kernel: attention\nparameters: 3\n")
    result = evotune("shapes", env={"EVOTUNE_SPACES": str(tmp_path)})
    assert result.returncode == 2
    assert "attention.yaml" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.skipif(HAS_CUDA, reason="checks the message on a host without a GPU")
def test_search_without_gpu_names_interpret(tmp_path: Path) -> None:
    result = evotune("search", "--shape", "tiny", db=tmp_path / "g.db")
    assert result.returncode == 2
    assert "no CUDA GPU" in result.stderr and "--interpret" in result.stderr


def test_interpreted_search_stores_resumes_and_serves_best(tmp_path: Path) -> None:
    db = tmp_path / "e2e.db"
    first = evotune("search", "--shape", "tiny", "--interpret", "--budget", "12", "--json", db=db)
    assert first.returncode == 0, first.stderr[-3000:]
    summary = json.loads(first.stdout)
    assert summary["total_trials"] == 12 and summary["trials_run"] == 12
    assert summary["state"] == "finished"
    # The interpreter is asked only for configs it can run (no gluon, TMA, inline PTX).
    assert summary["status_counts"] == {"ok": 12}
    # Piped, the progress is a few plain lines (on stderr beside --json).
    progress = first.stderr.strip().splitlines()
    assert progress[0] == f"study {summary['study_id']} (new) tiny: 0/12 trials done"
    assert len(progress) <= 12 and progress[-1] == "tiny: re-measuring the top 3 interleaved"

    trials = json.loads(evotune("trials", str(summary["study_id"]), "--json", db=db).stdout)
    assert len(trials) == 12
    assert len({t["config_hash"] for t in trials}) == 12  # never the same config twice
    assert all(t["status"] != "running" for t in trials)
    assert all(t["p50_us"] is None for t in trials if t["status"] != "ok")

    best = evotune("best", "--shape", "tiny", "--json", db=db)
    assert best.returncode == 0, best.stderr
    best_data = json.loads(best.stdout)
    assert isinstance(best_data["config"], dict) and best_data["config"]
    assert best_data["environment"]["interpreted"] is True
    assert best_data["study_id"] == summary["study_id"]

    # The same command again: the study is resumed, nothing is measured twice.
    again = json.loads(
        evotune(
            "search", "--shape", "tiny", "--interpret", "--budget", "12", "--json", db=db
        ).stdout
    )
    assert again["study_id"] == summary["study_id"] and again["resumed"] is True
    assert again["trials_run"] == 0 and again["total_trials"] == 12

    # A larger budget continues the same study with new configs only.
    more = json.loads(
        evotune(
            "search", "--shape", "tiny", "--interpret", "--budget", "14", "--json", db=db
        ).stdout
    )
    assert more["study_id"] == summary["study_id"] and more["total_trials"] == 14
    trials = json.loads(evotune("trials", str(summary["study_id"]), "--json", db=db).stdout)
    assert len({t["config_hash"] for t in trials}) == 14

    fresh = json.loads(
        evotune(
            "search", "--shape", "tiny", "--interpret", "--budget", "2", "--fresh", "--json", db=db
        ).stdout
    )
    assert fresh["study_id"] != summary["study_id"]
    studies = json.loads(evotune("studies", "--json", db=db).stdout)
    assert {s["id"] for s in studies} == {summary["study_id"], fresh["study_id"]}

    # Once the kernel source changes, its old configs are served only when asked for.
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE environments SET kernel_source_hash = 'an-older-source'")
    refused = evotune("best", "--shape", "tiny", "--json", db=db)
    assert refused.returncode == 2 and "--stale" in refused.stderr
    stale = json.loads(evotune("best", "--shape", "tiny", "--stale", "--json", db=db).stdout)
    assert stale["stale"] is True
    assert stale["environment"]["kernel_source_hash"] == "an-older-source"


def test_population_sets_the_batch_of_a_strategy_without_one(tmp_path: Path) -> None:
    result = evotune(
        "search", "--shape", "tiny", "--interpret", "--strategy", "random", "--population", "3",
        "--budget", "3", "--json", db=tmp_path / "p.db",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout)
    assert summary["total_trials"] == 3
    study = json.loads(evotune("studies", "--json", db=tmp_path / "p.db").stdout)[0]
    assert study["settings"]["batch_size"] == 3


def test_search_on_a_local_ray_cluster(tmp_path: Path) -> None:
    pytest.importorskip("ray", reason="the ray package is not installed")
    db = tmp_path / "ray.db"
    result = evotune(
        "search", "--shape", "tiny", "--interpret", "--ray", "local", "--ray-workers", "1",
        "--budget", "3", "--json", db=db,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout)
    assert summary["state"] == "finished" and summary["total_trials"] == 3
    assert summary["status_counts"].get("ok", 0) >= 1


ADHOC = "B=1,H=1,S=128,D=64,causal=true,dtype=float16"  # tiny with one head: seconds to search


def test_search_and_best_by_dims_seeded_from_the_nearest_tuned_shape(tmp_path: Path) -> None:
    db = tmp_path / "dims.db"
    tiny = evotune("search", "--shape", "tiny", "--interpret", "--budget", "4", "--json", db=db)
    assert tiny.returncode == 0, tiny.stderr[-3000:]
    result = evotune("search", "--dims", ADHOC, "--interpret", "--budget", "4", "--json", db=db)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout)
    assert summary["state"] == "finished" and summary["total_trials"] == 4

    best = json.loads(evotune("best", "--dims", ADHOC, "--json", db=db).stdout)
    shape = best["shape"]
    assert best["study_id"] == summary["study_id"] and shape["name"] is None
    assert shape["dims"] == {"B": 1, "H": 1, "S": 128, "D": 64, "causal": True, "dtype": "float16"}
    # tiny's best starts the ad-hoc search, as for a named shape.
    tiny_best = json.loads(evotune("best", "--shape", "tiny", "--json", db=db).stdout)["config"]
    trials = json.loads(evotune("trials", str(summary["study_id"]), "--json", db=db).stdout)
    assert tiny_best in [t["config"] for t in trials if t["operator"] == "seed"]
    # The dims of a named shape are that shape.
    named = evotune("best", "--dims", ADHOC.replace("H=1", "H=2"), "--json", db=db)
    assert json.loads(named.stdout)["study_id"] == json.loads(tiny.stdout)["study_id"]
    assert json.loads(named.stdout)["shape"]["name"] == "tiny"


# Grouped-query heads (2 query heads share 1 K/V head) and a KV cache (32 queries, 80 keys).
GQA = "B=1,H=2,Hkv=1,S=32,Skv=80,D=16,causal=true,dtype=float16"


def test_search_and_best_at_a_grouped_query_shape_with_fewer_queries_than_keys(
    tmp_path: Path,
) -> None:
    db = tmp_path / "gqa.db"
    result = evotune("search", "--dims", GQA, "--interpret", "--budget", "4", "--json", db=db)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout)
    assert summary["state"] == "finished" and summary["total_trials"] == 4
    assert summary["status_counts"] == {"ok": 4}
    trials = json.loads(evotune("trials", str(summary["study_id"]), "--json", db=db).stdout)
    assert {t["config"]["impl"] for t in trials} == {"triton"}
    # The dims in any order name the shape; it is stored with Hkv and Skv (not at default).
    reordered = ",".join(reversed(GQA.split(",")))
    best = evotune("best", "--dims", reordered, "--json", db=db)
    assert best.returncode == 0, best.stderr
    shape = json.loads(best.stdout)["shape"]
    assert shape["dims"] == {
        "B": 1, "H": 2, "Hkv": 1, "S": 32, "Skv": 80, "D": 16, "causal": True, "dtype": "float16"
    }  # fmt: skip


@pytest.fixture(scope="module")
def upgraded_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    db = tmp_path_factory.mktemp("cli") / "empty.db"
    assert evotune("db", "upgrade", db=db).returncode == 0
    return db


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "give --shape (one of tiny"),
        (("--shape", "tiny", "--dims", ADHOC), "give --shape or --dims, not both"),
        (("--dims", ADHOC.replace("B=1", "Q=1")), "--dims: unknown dim 'Q'"),
        (("--dims", ADHOC.replace("S=128", "S=long")), "--dims: S must be an integer"),
        (("--dims", ADHOC.replace("causal=true", "causal=maybe")), "causal must be true or false"),
        (("--dims", ADHOC.replace("float16", "int8")), "no tolerance declared for 'int8'"),
        (("--dims", "B=1,H=1"), "--dims: missing S, D, causal, dtype"),
        (("--dims", ADHOC + ",B=2"), "--dims: dim 'B' is given twice"),
        (("--dims", "B"), "--dims: 'B' is not NAME=VALUE"),
        (("--dims", GQA.replace("Hkv=1", "Hkv=3")), "--dims: shape: H=2, Hkv=3 break `Hkv >= 1"),
        (
            ("--dims", GQA.replace("Skv=80", "Skv=16")),
            "--dims: shape: S=32, Skv=16 break `S <= Skv`",
        ),
    ],
)
def test_bad_dims_are_one_line_and_leave_the_database_alone(
    upgraded_db: Path, args: tuple[str, ...], message: str
) -> None:
    db = upgraded_db
    before = db.read_bytes()
    for command in ("search", "best"):
        result = evotune(command, *args, "--interpret" if command == "search" else "--json", db=db)
        assert result.returncode == 2, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and message in result.stderr
    assert db.read_bytes() == before


def test_export_writes_the_published_bests_with_their_evidence(tmp_path: Path) -> None:
    from tests.api.conftest import H200, build_sample_db

    db = tmp_path / "sample.db"
    sample = build_sample_db(db)
    result = evotune("export", "--kernel", "attention", "--gpu", H200["gpu"], db=db)
    assert result.returncode == 0, result.stderr
    (entry,) = json.loads(result.stdout)  # the H200 tuned mission only
    assert entry["shape"] == "mission" and entry["gpu"] == H200["gpu"]
    assert entry["stale"] is False and entry["interpreted"] is False
    assert entry["p50_us"] > 0 and entry["shootout_p50_us"] > 0 and entry["kernel_source_hash"]
    everything = json.loads(evotune("export", "--interpreted", db=db).stdout)
    # One entry per published best, newest first; the running study published nothing.
    assert len(everything) == len([s for s in sample.studies if s.best_trial_id is not None])
    for args, message in (
        (("--format", "xml"), "--format 'xml': one of json, python"),
        (("--gpu", "NVIDIA B200"), "nothing to export"),
        (("--output", str(tmp_path / "no" / "such.json")), "--output: cannot write"),
    ):
        refused = evotune("export", *args, db=db)
        assert refused.returncode == 2 and message in refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1
