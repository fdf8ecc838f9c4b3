"""The small process helpers of the worker."""

from __future__ import annotations

import signal

from evotune.worker.process import child_env, describe_exit


def test_describe_exit_names_signals() -> None:
    assert describe_exit(-int(signal.SIGSEGV)) == "SIGSEGV"
    assert describe_exit(-int(signal.SIGKILL)) == "SIGKILL"
    assert describe_exit(3) == "exit code 3"


def test_child_env_switches_the_interpreter_and_pins_the_gpu() -> None:
    assert child_env(True, None) == {"TRITON_INTERPRET": "1", "CUDA_VISIBLE_DEVICES": ""}
    assert child_env(False, 3) == {"TRITON_INTERPRET": None, "CUDA_VISIBLE_DEVICES": "3"}
