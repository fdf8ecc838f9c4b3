"""CI tests what the project promises: the Triton releases at both ends of its bounds."""

from __future__ import annotations

import re
from pathlib import Path

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
