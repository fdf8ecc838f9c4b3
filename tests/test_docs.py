"""Every command of the guides runs as written: docs/guide/*.md and README.md.

The convention, for the writers of those pages. Each line of a fenced ```bash block is one
command (a line ending in `\\` continues on the next); blank lines and lines that start with
`#` are not commands. Every command runs here, on a CPU machine, unless its line ends in one
of these comments:

    evotune serve                  # not run by tests: serves until stopped
    evotune search --ray local ... # needs: ray

- `# not run by tests: WHY` (WHY is required): never run here, e.g. it needs a CUDA GPU,
  installs packages, or serves until stopped.
- `# needs: MODULE`: run only where the Python module MODULE imports (an optional extra,
  e.g. `ray`), skipped otherwise; apart from the page's other commands (after its exports,
  by `test_the_commands_that_need_an_extra_run`), so that CI runs only these where the
  extras are. No other command may need what such a command does.

`test_every_command_is_run_or_marked` fails for an unmarked command that cannot run here or
would run for hours on a GPU host: `pip install`, `pytest`, `evotune serve`, `evotune bench`,
`--gpus`, `--ray` with an address, or `evotune search` without `--interpret` or `--replay`
(`--help` may always run).

How a page runs (`test_the_commands_of_a_page_run`): its commands in order, each in its own
`bash`, all in one temporary folder that holds links to the repository's `docs/` and `tests/`
(so paths given from the repository root work) and with EVOTUNE_DB pointing at a SQLite file
there, so that `evotune best` after `evotune search` finds what the search stored. A page's
`export` lines are repeated before each later command of that page. Each command must exit
0; a command with `--json` must print JSON; a few print what OUTPUT_CHECKS says.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs" / "guide").glob("*.md"))]
LINKED = ("docs", "tests")  # repository folders the commands may read (never write)

SKIP_MARK = re.compile(r"#\s*not run by tests:\s*(?P<why>\S.*?)\s*$")
NEEDS_MARK = re.compile(r"#\s*needs:\s*(?P<module>[A-Za-z_][\w.]*)\s*$")

# (pattern on the command, text its stdout or stderr must hold)
OUTPUT_CHECKS: list[tuple[str, str]] = [
    (r"^evotune --version$", "evotune "),
    (r"echo \"exit code: \$\?\"", "exit code: 2"),
    (r"^evotune search (?!.*--help)[^;]*$", "finished"),
    (r"^evotune best ", "config"),
    (r"^evotune landscape (export|merge|import) ", "wrote "),
    (r"^evotune compare ", "evals to"),
    (r"^evotune db upgrade", "newest schema revision"),
    (r"evotune tune-pending (?!.*(--dry-run|--help))", ": tuned, "),
    (r"evotune tune-pending (?!.*--help).*--dry-run", ": can be tuned here"),
]

# bash before each command: `evotune` is this interpreter's (its console script, else -m).
PRELUDE = """\
set -o pipefail
if ! command -v evotune >/dev/null 2>&1; then
    evotune() { "$EVOTUNE_DOCS_PYTHON" -m evotune "$@"; }
fi
"""


@dataclass(frozen=True)
class Command:
    page: Path
    line: int  # where it starts in the page (1-based)
    text: str
    skip: str | None  # why it is not run here
    needs: str | None  # the module it needs

    def __str__(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}: {self.text}"


def bash_commands(page: Path) -> list[Command]:
    """The commands of a page's ```bash blocks, in order."""
    commands: list[Command] = []
    in_block = False
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(page.read_text().splitlines(), start=1):
        stripped = raw.strip()
        if not in_block:
            in_block = stripped == "```bash"
            continue
        if stripped.startswith("```"):
            assert not pending, f"{page}:{start}: a `\\` continuation runs off its block"
            in_block = False
            continue
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending.append(stripped[:-1].rstrip())
            continue
        text = " ".join([*pending, stripped])
        pending = []
        skip, needs = SKIP_MARK.search(text), NEEDS_MARK.search(text)
        commands.append(
            Command(
                page,
                start,
                text,
                skip["why"] if skip else None,
                needs["module"] if needs else None,
            )
        )
    assert not in_block, f"{page}: a ```bash block is not closed"
    return commands


def _why_it_must_be_marked(text: str) -> str | None:
    """Why an unmarked command may not run in the tests (None: it may)."""
    code = text.split(" #", 1)[0]
    if re.search(r"--help\b", code):
        return None
    if re.search(r"\bpip install\b", code):
        return "it installs packages"
    if re.search(r"(^|[;&|]\s*)pytest\b", code):
        return "it runs the test suite"
    if re.search(r"\bevotune (serve|bench)\b", code):
        return "`evotune serve` runs until stopped and `evotune bench` needs a GPU"
    if "--gpus" in code:
        return "--gpus needs CUDA GPUs"
    if re.search(r"--ray(=|\s+)(?!local\b)", code):
        return "--ray ADDRESS needs a Ray cluster"
    if re.search(r"\bevotune search\b", code) and not re.search(r"--interpret|--replay", code):
        return "a search without --interpret or --replay needs a GPU"
    return None


