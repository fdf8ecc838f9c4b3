from __future__ import annotations

import pytest

from evotune.errors import ExpressionError
from evotune.expressions import compile_expression, evaluate, names_in


def test_arithmetic_comparison_and_logic() -> None:
    ns = {"BLOCK_M": 128, "S": 100, "causal": True, "dtype": "float16"}
    assert evaluate("BLOCK_M < 2 * S and causal", ns) is True
    assert evaluate("BLOCK_M <= S or dtype == 'float32'", ns) is False
    assert evaluate("4 if dtype == 'float32' else 2", ns) == 2
    assert evaluate("max(BLOCK_M, S) // 4", ns) == 32
    assert evaluate("dtype in ('float16', 'bfloat16')", ns) is True
    assert evaluate("1 < BLOCK_M < 256", ns) is True


def test_names_in_excludes_functions() -> None:
    assert names_in("max(BLOCK_M, BLOCK_N) <= S") == {"BLOCK_M", "BLOCK_N", "S"}


@pytest.mark.parametrize(
    "source",
    ["__import__('os')", "x.__class__", "open('f')", "x[0]", "(lambda: 1)()", "(y := 2)"],
)
def test_code_is_refused(source: str) -> None:
    with pytest.raises(ExpressionError):
        evaluate(source, {"x": [1]})


@pytest.mark.parametrize(
    "source",
    ["[x for x in y]", "x & 1", "~x", "f'{x}'", "{1: 2}", "max(*y)", "min(x, key=abs)"],
)
def test_what_evaluate_cannot_do_is_refused_before_evaluation(source: str) -> None:
    """Refused by compile_expression itself, so a space file fails as it loads."""
    with pytest.raises(ExpressionError, match=r"not allowed|plain positional"):
        compile_expression(source)


def test_unknown_name_and_syntax_error() -> None:
    with pytest.raises(ExpressionError, match="unknown name 'Q'"):
        evaluate("Q > 1", {})
    with pytest.raises(ExpressionError, match="does not parse"):
        evaluate("1 +", {})
