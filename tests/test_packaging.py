"""An install adds only `evotune` to site-packages: the repository's top-level kernels/,
search_spaces/ and migrations/ become `evotune.kernels`, `evotune.search_spaces` and
`evotune.migrations`, in a wheel and in a checkout run without an install alike."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import evotune
from evotune.checkout import FOLDERS

ROOT = Path(__file__).resolve().parents[1]

_BUILD = "import sys; from setuptools import build_meta; print(build_meta.build_wheel(sys.argv[1]))"


def _source_files(folder: str) -> set[str]:
    return {
        path.relative_to(ROOT / folder).as_posix()
        for path in (ROOT / folder).rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }


@pytest.fixture(scope="module")
def wheel_files(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    """The files of the wheel built from a copy of the checkout (a build writes build/ and
    *.egg-info/ beside the sources: never into the repository)."""
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source)
    for folder in ("evotune", *FOLDERS):
        shutil.copytree(
            ROOT / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__")
        )
    out = tmp_path_factory.mktemp("wheel")
    proc = subprocess.run(
        [sys.executable, "-c", _BUILD, str(out)],
        cwd=source,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    with zipfile.ZipFile(out / proc.stdout.split()[-1]) as wheel:
        return set(wheel.namelist())


def test_the_wheel_installs_nothing_but_evotune(wheel_files: set[str]) -> None:
    top_level = {name.split("/")[0] for name in wheel_files}
    assert top_level == {"evotune", f"evotune-{evotune.__version__}.dist-info"}


@pytest.mark.parametrize("folder", FOLDERS)
def test_the_wheel_holds_every_file_of_a_folder_inside_evotune(
    wheel_files: set[str], folder: str
) -> None:
    expected = {f"evotune/{folder}/{name}" for name in _source_files(folder)}
    assert expected and expected <= wheel_files, sorted(expected - wheel_files)


def test_the_wheel_holds_every_file_of_evotune(wheel_files: set[str]) -> None:
    """The packages are listed in pyproject.toml by hand: a new one left out shows here."""
    expected = {f"evotune/{name}" for name in _source_files("evotune")}
    assert expected <= wheel_files, sorted(expected - wheel_files)


_RESOLVE = """
import json, sys
from importlib.resources import files
from importlib.util import find_spec
print(json.dumps({
    "packages": [find_spec("evotune." + folder).origin for folder in sys.argv[1:]],
    "plugin": find_spec("evotune.kernels.attention").origin,
    "space": str(files("evotune.search_spaces") / "attention.yaml"),
}))
"""


def test_a_checkout_without_an_install_finds_the_folders_inside_evotune(tmp_path: Path) -> None:
    """What the GPU hosts run: PYTHONPATH=<repo>, no install (`-S`: no site-packages, so not
    the editable install of this environment either)."""
    proc = subprocess.run(
        [sys.executable, "-S", "-c", _RESOLVE, *FOLDERS],
        cwd=tmp_path,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    found = json.loads(proc.stdout)
    assert found["packages"] == [str(ROOT / folder / "__init__.py") for folder in FOLDERS]
    assert found["plugin"] == str(ROOT / "kernels" / "attention.py")
    assert found["space"] == str(ROOT / "search_spaces" / "attention.yaml")
