"""Landscape files: save, load, look up by config hash, refuse malformed files."""

from __future__ import annotations

import gzip
import json
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from evotune.errors import LandscapeFileError
from evotune.landscape import (
    Landscape,
    LandscapeTrial,
    fit_to_space,
    import_measurements,
    load_landscape,
    merge_landscapes,
    save_landscape,
)
from evotune.records import TrialStatus, config_hash
from evotune.search.grid import valid_configs
from evotune.space import Shape
from tests.search.toy import TOY_DIMS, toy_landscape, toy_space


def make() -> Landscape:
    trials = [
        LandscapeTrial(
            {"a": 1, "b": "x"}, TrialStatus.OK, p50_us=10.0, p20_us=9.5, n_runs=20, compile_s=1.25
        ),
        LandscapeTrial({"a": 2, "b": "x"}, TrialStatus.OK, p50_us=10.15),
        LandscapeTrial({"a": 3, "b": "x"}, TrialStatus.OK, p50_us=12.0),
        LandscapeTrial({"a": 4, "b": "y"}, TrialStatus.OUT_OF_RESOURCES, error="smem"),
    ]
    shape = Shape("mission", {"B": 32, "S": 512, "causal": True})
    return Landscape("attention", shape, {"gpu": "H100"}, 5, trials)


def test_round_trip(tmp_path: Path) -> None:
    path = save_landscape(make(), tmp_path / "sub" / "l.json")
    raw = json.loads(path.read_text())
    assert {"kernel", "shape", "environment", "space_size", "trials"} <= set(raw)
    assert raw["trials"][3] == {
        "config": {"a": 4, "b": "y"},
        "status": "out_of_resources",
        "error": "smem",
    }
    assert raw["trials"][0]["compile_s"] == 1.25  # what a simulated pool's clock takes
    loaded = load_landscape(path)
    assert loaded.to_dict() == make().to_dict()
    assert loaded.shape == Shape("mission", {"B": 32, "S": 512, "causal": True})
    assert loaded.space_size == 5 and len(loaded) == 4


def test_gzipped_round_trip_is_byte_stable(tmp_path: Path) -> None:
    first = save_landscape(make(), tmp_path / "a.json.gz")
    second = save_landscape(load_landscape(first), tmp_path / "b.json.gz")
    assert gzip.decompress(first.read_bytes()).startswith(b'{"environment"')
    assert first.read_bytes() == second.read_bytes()
    assert load_landscape(second).to_dict() == make().to_dict()


@pytest.mark.parametrize(
    "content",
    [b"{}", gzip.compress(b'{"kernel": "k"}')[:-12], b"\xff\xfe not text"],
    ids=["not-gzip", "truncated", "not-utf8"],
)
def test_unreadable_bytes_are_one_clear_error(tmp_path: Path, content: bytes) -> None:
    name = "bad.json" if content.startswith(b"\xff") else "bad.json.gz"
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(LandscapeFileError, match="cannot read landscape"):
        load_landscape(path)


def test_lookup_by_config_hash() -> None:
    landscape = make()
    hit = landscape.lookup({"b": "x", "a": 2})  # key order does not matter
    assert hit is not None and hit.p50_us == 10.15
    assert landscape.lookup({"a": 2, "b": "y"}) is None
    assert {"a": 4, "b": "y"} in landscape
    assert landscape.lookup({"a": 4, "b": "y"}).status is TrialStatus.OUT_OF_RESOURCES  # type: ignore[union-attr]


def test_best_and_within_target() -> None:
    landscape = make()
    assert landscape.best_p50_us == 10.0
    assert [t.config["a"] for t in landscape.within(0.02)] == [1, 2]
    assert [t.config["a"] for t in landscape.within(0.0)] == [1]


def test_unknown_trial_keys_survive(tmp_path: Path) -> None:
    data = make().to_dict()
    data["trials"][0]["samples_us"] = [1.0, 2.0]
    path = tmp_path / "l.json"
    path.write_text(json.dumps(data))
    again = load_landscape(save_landscape(load_landscape(path), tmp_path / "m.json"))
    assert again.trials[0].extra == {"samples_us": [1.0, 2.0]}


