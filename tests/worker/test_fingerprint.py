"""The environment fingerprint and its hash."""

from __future__ import annotations

import torch
import triton

from evotune.fingerprint import FINGERPRINT_KEYS, driver_version, environment, fingerprint_hash
from evotune.source_hash import kernel_source_hash

from .helpers import FAULT_MODULE

BASE = {
    "gpu": "NVIDIA H100 80GB HBM3",
    "driver": "570.86.15",
    "cuda": "12.8",
    "torch": "2.11.0",
    "triton": "3.6.0",
    "kernel_source_hash": "abc",
    "interpreted": False,
    "device_capability": [9, 0],
    "sm_count": 132,
}


def test_hash_is_stable_and_ignores_key_order_and_extra_keys() -> None:
    reordered = dict(reversed(list(BASE.items())))
    assert fingerprint_hash(BASE) == fingerprint_hash(reordered)
    assert fingerprint_hash(BASE) == fingerprint_hash({**BASE, "note": "not identifying"})
    assert len(fingerprint_hash(BASE)) == 16


def test_hash_changes_with_every_identifying_key() -> None:
    base = fingerprint_hash(BASE)
    for key in FINGERPRINT_KEYS:
        changed = {**BASE, key: "something else"}
        assert fingerprint_hash(changed) != base, key


def test_capability_as_tuple_or_list_hashes_alike() -> None:
    assert fingerprint_hash({**BASE, "device_capability": (9, 0)}) == fingerprint_hash(BASE)


def test_interpreter_environment() -> None:
    env = environment(FAULT_MODULE, interpreted=True)
    assert set(env) == set(FINGERPRINT_KEYS)
    assert env["interpreted"] is True
    assert env["torch"] == torch.__version__ and env["triton"] == triton.__version__
    assert env["kernel_source_hash"] == kernel_source_hash(FAULT_MODULE)
    assert env["device_capability"] is None and env["cuda"] is None


def test_driver_version_is_a_string_or_none() -> None:
    version = driver_version()
    if torch.cuda.is_available():
        assert isinstance(version, str) and version[0].isdigit()
    else:
        assert version is None or isinstance(version, str)
