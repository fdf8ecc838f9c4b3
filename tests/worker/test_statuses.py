"""How exceptions become trial statuses, and their stored text."""

from __future__ import annotations

import pytest
import torch
from triton.compiler.errors import CompilationError
from triton.runtime.errors import OutOfResources, PTXASError

from evotune.records import TrialStatus
from evotune.worker.statuses import classify_exception, describe_exception


@pytest.mark.parametrize("stage", ["compile", "check", "timing"])
def test_out_of_resources_is_its_own_status(stage: str) -> None:
    exc = OutOfResources(262144, 232448, "shared memory")
    assert classify_exception(exc, stage) is TrialStatus.OUT_OF_RESOURCES


def test_cuda_oom_and_launch_resource_errors_are_out_of_resources() -> None:
    assert (
        classify_exception(torch.cuda.OutOfMemoryError("CUDA out of memory"), "inputs")
        is TrialStatus.OUT_OF_RESOURCES
    )
    launch = RuntimeError("Triton Error [CUDA]: too many resources requested for launch")
    assert classify_exception(launch, "compile") is TrialStatus.OUT_OF_RESOURCES


def test_compilation_errors_are_compile_errors_at_any_stage() -> None:
    assert (
        classify_exception(CompilationError(None, None, "bad"), "timing")
        is TrialStatus.COMPILE_ERROR
    )
    assert classify_exception(PTXASError("ptxas died"), "check") is TrialStatus.COMPILE_ERROR


def test_other_errors_depend_on_whether_the_kernel_ran_once() -> None:
    exc = ValueError("config: BLOCK_M must be a power of two")
    assert classify_exception(exc, "compile") is TrialStatus.COMPILE_ERROR
    assert classify_exception(exc, "timing") is TrialStatus.CRASHED
    assert classify_exception(exc, "inputs") is TrialStatus.CRASHED


def test_a_broken_context_wins_over_everything() -> None:
    exc = OutOfResources(1, 0, "shared memory")
    assert classify_exception(exc, "compile", context_broken=True) is TrialStatus.CUDA_ERROR


def test_describe_exception_keeps_type_message_and_frames() -> None:
    try:
        raise KeyError("BLOCK_M")
    except KeyError as exc:
        text = describe_exception(exc)
    assert text.startswith("KeyError: 'BLOCK_M'")
    assert "test_statuses.py" in text
