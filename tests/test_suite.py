"""`evotune compare --suite`: every strategy on every landscape of a manifest, one table.

The runs are checked against runs made directly (`run_on_landscape`), on a tiny suite of
sub-landscapes cut from the shipped recordings and on a made-up landscape a manifest names;
the shipped manifests against their files, the made-up landscapes and the default strategy's
record of its tuning subset."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from evotune.cli import main
from evotune.compare import run_on_landscape
from evotune.errors import UserError
from evotune.landscape import Landscape, fit_to_space, load_landscape, save_landscape
from evotune.search.grid import valid_configs
from evotune.search.registry import DEFAULT_STRATEGY, STRATEGIES
from evotune.space import load_space
from evotune.suite import (
    SuiteReport,
    load_suite,
    parse_strategies,
    prepare_suite,
    render_suite,
    run_suite,
)
from evotune.synthetic_landscapes import SHAPES, SyntheticSpec, synthetic_landscape, with_needle

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "tests" / "data" / "landscapes"

# name: (shipped file it is cut from, CTA_MULT it keeps, in the tuning subset)
TINY = {
    "m-cta0": ("mission-triton.json", 0, True),
    "l-cta0": ("llama-d128-triton.json", 0, False),
    "m-cta1": ("mission-triton.json", 1, False),
}


def _cut(source: str, cta_mult: int) -> Landscape:
    """The sub-landscape of one CTA_MULT value (264 configs of mission, fewer of llama)."""
    full = load_landscape(SHIPPED / source)
    trials = [t for t in full.trials if t.config["CTA_MULT"] == cta_mult]
    restrict = f"({full.restrict}) and CTA_MULT == {cta_mult}"
    return Landscape(full.kernel, full.shape, full.environment, len(trials), trials, restrict)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A suite manifest of three small landscapes (one gzipped), one in the tuning subset."""
    folder = tmp_path_factory.mktemp("suite")
    entries = []
    for name, (source, cta_mult, tuning) in TINY.items():
        file = f"{name}.json.gz" if name == "m-cta1" else f"{name}.json"
        landscape = save_landscape(_cut(source, cta_mult), folder / file)
        configs = len(load_landscape(landscape))
        entries.append({"file": file, "tuning": tuning, "configs": configs, "gpu": "H100"})
    (folder / "suite.yaml").write_text(yaml.safe_dump({"landscapes": entries}))
    return folder / "suite.yaml"


def _compare(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "evotune", "compare", *args],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )  # fmt: skip


def _direct(suite: Path, name: str, strategy: str, seed: int, cap: int) -> list[int | None]:
    """Evaluations to 2 % and 5 % of one run made without the suite, as `compare` makes it."""
    path = suite.parent / next(p.name for p in suite.parent.iterdir() if p.name.startswith(name))
    landscape = fit_to_space(load_landscape(path), load_space("attention"), path)
    space = load_space("attention").searched(landscape.restrict, False)
    run = run_on_landscape(landscape, space, strategy, seed, 0.02, cap, start="random")
    best = landscape.best_p50_us
    assert best is not None
    evals = [run.evals_to_target]
    evals.append(next((i + 1 for i, b in enumerate(run.best_curve) if b <= best * 1.05), None))
    return evals