def test_from_records_leaves_out_running_rows() -> None:
    rows: list[dict[str, Any]] = [
        {"config": {"a": 1}, "status": TrialStatus.OK, "p50_us": 3.0, "trial_id": 7},
        {"config": {"a": 2}, "status": "running"},
        {"config": {"a": 3}, "status": "compile_error", "error": "ptxas", "compile_s": 2.5},
    ]
    landscape = Landscape.from_records("k", Shape(None, {"S": 1}), {}, 3, rows)
    assert [t.status for t in landscape.trials] == [TrialStatus.OK, TrialStatus.COMPILE_ERROR]
    assert [t.compile_s for t in landscape.trials] == [None, 2.5]
    assert landscape.trials[0].extra == {}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{", "not valid JSON"),
        ("[]", "expected a mapping"),
        ('{"kernel": "k", "shape": {"dims": {}}}', "missing 'trials'"),
        (
            '{"kernel": "k", "shape": {"dims": {}}, "trials": [{"config": {}, "status": "meh"}]}',
            "unknown status",
        ),
        (
            '{"kernel": "k", "shape": {"dims": {}}, "trials": [{"config": {}, "status": "ok"}]}',
            "positive 'p50_us'",
        ),
        ('{"kernel": "k", "shape": 3, "trials": []}', "'shape' must be"),
    ],
)
def test_malformed_files_are_one_clear_error(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(LandscapeFileError, match=message):
        load_landscape(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(LandscapeFileError, match="cannot read landscape"):
        load_landscape(tmp_path / "nope.json")


def _part(impl: str, restrict: str | None, **environment: Any) -> Landscape:
    whole = toy_landscape()
    trials = [t for t in whole.trials if t.config["impl"] == impl]
    env = {"gpu": "H200", "kernel_source_hash": "k1", "driver": "580", **environment}
    return Landscape("toy", whole.shape, env, len(trials), trials, restrict)


def test_merge_joins_sub_spaces_and_counts_their_union() -> None:
    first = _part("a", "impl == 'a'")
    second = _part("b", "impl == 'b'", driver="590")  # the driver may differ
    merged = merge_landscapes([first, second], toy_space())
    assert merged.restrict == "(impl == 'a') or (impl == 'b')"
    assert len(merged) == merged.space_size == len(toy_landscape())
    assert merged.environment == first.environment
    assert merged.best_p50_us == toy_landscape().best_p50_us


def test_merge_keeps_the_first_record_of_a_config() -> None:
    first, again = _part("a", "impl == 'a'"), _part("a", "impl == 'a'")
    again.trials[0] = LandscapeTrial(again.trials[0].config, TrialStatus.OK, p50_us=999.0)
    merged = merge_landscapes([first, again], toy_space())
    assert merged.trials == first.trials and merged.restrict == "impl == 'a'"
    assert merged.space_size == len(first.trials)  # one sub-space, counted as such
    assert merge_landscapes([first, _part("b", None)], toy_space()).restrict is None


def test_merge_across_kernel_sources_lists_every_source() -> None:
    first, second = _part("a", "impl == 'a'"), _part("b", "impl == 'b'", kernel_source_hash="k2")
    merged = merge_landscapes([first, second], toy_space(), across_kernel_sources=True)
    assert len(merged) == merged.space_size == len(toy_landscape())
    assert merged.environment["kernel_source_hash"] == "k1"
    assert merged.environment["kernel_source_hashes"] == ["k1", "k2"]
    # Merged again with a third source, the list grows; one source needs no list.
    third = _part("b", "impl == 'b'", kernel_source_hash="k3")
    again = merge_landscapes([merged, third], toy_space(), across_kernel_sources=True)
    assert again.environment["kernel_source_hashes"] == ["k1", "k2", "k3"]
    same = merge_landscapes([first, _part("b", "impl == 'b'")], toy_space(), True)
    assert "kernel_source_hashes" not in same.environment
    with pytest.raises(LandscapeFileError, match="cannot merge: part 2 was recorded with gpu"):
        merge_landscapes([first, _part("b", None, gpu="H100")], toy_space(), True)


@pytest.mark.parametrize(
    ("other", "message"),
    [
        (_part("b", None, gpu="H100"), "part 2 was recorded with gpu 'H100', part 1 with 'H200'"),
        (_part("b", None, kernel_source_hash="k2"), "kernel_source_hash"),
        (Landscape("toy", Shape("x", {"S": 32}), {"gpu": "H200"}, 1, []), "part 2 is of shape"),
        (Landscape("gemm", Shape("s128", {"S": 128}), {}, 1, []), "part 2 is of kernel 'gemm'"),
    ],
)
def test_merge_refuses_parts_that_do_not_belong_together(other: Landscape, message: str) -> None:
    with pytest.raises(LandscapeFileError, match=f"^cannot merge: .*{re.escape(message)}"):
        merge_landscapes([_part("a", None), other], toy_space())


def test_merge_needs_parts() -> None:
    with pytest.raises(LandscapeFileError, match="cannot merge: no landscapes given"):
        merge_landscapes([], toy_space())


def _toy_with(changes: dict[int, dict[str, Any]], dims: dict[str, Any] | None = None) -> Landscape:
    """The toy landscape with some trials' config values replaced (None: the knob removed)."""
    landscape = toy_landscape()
    trials = list(landscape.trials)
    for i, change in changes.items():
        config = {**trials[i].config, **change}
        trials[i] = replace(trials[i], config={k: v for k, v in config.items() if v is not None})
    shape = Shape(landscape.shape.name, dims or dict(landscape.shape.dims))
    return Landscape("toy", shape, landscape.environment, landscape.space_size, trials)


def test_fit_normalises_what_is_unambiguous() -> None:
    space, clean = toy_space(), toy_landscape()
    a = next(i for i, t in enumerate(clean.trials) if t.config["impl"] == "a")
    b = next(i for i, t in enumerate(clean.trials) if t.config["impl"] == "b")
    recorded = _toy_with(
        {
            a: {
                "flag": int(clean.trials[a].config["flag"]),
                "stages": str(clean.trials[a].config["stages"]),
                "ring": 2,
            },
            b: {
                "BLOCK": str(clean.trials[b].config["BLOCK"]),
                "flag": str(clean.trials[b].config["flag"]).lower(),
            },
            b + 1: {"BLOCK": float(clean.trials[b + 1].config["BLOCK"])},
        },
        dims={"S": "128"},
    )
    assert recorded.lookup(clean.trials[a].config) is None  # what replay would miss in silence
    fitted = fit_to_space(recorded, space, "toy.json")
    assert fitted.normalised == 4  # three trials and the shape
    assert fitted.shape.dims == {"S": 128} and type(fitted.shape.dims["S"]) is int
    assert "ring" not in fitted.trials[a].config
    assert all(fitted.lookup(t.config) is not None for t in clean.trials)
    assert fit_to_space(clean, space, "toy.json").normalised == 0


def test_fit_takes_knobs_added_since_the_recording_at_their_default() -> None:
    """A landscape recorded before `flag` and `ring` were knobs (the kernel ran their defaults)
    replays as the sub-space where they are at their defaults: every config of it, once."""
    space = toy_space()
    old = [
        replace(t, config={k: v for k, v in t.config.items() if k not in ("flag", "ring")})
        for t in toy_landscape().trials
        if not t.config["flag"] and t.config.get("ring", 2) == 2
    ]
    recorded = Landscape("toy", toy_landscape().shape, {"gpu": "toy"}, len(old), old, "BLOCK > 16")
    fitted = fit_to_space(recorded, space, "toy.json")
    assert fitted.restrict == "(BLOCK > 16) and flag == False and ring == 2"
    assert fitted.normalised == len(old)
    replayed = space.restricted(fitted.restrict)
    expected = {config_hash(c) for c in valid_configs(replayed, TOY_DIMS) if c["BLOCK"] > 16}
    assert {config_hash(t.config) for t in fitted.trials if t.config["BLOCK"] > 16} == expected
    assert all(not t.config["flag"] for t in fitted.trials)
    # Extended by a part recorded since, with flag set: the merge covers both sub-spaces.
    newer = [t for t in toy_landscape().trials if t.config["flag"] and t.config["BLOCK"] > 16]
    part = Landscape("toy", recorded.shape, {"gpu": "toy"}, len(newer), newer, "flag")
    merged = merge_landscapes([recorded, part], space)
    assert merged.restrict == "((BLOCK > 16) and flag == False and ring == 2) or (flag)"
    assert all(t.config == space.normalize(t.config) for t in merged.trials)
    assert len(merged) == len(old) + len(newer)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"BLOCKS": 64}, "trials[0]: unknown knob 'BLOCKS'; the knobs of toy are impl, BLOCK"),
        ({"BLOCK": "sixty"}, "trials[0]: knob 'BLOCK': 'sixty' is not one of"),
        ({"BLOCK": True}, "knob 'BLOCK': True is not one of"),  # a bool is no number
        ({"BLOCK": 48}, "knob 'BLOCK': 48 is not one of [16, 32, 64, 128]"),
        ({"flag": 2}, "knob 'flag': 2 is not one of [False, True]"),
        ({"impl": "a", "warps": None}, "knob 'warps' is missing"),
    ],
)
def test_fit_refuses_the_rest(change: dict[str, Any], message: str) -> None:
    with pytest.raises(LandscapeFileError, match=re.escape("toy.json: does not fit the toy")):
        fit_to_space(_toy_with({0: change}), toy_space(), "toy.json")
    with pytest.raises(LandscapeFileError, match=re.escape(message)):
        fit_to_space(_toy_with({0: change}), toy_space(), "toy.json")


