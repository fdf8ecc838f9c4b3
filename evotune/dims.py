"""Shape dims with declared defaults: the complete form and the canonical one.

A search space may declare a default for a dim, as an expression over the other dims (e.g.
`Hkv: H`, `Skv: S`). A shape then has two forms: complete (every dim, defaults filled), which
expressions and kernel plug-ins read, and canonical (a dim at its default left out), which
identifies, stores and exports it. So a dim added with a default leaves every existing shape's
key as it was, and `Hkv=H` spelled out names the same shape as leaving it out.

Standard library and evotune.expressions only: kernel plug-ins on a bare GPU host import it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from evotune.expressions import evaluate

__all__ = ["canonical_dims", "complete_dims"]


def complete_dims(dims: Mapping[str, Any], defaults: Mapping[str, str]) -> dict[str, Any]:
    """`dims` with every defaulted dim it leaves out filled, in the order `defaults` declares
    them (a default may read the dims declared before it)."""
    out = dict(dims)
    for name, expr in defaults.items():
        if name not in out:
            out[name] = evaluate(expr, out)
    return out


def canonical_dims(dims: Mapping[str, Any], defaults: Mapping[str, str]) -> dict[str, Any]:
    """`dims` without the defaulted dims whose value is their default (of the same type:
    `True` is not the default `1`)."""
    complete = complete_dims(dims, defaults)
    implied = {
        name for name, expr in defaults.items() if _same(complete[name], evaluate(expr, complete))
    }
    return {name: value for name, value in dims.items() if name not in implied}


def _same(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a == b
