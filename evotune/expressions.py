"""A tiny, safe evaluator for the constraint and condition expressions of search spaces.

Only literals, names, arithmetic, comparisons, boolean logic, `x if c else y` and a few
pure functions are allowed: a search-space file must never be able to run code.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any

from evotune.errors import ExpressionError

__all__ = ["compile_expression", "evaluate", "names_in"]


_BIN_OPS: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_CMP_OPS: dict[type[ast.cmpop], Callable[[Any, Any], Any]] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.In: lambda a, b: a in b,
    ast.NotIn: lambda a, b: a not in b,
}
_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "min": min,
    "max": max,
    "abs": abs,
    "ceil": math.ceil,
    "floor": math.floor,
    "log2": math.log2,
}


_ALLOWED_NODES = (
    ast.Expression,
    ast.Constant,
    ast.Name,
    ast.Load,
    ast.Tuple,
    ast.List,
    ast.Set,
    ast.UnaryOp,
    ast.Not,
    ast.USub,
    ast.UAdd,
    ast.BinOp,
    *_BIN_OPS,
    ast.BoolOp,
    ast.And,
    ast.Or,
    ast.Compare,
    *_CMP_OPS,
    ast.IfExp,
)


@lru_cache(maxsize=1024)
def compile_expression(source: str) -> ast.Expression:
    """Parse and vet an expression once; raises ExpressionError if it is not allowed."""
    try:
        tree = ast.parse(source, mode="eval")
    except SyntaxError as exc:
        raise ExpressionError(f"does not parse: {exc.msg}") from None
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name) or node.func.id not in _FUNCTIONS:
                raise ExpressionError(f"only {sorted(_FUNCTIONS)} may be called")
            if node.keywords or any(isinstance(a, ast.Starred) for a in node.args):
                raise ExpressionError("functions take plain positional arguments")
        elif not isinstance(node, _ALLOWED_NODES):
            # An allow-list, so that what passes here is exactly what _eval evaluates: a
            # file is refused as it loads, never halfway through a search.
            raise ExpressionError(f"{type(node).__name__} is not allowed")
    return tree


def names_in(source: str) -> set[str]:
    """The free names an expression reads (function names excluded)."""
    tree = compile_expression(source)
    called = {
        n.func.id
        for n in ast.walk(tree)
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)
    }
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)} - called


def evaluate(source: str, namespace: Mapping[str, Any]) -> Any:
    """Evaluate an expression over `namespace` (shape dims and config values)."""
    return _eval(compile_expression(source).body, namespace)


def _eval(node: ast.AST, ns: Mapping[str, Any]) -> Any:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        if node.id in ("True", "False", "None"):
            return {"True": True, "False": False, "None": None}[node.id]
        if node.id not in ns:
            raise ExpressionError(f"unknown name {node.id!r}")
        return ns[node.id]
    if isinstance(node, ast.Tuple | ast.List | ast.Set):
        return tuple(_eval(e, ns) for e in node.elts)
    if isinstance(node, ast.UnaryOp):
        value = _eval(node.operand, ns)
        if isinstance(node.op, ast.Not):
            return not value
        if isinstance(node.op, ast.USub):
            return -value
        if isinstance(node.op, ast.UAdd):
            return +value
    if isinstance(node, ast.BinOp) and type(node.op) in _BIN_OPS:
        return _BIN_OPS[type(node.op)](_eval(node.left, ns), _eval(node.right, ns))
    if isinstance(node, ast.BoolOp):
        if isinstance(node.op, ast.And):
            return all(_eval(v, ns) for v in node.values)
        return any(_eval(v, ns) for v in node.values)
    if isinstance(node, ast.Compare):
        left = _eval(node.left, ns)
        for op, comparator in zip(node.ops, node.comparators, strict=True):
            right = _eval(comparator, ns)
            if not _CMP_OPS[type(op)](left, right):
                return False
            left = right
        return True
    if isinstance(node, ast.IfExp):
        return _eval(node.body, ns) if _eval(node.test, ns) else _eval(node.orelse, ns)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        return _FUNCTIONS[node.func.id](*(_eval(a, ns) for a in node.args))
    raise ExpressionError(f"{type(node).__name__} is not allowed")
