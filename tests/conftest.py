"""Test setup shared by the whole suite.

Without CUDA, kernels run through Triton's interpreter, which must be switched on before any
kernel module is imported. Tests marked `gpu` are skipped without CUDA. Every test gets the
markers that choose what CI's job 2 runs again (`triton`, `extras`: tests/ci_selection.py).
"""

from __future__ import annotations

import os

import pytest
import torch

from tests import ci_selection

HAS_CUDA = torch.cuda.is_available()
if not HAS_CUDA:
    os.environ.setdefault("TRITON_INTERPRET", "1")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if isinstance(item, pytest.Function):
            for name in ci_selection.markers(item):
                item.add_marker(name)
    if HAS_CUDA:
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)