def test_the_guides_exist_and_have_commands() -> None:
    names = {p.name for p in PAGES}
    for page in (
        "README.md",
        "getting-started.md",
        "cli.md",
        "search-spaces.md",
        "own-kernel.md",
        "several-gpus.md",
    ):
        assert page in names, f"docs/guide/{page} is missing"
    for page in PAGES:
        if page.name != "README.md" or page.parent == ROOT:
            assert bash_commands(page), f"{page}: no ```bash command"


def test_every_command_is_run_or_marked() -> None:
    problems: list[str] = []
    for page in PAGES:
        for command in bash_commands(page):
            if command.skip:
                continue
            if "not run by tests" in command.text:
                problems.append(
                    f"{command}\n    malformed: `# not run by tests: WHY` ends the line"
                )
                continue
            why = _why_it_must_be_marked(command.text)
            if why:
                problems.append(f"{command}\n    mark it `# not run by tests: ...`: {why}")
    assert not problems, "\n".join(problems)


def test_the_example_space_file_is_the_one_shown() -> None:
    page = (ROOT / "docs" / "guide" / "own-kernel.md").read_text()
    example = (ROOT / "docs" / "guide" / "examples" / "vecadd.yaml").read_text()
    shown = re.findall(r"```yaml\n(.*?)```", page, re.S)
    assert shown and shown[0] in example, "own-kernel.md shows examples/vecadd.yaml as it is"


def _check_output(command: Command, result: subprocess.CompletedProcess[str]) -> None:
    text = command.text.split(" #", 1)[0].strip()
    shown = f"{command}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
    if "--json" in shlex.split(text) and not re.search(r"[|;&>]", text):
        try:
            json.loads(result.stdout)
        except json.JSONDecodeError as exc:
            pytest.fail(f"--json printed no JSON ({exc}): {shown}")
    for pattern, expected in OUTPUT_CHECKS:
        if re.search(pattern, text):
            assert expected in result.stdout + result.stderr, f"expected {expected!r}: {shown}"
    if "exit code: $?" in text:  # a user error: one line on stderr
        assert len(result.stderr.strip().splitlines()) == 1, shown


def _page_id(page: Path) -> str:
    return str(page.relative_to(ROOT))


@pytest.mark.slow
@pytest.mark.parametrize("page", PAGES, ids=_page_id)
def test_the_commands_of_a_page_run(page: Path, tmp_path: Path) -> None:
    _run_in_order([c for c in bash_commands(page) if not c.skip and not c.needs], tmp_path)


@pytest.mark.slow
@pytest.mark.extras  # CI runs it where the extras are (tests/ci_selection.py)
@pytest.mark.parametrize(
    "page", [p for p in PAGES if any(c.needs for c in bash_commands(p))], ids=_page_id
)
def test_the_commands_that_need_an_extra_run(page: Path, tmp_path: Path) -> None:
    """A page's `# needs:` commands, after its exports, where their modules import; the
    page's other commands run without them, so none can need what these do."""
    commands = [c for c in bash_commands(page) if not c.skip]
    needed = sorted({c.needs for c in commands if c.needs})
    runnable = [c for c in commands if c.needs and importlib.util.find_spec(c.needs)]
    if not runnable:
        pytest.skip(f"not installed: {', '.join(needed)}")
    _run_in_order([c for c in commands if c in runnable or c.text.startswith("export ")], tmp_path)


def _run_in_order(commands: list[Command], tmp_path: Path) -> None:
    """Each command in its own bash, in one folder, after the `export` lines before it."""
    for name in LINKED:
        (tmp_path / name).symlink_to(ROOT / name, target_is_directory=True)
    env = {
        **os.environ,
        "COLUMNS": "200",
        "EVOTUNE_DB": f"sqlite:///{tmp_path / 'evotune.db'}",
        "EVOTUNE_DOCS_PYTHON": sys.executable,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    for name in ("EVOTUNE_SPACES", "EVOTUNE_TOKEN"):
        env.pop(name, None)
    exports: list[str] = []
    for command in commands:
        result = subprocess.run(
            ["bash", "-c", "\n".join([PRELUDE, *exports, command.text])],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert result.returncode == 0, (
            f"exit code {result.returncode}: {command}\n--- stdout\n{result.stdout}"
            f"\n--- stderr\n{result.stderr}"
        )
        _check_output(command, result)
        if command.text.startswith("export "):
            exports.append(command.text)
