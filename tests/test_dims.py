"""Shape dims with declared defaults: complete and canonical forms (evotune/dims.py)."""

from __future__ import annotations

from evotune.dims import canonical_dims, complete_dims

DEFAULTS = {"Hkv": "H", "Skv": "S"}
MHA = {"B": 1, "H": 8, "S": 512}


def test_complete_fills_only_what_is_left_out() -> None:
    assert complete_dims(MHA, DEFAULTS) == {**MHA, "Hkv": 8, "Skv": 512}
    assert complete_dims({**MHA, "Hkv": 2}, DEFAULTS) == {**MHA, "Hkv": 2, "Skv": 512}
    assert complete_dims({}, {}) == {}


def test_canonical_leaves_out_the_dims_at_their_default() -> None:
    assert canonical_dims({**MHA, "Hkv": 8, "Skv": 512}, DEFAULTS) == MHA
    assert canonical_dims({**MHA, "Hkv": 2, "Skv": 512}, DEFAULTS) == {**MHA, "Hkv": 2}
    assert canonical_dims(MHA, DEFAULTS) == MHA


def test_a_default_may_read_one_declared_before_it() -> None:
    chained = {"Hkv": "H", "G": "H // Hkv"}
    assert complete_dims({"H": 8}, chained) == {"H": 8, "Hkv": 8, "G": 1}
    assert complete_dims({"H": 8, "Hkv": 2}, chained)["G"] == 4
    assert canonical_dims({"H": 8, "Hkv": 2, "G": 4}, chained) == {"H": 8, "Hkv": 2}


def test_a_value_of_another_type_is_not_the_default() -> None:
    # True == 1 in Python, but a bool is not the int it equals.
    assert canonical_dims({"a": 1, "b": True}, {"b": "a"}) == {"a": 1, "b": True}
    assert canonical_dims({"a": 1, "b": 1}, {"b": "a"}) == {"a": 1}
