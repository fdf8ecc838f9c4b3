"""What CI's job 2 runs again: the tests marked `triton` or `extras` (.ci/run).

Job 1 runs the whole suite on the newest Triton the bounds allow, without the extras; job 2,
on the oldest Triton with PostgreSQL, Ray and Kernel Tuner, runs only what job 1 cannot have
covered. tests/conftest.py marks each test from what its module uses (read, never run), so a
new test lands in job 2 by what it imports:

- `triton`: Triton, a kernel (evotune.kernels), or evotune code that compiles or launches
  kernels (the worker, autotuning, bench, the plug-in loader);
- `extras`: an optional package (ray, psycopg, kernel_tuner) imported or importorskip-ed, or
  PostgreSQL (EVOTUNE_TEST_POSTGRES_URL, the pg_url/pg_db fixtures, a `postgres` parameter).

A name used inside a test function marks that test; anywhere else in its module (module level,
fixtures, helpers) or in a tests/ module it imports, every test of the module. A conftest.py
fixture counts by its name only (pg_url, pg_db); a test may also carry a marker itself
(tests/test_docs.py: the guide's commands that need an extra). A kernel run only by a
command-line subprocess (`evotune search --interpret`) marks nothing: the kernels and the
worker that runs them are tested on the oldest Triton by the tests that import them.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

SELF = Path(__file__).resolve()  # names what it looks for: not a use (conftest imports it)
ROOT = SELF.parents[1]
TRITON = (
    "triton",
    "evotune.kernels",
    "evotune.worker",
    "evotune.autotuning",
    "evotune.bench",
    "evotune.plugin",
)
NOT_TRITON = ("evotune.worker.evaluator",)  # the evaluator protocol: it launches nothing
EXTRAS = ("ray", "psycopg", "kernel_tuner")
POSTGRES_URL_VARIABLE = "EVOTUNE_TEST_POSTGRES_URL"
POSTGRES_FIXTURES = frozenset({"pg_url", "pg_db"})
# Calls whose first argument names a module they import.
IMPORTING_CALLS = frozenset({"importorskip", "import_module", "find_spec", "load_plugin"})


@dataclass(frozen=True)
class ModuleUse:
    """The modules (and the PostgreSQL variable) a test module uses: outside its tests, and
    in each test function by name."""

    module: frozenset[str]
    tests: dict[str, frozenset[str]]


def markers(item: pytest.Function) -> set[str]:
    """The job-2 markers of one collected test."""
    marks = markers_of(Path(item.path), item.originalname)
    callspec = getattr(item, "callspec", None)
    params = callspec.params.values() if callspec is not None else ()
    postgres = any(isinstance(p, str) and p == "postgres" for p in params)
    if postgres or POSTGRES_FIXTURES & set(item.fixturenames):
        marks.add("extras")
    return marks


def markers_of(path: Path, test: str, root: Path = ROOT) -> set[str]:
    """The markers that test function `test` of the module at `path` gets from what it uses."""
    use = _module_use(path.resolve(), root)
    names = use.module | use.tests.get(test, frozenset())
    marks = set()
    if any(_within(n, TRITON) and not _within(n, NOT_TRITON) for n in names):
        marks.add("triton")
    if any(_within(n, EXTRAS) or n == POSTGRES_URL_VARIABLE for n in names):
        marks.add("extras")
    return marks


def _within(name: str, packages: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in packages)


@cache
def _module_use(path: Path, root: Path, importing: frozenset[Path] = frozenset()) -> ModuleUse:
    package = ".".join(path.relative_to(root).parts[:-1])
    module: set[str] = set()
    tests: dict[str, set[str]] = {}
    for node, test in _nodes_by_test(ast.parse(path.read_text())):
        names = _names(node, package)
        for name in list(names):  # a tests/ module brings what it uses outside its tests
            helper = _source(name, root)
            if helper is not None and helper not in (path, SELF, *importing):
                names |= _module_use(helper, root, importing | {path}).module
        (tests.setdefault(test, set()) if test else module).update(names)
    return ModuleUse(frozenset(module), {k: frozenset(v) for k, v in tests.items()})


def _nodes_by_test(tree: ast.Module) -> Iterator[tuple[ast.AST, str | None]]:
    """Every node, with the name of the test function that holds it (one at module level or
    in a class at module level), else None."""
    for top in tree.body:
        candidates = top.body if isinstance(top, ast.ClassDef) else [top]
        tests = {id(node): name for node in candidates if (name := _test_name(node))}
        stack: list[ast.AST] = [top]
        while stack:
            node = stack.pop()
            if id(node) in tests:
                yield from ((inner, tests[id(node)]) for inner in ast.walk(node))
            else:
                yield node, None
                stack.extend(ast.iter_child_nodes(node))


def _test_name(node: ast.AST) -> str | None:
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith("test"):
        return node.name
    return None


def _names(node: ast.AST, package: str) -> set[str]:
    """The modules a node imports, or the PostgreSQL variable it names."""
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names}
    if isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:
            parts = package.split(".")[: len(package.split(".")) - node.level + 1]
            base = ".".join([*parts, *([node.module] if node.module else [])])
        return {base, *(f"{base}.{alias.name}" for alias in node.names)}
    if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
        called = node.func.attr if isinstance(node.func, ast.Attribute) else None
        called = node.func.id if isinstance(node.func, ast.Name) else called
        if called in IMPORTING_CALLS and isinstance(node.args[0].value, str):
            return {node.args[0].value}
    if isinstance(node, ast.Constant) and node.value == POSTGRES_URL_VARIABLE:
        return {POSTGRES_URL_VARIABLE}
    return set()


def _source(name: str, root: Path) -> Path | None:
    """The file of a tests/ module, if `name` is one."""
    if name.split(".")[0] != "tests":
        return None
    base = root.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None
