"""Every user error is one line on stderr, exit code 2, no traceback, and leaves the database
as it was. One table of cases, each run as a user would: `python -m evotune ...`."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from evotune.space import space_directory
from evotune.storage import heartbeat
from evotune.storage.models import utcnow

MISSION_TRITON = "tests/data/landscapes/mission-triton.json"
# An identical rerun of this search resumes study 1 of the fixture database.
REPLAY_SEARCH = (
    "search", "--shape", "mission", "--replay", MISSION_TRITON,
    "--restrict", "impl == 'triton'", "--budget", "8",
)  # fmt: skip


@dataclass(frozen=True)
class Case:
    """A command (its arguments may name `{tmp}`, the case's folder, and `{db}`, its
    database file), the text its one error line must hold, and what to prepare first."""

    name: str
    args: tuple[str, ...]
    message: str
    setup: Callable[[Path, Path], None] | None = None
    env: dict[str, str] = field(default_factory=dict)


def _study_running_elsewhere(tmp: Path, db: Path) -> None:
    """Study 1 is being searched by a live process (this test's own, for its pid)."""
    with sqlite3.connect(db) as conn:
        conn.execute(
            "UPDATE studies SET state = 'running', heartbeat_at = ?, runner_host = ?, "
            "runner_pid = ? WHERE id = 1",
            (utcnow().strftime("%Y-%m-%d %H:%M:%S.%f"), heartbeat.host_name(), os.getpid()),
        )


def _not_sqlite(tmp: Path, db: Path) -> None:
    (tmp / "notes.txt").write_text("this is not a database\n")


def _space_with_injection(tmp: Path, db: Path) -> None:
    data = yaml.safe_load((space_directory() / "attention.yaml").read_text())
    data["derived"]["pwned"] = f"__import__('os').system('touch {tmp}/PWNED')"
    (tmp / "spaces").mkdir()
    (tmp / "spaces" / "attention.yaml").write_text(yaml.safe_dump(data, sort_keys=False))


def _space_with_missing_module(tmp: Path, db: Path) -> None:
    data = yaml.safe_load((space_directory() / "attention.yaml").read_text())
    data["module"] = "no_such_kernel_module"
    (tmp / "spaces").mkdir()
    (tmp / "spaces" / "attention.yaml").write_text(yaml.safe_dump(data, sort_keys=False))


def _bad_landscape(change: Callable[[dict[str, Any]], None]) -> Callable[[Path, Path], None]:
    """A setup writing {tmp}/bad.json: the mission-triton landscape, changed."""

    def setup(tmp: Path, db: Path) -> None:
        data = json.loads(Path(MISSION_TRITON).read_text())
        change(data)
        (tmp / "bad.json").write_text(json.dumps(data))

    return setup


def _rename_knob(data: dict[str, Any]) -> None:
    config = data["trials"][3]["config"]
    config["BLOCKN"] = config.pop("BLOCK_N")


def _measurements(text: str) -> Callable[[Path, Path], None]:
    """A setup writing {tmp}/m.csv, another tuner's measurements."""

    def setup(tmp: Path, db: Path) -> None:
        (tmp / "m.csv").write_text(text)

    return setup


def _read_only_dir(tmp: Path) -> Path:
    """A folder nobody may write to: a chmod-ed one, or sysfs where root ignores chmod."""
    if os.geteuid() == 0:
        return Path("/sys")
    folder = tmp / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    return folder


def _read_only_target(tmp: Path, db: Path) -> None:
    (tmp / "target").symlink_to(_read_only_dir(tmp))


CASES = [
    Case("budget 0", ("search", "--shape", "tiny", "--interpret", "--budget", "0"),
         "Invalid value for '--budget'"),
    Case("unknown option", ("search", "--shape", "tiny", "--bogus"), "No such option: --bogus"),
    Case("missing --shape", ("search", "--interpret"), "give --shape (one of tiny"),
    Case("unknown command", ("serch", "--shape", "tiny"), "No such command 'serch'"),
    Case("not an int", ("trials", "first"), "Invalid value for 'study_id'"),
    Case("unknown shape", ("search", "--shape", "huge", "--interpret"), "unknown shape 'huge'"),
    Case("not SQLite", ("studies", "--db", "{tmp}/notes.txt"), "file is not a database",
         setup=_not_sqlite),
    Case("read-only database",
         (*REPLAY_SEARCH, "--fresh", "--db", "sqlite:///file:{db}?mode=ro&uri=true"),
         "attempt to write a readonly database"),
    Case("export to a directory", ("landscape", "export", "1", "{tmp}"),
         "cannot write landscape"),
    Case("export to a read-only path", ("landscape", "export", "1", "{tmp}/target/x.json"),
         "cannot write landscape", setup=_read_only_target),
    Case("study searched by another process", REPLAY_SEARCH,
         "study 1 is being searched by process", setup=_study_running_elsewhere),
    Case("restrict matching nothing",
         ("search", "--shape", "tiny", "--interpret", "--restrict", "BLOCK_M == 7"),
         "no config of kernel 'attention' is valid for shape 'tiny'"),
    Case("restrict naming nothing",
         ("search", "--shape", "tiny", "--interpret", "--restrict", "BLOCK == 64"),
         "bad restriction 'BLOCK == 64': unknown names ['BLOCK']"),
    Case("restrict that does not parse",
         ("search", "--shape", "tiny", "--interpret", "--restrict", "BLOCK_M =="),
         "bad restriction 'BLOCK_M ==': does not parse"),
    Case("interpreter and bf16", ("search", "--shape", "llama-d128-bf16", "--interpret"),
         "the interpreter cannot run bf16 dots"),
    Case("code in derived:", ("search", "--shape", "tiny", "--interpret"),
         "derived.pwned: only", setup=_space_with_injection,
         env={"EVOTUNE_SPACES": "{tmp}/spaces"}),
    Case("plug-in module not importable",
         ("search", "--shape", "tiny", "--interpret", "--budget", "2", "--fresh"),
         "cannot import kernel module 'no_such_kernel_module'",
         setup=_space_with_missing_module, env={"EVOTUNE_SPACES": "{tmp}/spaces"}),
    Case("unknown trial status", ("trials", "1", "--status", "bogus"),
         "--status 'bogus' is not a trial status"),
    Case("unknown study", ("trials", "12345"), "no study with id 12345"),
    Case("nothing tuned", ("best", "--shape", "tiny"), "nothing tuned for kernel 'attention'"),
    Case("compare: unknown strategy",
         ("compare", "--landscape", MISSION_TRITON, "--strategies", "evolution,annealing"),
         "unknown strategies annealing"),
    Case("compare: no such file", ("compare", "--landscape", "{tmp}/none.json"),
         "cannot read landscape"),
    Case("compare: asynchronous without a pool",
         ("compare", "--landscape", MISSION_TRITON, "--pipeline-depth", "0"),
         "give a simulated pool (--sim-gpus N)"),
    Case("compare: a compile rule without seconds",
         ("compare", "--landscape", MISSION_TRITON, "--sim-gpus", "2",
          "--sim-compile-rule", "impl == 'gluon'"),
         "--sim-compile-rule takes 'EXPR=SECONDS'"),
    Case("compare: a knob the space lacks",
         ("compare", "--landscape", "{tmp}/bad.json"), "trials[3]: unknown knob 'BLOCKN'",
         setup=_bad_landscape(_rename_knob)),
    Case("compare: a value of no type of the knob",
         ("compare", "--landscape", "{tmp}/bad.json"), "trials[0]: knob 'TMA': 'maybe' is not",
         setup=_bad_landscape(lambda d: d["trials"][0]["config"].update(TMA="maybe"))),
    Case("compare: a dim missing", ("compare", "--landscape", "{tmp}/bad.json"),
         "shape: missing ['D']", setup=_bad_landscape(lambda d: d["shape"]["dims"].pop("D"))),
    Case("compare: a dim of another type", ("compare", "--landscape", "{tmp}/bad.json"),
         "shape.S: expected int, got 'long'",
         setup=_bad_landscape(lambda d: d["shape"]["dims"].update(S="long"))),
    Case("compare: unknown status", ("compare", "--landscape", "{tmp}/bad.json"),
         "unknown status 'fine'; valid: ok, compile_error",
         setup=_bad_landscape(lambda d: d["trials"][1].update(status="fine"))),
    Case("compare: unknown start",
         ("compare", "--landscape", MISSION_TRITON, "--start", "best"),
         "--start must be one of default, random, none"),
    Case("replay: a knob the space lacks",
         ("search", "--shape", "mission", "--replay", "{tmp}/bad.json", "--budget", "8"),
         "unknown knob 'BLOCKN'", setup=_bad_landscape(_rename_knob)),
    Case("import: no time column",
         ("landscape", "import", "{tmp}/m.csv", "-s", "mission", "{tmp}/out.json"),
         "needs one time column of p50_us, time_us, time_ms; found none",
         setup=_measurements("BLOCK_M,speed\n64,1.0\n")),
    Case("import: unknown status",
         ("landscape", "import", "{tmp}/m.csv", "-s", "mission", "{tmp}/out.json"),
         "row 1: unknown status 'fine'; valid: ok,",
         setup=_measurements("BLOCK_M,time_us,status\n64,1.0,fine\n")),
    Case("unknown kernel", ("search", "--shape", "tiny", "--kernel", "nope", "--interpret"),
         "unknown kernel 'nope'"),
    Case("unknown strategy",
         ("search", "--shape", "tiny", "--interpret", "--population", "4", "--strategy", "x"),
         "unknown strategy 'x'"),
    Case("database folder missing", ("best", "--shape", "tiny", "--db", "sqlite:////no/such/x.db"),
         "cannot open database"),
    Case("--gpus with --ray", ("search", "--shape", "tiny", "--gpus", "0", "--ray", "auto"),
         "--gpus has no effect with --ray"),
    Case("--gpus with --interpret", ("search", "--shape", "tiny", "--gpus", "0", "--interpret"),
         "--gpus has no effect with --interpret"),
    Case("--compile-workers with --interpret",
         ("search", "--shape", "tiny", "--compile-workers", "2", "--interpret"),
         "--compile-workers has no effect with --interpret"),
    Case("--ray-workers alone", ("search", "--shape", "tiny", "--interpret", "--ray-workers", "2"),
         "--ray-workers needs --ray"),
]  # fmt: skip


def _dump(db: Path) -> list[str]:
    with sqlite3.connect(db) as conn:
        return list(conn.iterdump())


@pytest.fixture(scope="module")
def fixture_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A database with one finished (replayed) study."""
    db = tmp_path_factory.mktemp("fixture") / "evotune.db"
    done = _evotune(*REPLAY_SEARCH[:-1], "4", env={"EVOTUNE_DB": f"sqlite:///{db}"})
    assert done.returncode == 0, done.stderr[-2000:]
    return db


def _evotune(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "evotune", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "300", **env},
        timeout=300,
    )


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_a_user_error_is_one_line_exit_2_and_changes_nothing(
    case: Case, fixture_db: Path, tmp_path: Path
) -> None:
    db = tmp_path / "evotune.db"
    shutil.copy(fixture_db, db)
    if case.setup is not None:
        case.setup(tmp_path, db)
    before = _dump(db)
    args = [a.format(tmp=tmp_path, db=db) for a in case.args]
    env = {"EVOTUNE_DB": f"sqlite:///{db}"}
    env.update({k: v.format(tmp=tmp_path) for k, v in case.env.items()})

    result = _evotune(*args, env=env)

    output = (result.stdout + result.stderr).strip().splitlines()
    assert result.returncode == 2, result.stdout + result.stderr
    assert output == [result.stderr.strip()], "exactly one line, on stderr"
    assert "Traceback" not in result.stderr
    assert case.message in result.stderr
    assert _dump(db) == before
    assert not (tmp_path / "PWNED").exists()


def test_version_and_shell_completion() -> None:
    version = _evotune("--version", env={})
    assert version.returncode == 0 and version.stdout.startswith("evotune 0.")
    script = str(Path(sys.executable).with_name("evotune"))  # the console script pip installs
    shown = subprocess.run(
        [script, "--show-completion", "bash"], capture_output=True, text=True, timeout=60
    )
    assert shown.returncode == 0 and "_EVOTUNE_COMPLETE=complete_bash" in shown.stdout
    # What the installed completion asks the program when <TAB> follows `evotune search --sh`.
    env = {
        **os.environ,
        "_EVOTUNE_COMPLETE": "complete_bash",
        "COMP_WORDS": "evotune search --sh",
        "COMP_CWORD": "2",
    }
    completed = subprocess.run([script], capture_output=True, text=True, env=env, timeout=60)
    assert completed.stdout.split() == ["--shape"]


def test_two_identical_searches_at_once_one_runs_the_other_says_so(tmp_path: Path) -> None:
    """Started together on a new database: one searches, the other stops with one line (or,
    starting after the first ended, resumes the finished study). Never an IntegrityError."""
    env = {**os.environ, "EVOTUNE_DB": f"sqlite:///{tmp_path / 'race.db'}", "COLUMNS": "300"}
    cmd = [sys.executable, "-m", "evotune", *REPLAY_SEARCH[:-1], "300", "--json"]
    procs = [
        subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    results = [(p.wait(timeout=300), *p.communicate()) for p in procs]
    codes = sorted(code for code, _, _ in results)
    assert codes[0] == 0, results
    for code, _, stderr in results:
        assert "Traceback" not in stderr
        if code != 0:
            assert code == 2 and "study 1 is being searched by process" in stderr
            assert len(stderr.strip().splitlines()) == 1
    with sqlite3.connect(tmp_path / "race.db") as conn:
        hashes = [h for (h,) in conn.execute("SELECT config_hash FROM trials")]
        assert conn.execute("SELECT count(*) FROM studies").fetchone() == (1,)
    assert hashes and len(hashes) == len(set(hashes))  # no config measured twice
