"""The kernel source hash: what a config was measured on, found by following imports.

A plug-in's hash covers its own module and every module it imports from its own package,
directly or through others, at any depth, at module level or inside functions, by `import`
statements or by `importlib.import_module` / `importlib.util.find_spec` / `__import__`
calls with a literal name. The imports are read from the source (`ast`), never executed,
so the service can hash the kernels installed beside it without loading torch or Triton.

"Its own package" is the package that holds the plug-in module (`evotune.kernels` for
`evotune.kernels.attention`); a plug-in that is a top-level module has no package, and then its
single-file neighbours that it imports count instead.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import inspect
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

from evotune.errors import SpaceFileError

__all__ = ["function_source_hash", "kernel_source_files", "kernel_source_hash"]

_IMPORT_CALLS = {"import_module", "find_spec", "__import__"}


def kernel_source_hash(module_name: str) -> str:
    """Short hash of the source of a plug-in and of what it imports from its package."""
    digest = hashlib.sha256()
    for name, path in kernel_source_files(module_name).items():
        digest.update(name.encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def function_source_hash(fn: Callable[..., Any]) -> str:
    """Short hash of one function's own source (a kernel decorated with `evotune.autotune`):
    the functions it calls are not followed."""
    try:
        source = textwrap.dedent(inspect.getsource(fn))
    except (OSError, TypeError) as exc:
        raise SpaceFileError(f"cannot read the source of {fn!r}: {exc}") from None
    return hashlib.sha256(source.encode()).hexdigest()[:16]


def kernel_source_files(module_name: str) -> dict[str, Path]:
    """Module name -> source file of everything the hash covers, sorted by name (the
    package's `__init__` files on the way included)."""
    try:
        spec = importlib.util.find_spec(module_name)
    except (ImportError, ValueError) as exc:
        raise SpaceFileError(f"cannot find kernel module {module_name!r}: {exc}") from None
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        raise SpaceFileError(f"cannot find the Python source of kernel module {module_name!r}")
    origin = Path(spec.origin).resolve()
    is_package = origin.name == "__init__.py"
    package = module_name if is_package else module_name.rpartition(".")[0]
    # The directory of the plug-in's package, which dotted names below `package` map into.
    root = origin.parent
    found: dict[str, Path] = {}
    queue = [module_name]
    while queue:
        name = queue.pop()
        if name in found:
            continue
        path = origin if name == module_name else _file_of(name, package, root)
        if path is None:
            continue
        found[name] = path
        queue += [n for n in _imported_names(path, name) if _inside(n, package)]
    for name in list(found):  # `import pkg.a.b` runs pkg/__init__ and pkg/a/__init__ too
        while package and name != package and "." in name:
            name = name.rpartition(".")[0]
            if _inside(name, package) and name not in found:
                path = _file_of(name, package, root)
                if path is not None:
                    found[name] = path
    return dict(sorted(found.items()))


def _inside(name: str, package: str) -> bool:
    if not package:  # a top-level plug-in: its top-level neighbours
        return "." not in name
    return name == package or name.startswith(package + ".")


def _file_of(name: str, package: str, root: Path) -> Path | None:
    """The source file of module `name` under the package directory `root` (None if it is
    not a module there: a function or class imported with `from x import y`)."""
    rest = name[len(package) :].lstrip(".") if package else name
    base = root.joinpath(*rest.split(".")) if rest else root
    if package and not rest:
        candidates = [root / "__init__.py"]
    elif package:
        candidates = [base.with_suffix(".py"), base / "__init__.py"]
    else:  # single files beside a top-level plug-in, never whole installed packages
        candidates = [base.with_suffix(".py")]
    return next((c.resolve() for c in candidates if c.is_file()), None)


def _imported_names(path: Path, module_name: str) -> list[str]:
    """Every module name that the source of `module_name` imports, absolute."""
    is_package = path.name == "__init__.py"
    here = module_name if is_package else module_name.rpartition(".")[0]
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = here.split(".") if here else []
                parent = ".".join(parts[: len(parts) - (node.level - 1)])
                base = f"{parent}.{base}".strip(".") if base else parent
            names.append(base)
            names += [f"{base}.{alias.name}" for alias in node.names if alias.name != "*"]
        elif isinstance(node, ast.Call) and node.args:
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            first = node.args[0]
            if (
                called in _IMPORT_CALLS
                and isinstance(first, ast.Constant)
                and isinstance(first.value, str)
            ):
                names.append(first.value)
    return [n for n in names if n]