def test_fit_refuses_other_kernels_and_dims() -> None:
    space = toy_space()
    with pytest.raises(LandscapeFileError, match=re.escape("shape.S: expected int, got 'long'")):
        fit_to_space(_toy_with({}, dims={"S": "long"}), space, "toy.json")
    with pytest.raises(LandscapeFileError, match=re.escape("shape: missing ['S'], unknown ['T']")):
        fit_to_space(_toy_with({}, dims={"T": 128}), space, "toy.json")
    other = replace(toy_landscape(), kernel="attention")
    with pytest.raises(
        LandscapeFileError, match="the landscape is of kernel 'attention', not 'toy'"
    ):
        fit_to_space(other, space, "toy.json")


@pytest.mark.parametrize("status", ["meh", "running"])
def test_status_errors_list_the_valid_statuses(status: str) -> None:
    data = {"config": {}, "status": status}
    with pytest.raises(ValueError, match=f"unknown status '{status}'; valid: ok, compile_error, "):
        LandscapeTrial.from_dict(data)


TOY_CSV = """impl,BLOCK,warps,stages,flag,ring,time_ms,status
a,64,4,3,false,,0.010,
a,64,4,2,0,,,
b,32,,,1,3,0.020,ok
a,128,8,1,true,,,out_of_resources
"""


def test_import_csv(tmp_path: Path) -> None:
    path = tmp_path / "other.csv"
    path.write_text(TOY_CSV)
    imported = import_measurements(path, toy_space(), Shape("s128", {"S": 128}), "H100")
    saved = load_landscape(save_landscape(imported, tmp_path / "out.json"))
    assert saved.to_dict() == imported.to_dict() and imported.environment["gpu"] == "H100"
    assert imported.space_size == len(toy_landscape()) and imported.normalised == 4
    best = imported.lookup({"impl": "a", "BLOCK": 64, "warps": 4, "stages": 3, "flag": False})
    assert best is not None and best.ok and best.p50_us == pytest.approx(10.0)
    failed = imported.lookup({"impl": "a", "BLOCK": 64, "warps": 4, "stages": 2, "flag": False})
    assert failed is not None and failed.status is TrialStatus.CRASHED  # no time: failed
    b = imported.lookup({"impl": "b", "BLOCK": 32, "flag": True, "ring": 3})
    assert b is not None and b.p50_us == pytest.approx(20.0)
    assert imported.trials[3].status is TrialStatus.OUT_OF_RESOURCES


def test_import_jsonl_in_microseconds(tmp_path: Path) -> None:
    rows = [
        {"impl": "b", "BLOCK": 32, "flag": True, "ring": 3, "time_us": 14.5},
        {"impl": "b", "BLOCK": 16, "flag": False, "ring": 2, "time_us": None},
    ]
    path = tmp_path / "other.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    imported = import_measurements(path, toy_space(), Shape("s128", {"S": 128}))
    assert [t.p50_us for t in imported.trials] == [14.5, None] and imported.normalised == 0
    assert [t.status for t in imported.trials] == [TrialStatus.OK, TrialStatus.CRASHED]


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("m.csv", "impl,BLOCK,time_us,time_ms\na,64,1,1\n", "found time_us, time_ms"),
        ("m.csv", "impl,BLOCK\na,64\n", "found none"),
        (
            "m.csv",
            "impl,BLOCK,time_us\na,64,fast\n",
            "row 1: 'time_us' must be a number, got 'fast'",
        ),
        ("m.jsonl", '{"impl": "a"}\n[1]\n', "row 2: expected an object of columns"),
        ("m.txt", "", "give a .csv or .jsonl file"),
        ("m.csv", "impl,BLOCK,time_us\na,64,1.0\n", "trials[0]: knob 'warps' is missing"),
    ],
)
def test_import_refuses_what_it_cannot_read(
    tmp_path: Path, name: str, text: str, message: str
) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(LandscapeFileError, match=re.escape(message)):
        import_measurements(path, toy_space(), Shape("s128", {"S": 128}))
