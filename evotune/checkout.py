"""`evotune.kernels`, `evotune.search_spaces` and `evotune.migrations` in a plain checkout.

The repository keeps these three as top-level folders beside evotune/. An install (a wheel, or
`pip install -e .`) maps them inside evotune through pyproject's package-dir, so that no
package named `kernels` lands in site-packages. A checkout run with `PYTHONPATH=<repo>` and no
install (the GPU hosts) has no such mapping: this finder gives the same names there, and only
those three, to the folders beside the evotune/ it was imported from. (Adding the repository to
`evotune.__path__` would be shorter, but would make every folder there, tests/ and evotune/
itself included, a subpackage of evotune.)
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from importlib.abc import MetaPathFinder
from importlib.machinery import ModuleSpec, PathFinder
from pathlib import Path
from types import ModuleType

__all__ = ["FOLDERS", "CheckoutFolders", "install"]

FOLDERS = ("kernels", "search_spaces", "migrations")


class CheckoutFolders(MetaPathFinder):
    """Finds `evotune.<folder>` as the folder of that name under a checkout's root."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        parent, _, name = fullname.rpartition(".")
        if parent != "evotune" or name not in FOLDERS:
            return None
        # PathFinder looks the last part of the name up in the paths given.
        return PathFinder.find_spec(fullname, [str(self.root)])


def install(package_dir: Path) -> None:
    """Adds the finder when `package_dir` (evotune/) is a checkout's. It goes first, so that an
    editable install of another checkout does not answer for this one."""
    root = package_dir.parent
    if (root / "pyproject.toml").is_file():  # never beside an installed evotune
        sys.meta_path.insert(0, CheckoutFolders(root))