def test_the_cli_runs_every_strategy_on_every_landscape(tiny: Path) -> None:
    args = ("--suite", str(tiny), "--strategies", "evolution,random", "--seeds", "2")
    result = _compare(*args, "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert lines[0] == "compare runs: 0/12" and lines[-1].startswith("compare runs: 12/12 (")
    data = json.loads(result.stdout)
    assert data["start"] == "random" and data["targets"] == [0.02, 0.05]
    assert [e["name"] for e in data["landscapes"]] == list(TINY)
    rows = {(r["landscape"], r["target"], r["strategy"]): r for r in data["rows"]}
    assert len(rows) == len(data["rows"]) == 3 * 2 * 2
    for (name, target, strategy), row in rows.items():
        assert row["tuning"] is TINY[name][2]
        assert row["max_evals"] == 100  # compare's default cap: 15 % of the space, at least 100
        direct = [_direct(tiny, name, strategy, seed, 100) for seed in (0, 1)]
        expected = [evals[0 if target == 0.02 else 1] for evals in direct]
        assert row["evals_to_target"] == expected, (name, target, strategy)
        counted = [101 if e is None else e for e in expected]
        assert row["median_evals"] == float(np.median(counted))
    report = SuiteReport.from_dict(data)
    assert json.loads(json.dumps(report.to_dict())) == data  # the JSON round-trips

    # The table is the same report: rendered from the JSON, it is what the CLI prints.
    table = _compare(*args)
    assert table.returncode == 0, table.stderr[-2000:]
    assert table.stdout == render_suite(report)


def test_the_table_reports_held_out_landscapes_apart(tiny: Path) -> None:
    suite = load_suite(tiny)
    specs = parse_strategies("evolution,random")
    report = run_suite(suite, prepare_suite(suite, specs, 2, "random"), specs, 2, max_evals=40)
    text = render_suite(report)
    held_out, tuning = text.split("**Tuning subset**")
    assert "**Held out**" in held_out and "**Held out**" not in tuning
    rows = [line for line in text.splitlines() if line.startswith("| ") and "---" not in line]
    assert len(rows) == 12 + 2  # a row per landscape, target and strategy, and two headers
    for name, (_, _, in_tuning) in TINY.items():
        for target in ("2%", "5%"):
            for strategy in ("evolution", "random"):
                cell = f"| {name} | {target} | {strategy} | 2 | 40 |"
                assert cell in (tuning if in_tuning else held_out), cell
    # Ratios: the other strategy's median over this row's, `-` for random against itself.
    row = report.row("l-cta0", 0.02, "evolution")
    other = report.row("l-cta0", 0.02, "random")
    ratio = report.versus_random(row)
    if row.past_cap:
        assert ratio is None
    else:
        assert ratio is not None and ratio.ratio == other.median / row.median
    assert report.versus_random(other) is None


def test_a_strategy_carries_settings_and_its_own_cap_and_seeds(tiny: Path) -> None:
    specs = parse_strategies("evolution[parzen_weight=0,population=8],random@30/3")
    assert [(s.name, s.settings, s.max_evals, s.seeds) for s in specs] == [
        ("evolution", {"parzen_weight": 0, "population": 8}, None, None),
        ("random", {}, 30, 3),
    ]
    assert parse_strategies("tpe@/10")[0].seeds == 10
    suite = load_suite(tiny).select(["m-cta1"])
    report = run_suite(
        suite, prepare_suite(suite, specs, 2, "default"), specs, 2, targets=[0.1], start="default"
    )
    evolution, random = (report.row("m-cta1", 0.1, s.text) for s in specs)
    assert (random.max_evals, len(random.evals_to_target)) == (30, 3)
    assert (evolution.max_evals, len(evolution.evals_to_target)) == (100, 2)
    path = tiny.parent / "m-cta1.json.gz"
    landscape = fit_to_space(load_landscape(path), load_space("attention"), path)
    space = load_space("attention").searched(landscape.restrict, False)
    settings = specs[0].settings
    direct = [
        run_on_landscape(landscape, space, "evolution", seed, 0.1, 100, 0, settings, "default")
        for seed in (0, 1)
    ]
    assert evolution.evals_to_target == [run.evals_to_target for run in direct]


def test_kernel_tuners_strategies_run_in_a_suite(tiny: Path) -> None:
    pytest.importorskip("kernel_tuner")
    suite = load_suite(tiny).select(["l-cta0"])
    specs = parse_strategies("random,kt:random_sample@60/3")
    report = run_suite(suite, prepare_suite(suite, specs, 2, "random"), specs, 2, targets=[0.02])
    row = report.row("l-cta0", 0.02, "kt:random_sample@60/3")
    assert (row.max_evals, len(row.evals_to_target)) == (60, 3)
    assert all(e is None or 1 <= e <= 60 for e in row.evals_to_target)
    best = report.best_other(report.row("l-cta0", 0.02, "random"))
    assert best is not None and best.strategy == "kt:random_sample@60/3"


def test_the_shipped_suite_is_the_shipped_landscapes_with_the_tuning_subset_recorded() -> None:
    """Each file's size and recorded facts as the manifest says, every shipped landscape in
    it, and its tuning subset exactly the files the default strategy's defaults were tuned on
    (`EvolutionStrategy.tuned_on`), by content: the held-out rows are the others."""
    suite = load_suite(SHIPPED / "suite.yaml")
    shipped = {p.name for p in SHIPPED.iterdir() if ".json" in p.name}
    files = [e.source for e in suite.entries if isinstance(e.source, Path)]
    assert len(files) == len(suite.entries) and {f.name for f in files} == shipped
    for entry, file in zip(suite.entries, files, strict=True):
        landscape = load_landscape(file)
        assert len(landscape) == entry.configs, entry.name
        assert entry.provenance["kernel"] == landscape.kernel
        assert entry.provenance["gpu"] == landscape.environment["gpu"]
        assert str(entry.provenance["shape"]).startswith(f"{landscape.shape.name}: ")
        assert entry.provenance["date"] and entry.provenance["recorded"]
    tuned = {(ROOT / t.path).resolve(): t.sha256 for t in STRATEGIES[DEFAULT_STRATEGY].tuned_on}
    tuning = {f.resolve() for f, e in zip(files, suite.entries, strict=True) if e.tuning}
    assert tuning == set(tuned)
    assert all(load_landscape(path).content_sha256 == sha for path, sha in tuned.items())
    assert any(not e.tuning for e in suite.entries)  # something is held out


def test_a_manifest_names_a_made_up_landscape_and_the_suite_runs_on_it(tmp_path: Path) -> None:
    """A `synthetic:` entry is built from its kind, shape and seed, and run as a file is: the
    same evaluations as runs made directly on the landscape the generator makes."""
    entry = {"synthetic": "needle", "shape": "llama-d128", "seed": 1, "tuning": False}
    (tmp_path / "made-up.yaml").write_text(
        yaml.safe_dump({"landscapes": [{**entry, "configs": 20345}]})
    )
    suite = load_suite(tmp_path / "made-up.yaml")
    specs = parse_strategies("evolution,random")
    report = run_suite(suite, prepare_suite(suite, specs, 2, "random"), specs, 2, max_evals=60)
    landscape = with_needle(synthetic_landscape(None, "llama-d128", seed=1), seed=1)
    assert report.landscapes == [
        {"name": "needle:llama-d128:1", **entry, "configs": 20345,
         "best_p50_us": landscape.best_p50_us}
    ]  # fmt: skip
    space = load_space("attention")
    for strategy in ("evolution", "random"):
        direct = [
            run_on_landscape(landscape, space, strategy, seed, 0.02, 60, start="random")
            for seed in (0, 1)
        ]
        row = report.row("needle:llama-d128:1", 0.02, strategy)
        assert row.evals_to_target == [run.evals_to_target for run in direct], strategy


@pytest.mark.parametrize(
    ("manifest", "kinds"),
    [("synthetic.yaml", ("plain", "needle")), ("synthetic-branch.yaml", ("branch",))],
)
def test_the_synthetic_suite_is_the_made_up_landscapes_of_the_lab_note(
    manifest: str, kinds: tuple[str, ...]
) -> None:
    """tests/data/landscapes/synthetic.yaml: the sixteen landscapes docs/lab/search-holdout.md
    chose on, and synthetic-branch.yaml the eight it tried the first generation on (so all in
    the tuning subset), each with every valid config of its shape."""
    suite = load_suite(SHIPPED / manifest)
    assert [e.name for e in suite.entries] == [
        f"{kind}:{shape}:{seed}"
        for kind in kinds
        for shape in ("mission", "llama-d128")
        for seed in range(4)
    ]
    assert all(e.tuning and not e.provenance for e in suite.entries)
    space = load_space("attention")
    valid = {s: sum(1 for _ in valid_configs(space, space.shape(s).dims)) for s in SHAPES}
    for entry in suite.entries:
        assert isinstance(entry.source, SyntheticSpec)
        assert entry.configs == valid[entry.source.shape], entry.name


SYNTHETIC_ENTRY = {"synthetic": "needle", "shape": "mission", "seed": 3, "tuning": True}


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (
            {**SYNTHETIC_ENTRY, "configs": 1, "noise": 0.02},
            "takes synthetic, shape, seed, tuning, configs; not noise",
        ),
        ({**SYNTHETIC_ENTRY, "configs": 1, "seed": None}, "'seed' must be a int, not None"),
        ({**SYNTHETIC_ENTRY, "configs": 1, "seed": "3"}, "'seed' must be a int, not '3'"),
        (
            {**SYNTHETIC_ENTRY, "configs": 1, "synthetic": "smooth"},
            "'synthetic' is one of plain, needle, branch, not 'smooth'",
        ),
        (
            {**SYNTHETIC_ENTRY, "configs": 1, "shape": "gpt2"},
            "'shape' is one of mission, llama-d128, not 'gpt2'",
        ),
        (
            {**SYNTHETIC_ENTRY, "configs": 1, "file": "mission-triton.json"},
            "either 'file' (a landscape file) or 'synthetic' (plain or needle or branch)",
        ),
        ({"tuning": True, "configs": 1}, "either 'file' (a landscape file) or 'synthetic'"),
        (SYNTHETIC_ENTRY, "'configs' must be a int, not None"),
    ],
)
def test_a_malformed_entry_is_one_error_line(
    tmp_path: Path, entry: dict[str, object], message: str
) -> None:  # fmt: skip
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump({"landscapes": [entry]}))
    with pytest.raises(UserError) as refused:
        load_suite(tmp_path / "bad.yaml")
    assert str(refused.value).startswith(f"{tmp_path / 'bad.yaml'}: landscapes[0]: ")
    assert message in str(refused.value) and "\n" not in str(refused.value)


def test_a_suite_run_is_refused_before_it_starts(tiny: Path, tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text("{not json")
    (tmp_path / "bad.yaml").write_text(
        yaml.safe_dump({"landscapes": [{"file": "bad.json", "tuning": False, "configs": 1}]})
    )
    (tmp_path / "wrong-size.yaml").write_text(
        yaml.safe_dump(
            {
                "landscapes": [
                    {"file": str(tiny.parent / "m-cta0.json"), "tuning": True, "configs": 5}
                ]
            }
        )
    )
    (tmp_path / "made-up.yaml").write_text(
        yaml.safe_dump({"landscapes": [{**SYNTHETIC_ENTRY, "shape": "llama-d128", "configs": 5}]})
    )
    (tmp_path / "empty.yaml").write_text("landscapes: []\n")
    with pytest.raises(
        UserError, match="needle:llama-d128:3 records 20345 configs, the suite says 5"
    ):
        prepare_suite(
            load_suite(tmp_path / "made-up.yaml"), parse_strategies("random"), 1, "random"
        )
    with pytest.raises(UserError, match="records 264 configs, the suite says 5"):
        prepare_suite(
            load_suite(tmp_path / "wrong-size.yaml"), parse_strategies("random"), 1, "random"
        )
    with pytest.raises(UserError, match="not valid JSON"):
        prepare_suite(load_suite(tmp_path / "bad.yaml"), parse_strategies("random"), 1, "random")
    with pytest.raises(UserError, match="non-empty list 'landscapes'"):
        load_suite(tmp_path / "empty.yaml")


CLI_ERRORS = [
    (("--strategies", "evolution,annealing"), "unknown strategies annealing; known: "),
    (("--strategies", "tpe@x"), "--strategies: cannot read 'tpe@x'"),
    (("--strategies", "evolution[bogus=1]"), "--strategies: evolution has no setting bogus"),
    (("--strategies", "random,random"), "--strategies: random given twice"),
    (("--only", "m-cta9"), "--only: m-cta9 not in the suite"),
    (("--start", "best"), "--start must be one of default, random, none"),
    (("--pipeline-depth", "2"), "--suite replays its own landscapes synchronously"),
    (("--landscape", "x.json"), "--suite replays its own landscapes synchronously"),
]


@pytest.mark.parametrize(("args", "message"), CLI_ERRORS)
def test_a_usage_error_is_one_line_and_exit_2(
    tiny: Path, args: tuple[str, ...], message: str, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    _exits_2_with_one_line(["--suite", str(tiny), *args], message, capsys, monkeypatch)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--suite", "{tmp}/none.yaml"), "cannot read suite {tmp}/none.yaml: No such file"),
        (("--suite", "{tmp}/missing.yaml"), "cannot read landscape {tmp}/gone.json"),
        (("--suite", "{tmp}/notes.txt"), "a suite is a mapping with a non-empty list"),
        (("--suite", "{tmp}/typo.yaml"), "landscapes[0]: a synthetic landscape takes "),
        (("--strategies", "random"), "give --landscape FILE, or --suite MANIFEST"),
        (("--landscape", "x.json", "--target", "0.02", "--target", "0.05"), "one --target"),
    ],
)
def test_a_missing_or_malformed_manifest_is_one_line_and_exit_2(
    tmp_path: Path, args: tuple[str, ...], message: str, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    (tmp_path / "missing.yaml").write_text(
        yaml.safe_dump({"landscapes": [{"file": "gone.json", "tuning": False, "configs": 1}]})
    )
    (tmp_path / "notes.txt").write_text("just notes\n")
    typo = {**SYNTHETIC_ENTRY, "sede": 3, "configs": 1}
    (tmp_path / "typo.yaml").write_text(yaml.safe_dump({"landscapes": [typo]}))
    argv = [a.replace("{tmp}", str(tmp_path)) for a in args]
    _exits_2_with_one_line(argv, message.replace("{tmp}", str(tmp_path)), capsys, monkeypatch)


def test_kernel_tuners_strategies_without_it_are_one_line_and_exit_2(
    tiny: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "kernel_tuner", None)  # `import kernel_tuner` fails
    argv = ["--suite", str(tiny), "--strategies", "random,kt:pso"]
    _exits_2_with_one_line(argv, "the kt: strategies need Kernel Tuner", capsys, monkeypatch)


def _exits_2_with_one_line(
    argv: list[str],
    message: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`evotune compare ARGV` through the console entry point: exit code 2, nothing on stdout,
    and one line on stderr holding the message (no traceback, no progress)."""
    monkeypatch.setattr(sys, "argv", ["evotune", "compare", *argv])
    with pytest.raises(SystemExit) as exited:
        main()
    out, err = capsys.readouterr()
    assert exited.value.code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("error: ") and message in err, err
