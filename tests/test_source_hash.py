"""The kernel source hash follows a plug-in's imports through its own package."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from evotune.errors import SpaceFileError
from evotune.source_hash import kernel_source_files, kernel_source_hash

ROOT = Path(__file__).resolve().parents[1]


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))


@pytest.fixture
def package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A plug-in package that imports in every way the hash must follow."""
    _write(
        tmp_path,
        {
            "hashpkg/__init__.py": "",
            "hashpkg/plug.py": """
                import json
                from . import near
                from .sub import deep
                from hashpkg.absolute import thing

                def run():
                    import importlib
                    importlib.import_module("hashpkg.lazy")
                    return importlib.util.find_spec("hashpkg.found")
            """,
            "hashpkg/near.py": "from .transitive import x\n",
            "hashpkg/transitive.py": "x = 1\n",
            "hashpkg/sub/__init__.py": "",
            "hashpkg/sub/deep.py": "",
            "hashpkg/absolute.py": "thing = 2\n",
            "hashpkg/lazy.py": "",
            "hashpkg/found.py": "",
            "hashpkg/unused.py": "not imported by anything\n",
        },
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path / "hashpkg"


def test_every_way_of_importing_is_followed(package: Path) -> None:
    names = set(kernel_source_files("hashpkg.plug"))
    assert names == {
        "hashpkg",
        "hashpkg.plug",
        "hashpkg.near",
        "hashpkg.transitive",
        "hashpkg.sub",
        "hashpkg.sub.deep",
        "hashpkg.absolute",
        "hashpkg.lazy",
        "hashpkg.found",
    }


def test_a_change_to_any_imported_file_changes_the_hash(package: Path) -> None:
    before = kernel_source_hash("hashpkg.plug")
    for path in kernel_source_files("hashpkg.plug").values():
        text = path.read_text()
        path.write_text(text + "# edited\n")
        assert kernel_source_hash("hashpkg.plug") != before, path
        path.write_text(text)
    (package / "unused.py").write_text("edited, but nothing imports it\n")
    assert kernel_source_hash("hashpkg.plug") == before


def test_a_top_level_plugin_covers_its_single_file_neighbours(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write(tmp_path, {"toplug.py": "import tohelper\nimport json\n", "tohelper.py": ""})
    monkeypatch.syspath_prepend(str(tmp_path))
    assert set(kernel_source_files("toplug")) == {"toplug", "tohelper"}


def test_a_missing_module_is_a_space_file_error() -> None:
    with pytest.raises(SpaceFileError, match="no_such_kernel_module"):
        kernel_source_hash("no_such_kernel_module")


PLUGINS = ("evotune.kernels.attention", "evotune.kernels.matmul")


def test_the_bundled_plugins_hashes_cover_every_kernel_source_file() -> None:
    files = {p.name for m in PLUGINS for p in kernel_source_files(m).values()}
    assert files == {p.name for p in (ROOT / "kernels").glob("*.py")}
    attention = {p.name for p in kernel_source_files("evotune.kernels.attention").values()}
    assert "tile_schedule.py" in attention  # the file the hand-kept list once left out
    assert "matmul.py" not in attention


_EDIT_EACH = """
import json, sys
from pathlib import Path
from evotune.source_hash import kernel_source_hash
plugins = sys.argv[1:]
base = {m: kernel_source_hash(m) for m in plugins}
unchanged = []
for path in sorted(Path("kernels").glob("*.py")):
    text = path.read_text()
    path.write_text(text + "\\n# edited\\n")
    if all(kernel_source_hash(m) == base[m] for m in plugins):
        unchanged.append(path.name)
    path.write_text(text)
print(json.dumps(unchanged))
"""


def test_editing_any_kernel_source_file_changes_a_plugin_hash(tmp_path: Path) -> None:
    """On a copy of the checkout (the hash is read, not imported: edits show at once), where
    `evotune.kernels` is the copy's kernels/."""
    for folder in ("evotune", "kernels"):
        shutil.copytree(ROOT / folder, tmp_path / folder, ignore=shutil.ignore_patterns("*.pyc"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    proc = subprocess.run(
        [sys.executable, "-c", _EDIT_EACH, *PLUGINS],
        cwd=tmp_path,
        env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == []
