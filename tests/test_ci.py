"""CI tests what the project promises: the Triton releases at both ends of its bounds."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.ci_selection import markers_of

ROOT = Path(__file__).resolve().parents[1]


def test_ci_tests_both_ends_of_the_triton_bounds() -> None:
    """Job 2 pins the oldest Triton allowed; job 1 installs unconstrained, so pip takes the newest."""
    bounds = re.search(r'"triton>=(\d+\.\d+),<\d+\.\d+"', (ROOT / "pyproject.toml").read_text())
    assert bounds is not None, "pyproject.toml bounds triton as >=X.Y,<X.Z"
    constraints = (ROOT / ".ci" / "constraints.txt").read_text()
    assert f"triton=={bounds.group(1)}.0" in constraints.splitlines()
    ci = (ROOT / ".ci" / "run").read_text()
    job1 = ci.split('echo "== 1.', 1)[1].split('echo "== 2.', 1)[0]
    job2 = ci.split('echo "== 2.', 1)[1]
    assert "constraints" not in job1
    assert "-c .ci/constraints.txt" in job2


def _commands(text: str) -> list[str]:
    """Shell lines without their trailing comments, blank lines dropped."""
    lines = (re.sub(r"\s+#.*$", "", line).strip() for line in text.splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def test_ci_runs_the_readme_test_commands_as_written() -> None:
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"## Tests\n+```bash\n(.*?)```", readme, re.S)
    assert block is not None, "README.md has a Tests section with one bash block"
    readme_commands = _commands(block.group(1))
    assert readme_commands == ["pip install torch==2.13.0", "pip install -e '.[test]' && pytest"]
    ci = (ROOT / ".ci" / "run").read_text()
    job = ci.split('echo "== 1.', 1)[1].split('echo "== 2.', 1)[0]
    ci_commands = _commands(job)
    start = ci_commands.index(readme_commands[0])
    assert ci_commands[start : start + 2] == readme_commands


def _job_2() -> str:
    return (ROOT / ".ci" / "run").read_text().split('echo "== 2.', 1)[1]


def test_job_2_runs_the_marked_tests_with_every_extra_installed() -> None:
    """Job 2 runs what job 1 cannot have covered (tests/ci_selection.py), with every optional
    dependency that pyproject.toml declares, so that no `extras` test is skipped in both jobs."""
    job2 = _job_2()
    assert _commands(job2)[-1] == "pytest -n 2 -m 'triton or extras'"
    pyproject = (ROOT / "pyproject.toml").read_text()
    section = re.search(r"\[project\.optional-dependencies\]\n(.*?)\n\[", pyproject, re.S)
    assert section is not None
    declared = set(re.findall(r"^(\w+) = \[", section.group(1), re.M))
    installed = re.search(r"-c \.ci/constraints\.txt -e '\.\[([\w,]+)\]'", job2)
    assert installed is not None and set(installed.group(1).split(",")) == declared
    for marker in ("triton", "extras"):  # registered, so that a typo in -m would show
        assert re.search(rf'^    "{marker}: ', pyproject, re.M), marker


def _write(root: Path, name: str, source: str) -> Path:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(source)
    return path


def test_a_test_is_marked_by_what_it_and_its_module_use(tmp_path: Path) -> None:
    _write(tmp_path, "tests/__init__.py", "")
    _write(tmp_path, "tests/kernels/__init__.py", "")
    _write(tmp_path, "tests/kernels/helpers.py", "from evotune.kernels import attention\n")
    kernel = _write(
        tmp_path, "tests/kernels/test_k.py", "from .helpers import attention\ndef test_k(): ...\n"
    )
    mixed = _write(
        tmp_path,
        "tests/test_mixed.py",
        """\
import pytest
from evotune.worker.evaluator import Evaluator  # the protocol: launches nothing

def test_plain(): ...

def test_ray():
    pytest.importorskip("ray")

class TestPool:
    def test_pool(self):
        from evotune.worker.pool import WorkerPool
""",
    )
    postgres = _write(
        tmp_path,
        "tests/test_pg.py",
        "import os\nURL = os.environ.get('EVOTUNE_TEST_POSTGRES_URL')\ndef test_pg(): ...\n",
    )
    # Importing a test module brings what it uses outside its tests, not what they use.
    reuses = _write(
        tmp_path, "tests/test_reuses.py", "from tests.test_mixed import pytest\ndef test_r(): ...\n"
    )
    assert markers_of(kernel, "test_k", tmp_path) == {"triton"}
    assert markers_of(mixed, "test_plain", tmp_path) == set()
    assert markers_of(mixed, "test_ray", tmp_path) == {"extras"}
    assert markers_of(mixed, "test_pool", tmp_path) == {"triton"}
    assert markers_of(postgres, "test_pg", tmp_path) == {"extras"}
    assert markers_of(reuses, "test_r", tmp_path) == set()


def test_the_suite_collects_job_2_by_those_markers() -> None:
    """The conftest wiring, and the PostgreSQL fixtures and parameters that only a collection
    sees: a kernel module entirely, a search module not at all, the storage tests' PostgreSQL
    runs only, and of the guide's commands only those that need an extra."""
    files = [
        "tests/kernels/test_tile_order.py",
        "tests/search/test_strategies.py",
        "tests/storage/test_repository.py",
        "tests/test_docs.py",
    ]
    collect = [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"]
    result = subprocess.run(
        [*collect, "-m", "triton or extras", *files],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    selected = [line for line in result.stdout.splitlines() if "::" in line]
    by_file = {f: [t for t in selected if t.startswith(f + "::")] for f in files}
    kernels, search, storage, docs = by_file.values()
    assert kernels and not search
    assert storage and all(t.endswith("[postgres]") for t in storage)
    assert docs and all("::test_the_commands_that_need_an_extra_run[" in t for t in docs)
