"""How an exception raised by a trial becomes its status, and its stored text.

How exceptions become statuses (`classify_exception`): Triton's OutOfResources, "too many
resources" launch errors and CUDA out-of-memory are `out_of_resources`; Triton compilation
and ptxas errors are `compile_error`; a CUDA context that no longer works after the error
(a tiny CUDA op fails) is `cuda_error`. Any other exception raised by the first call of
`run()` is `compile_error` (the config could not be built or launched); raised later, once
the kernel has run, it is `crashed`, and so is a failure of `make_inputs`/`reference`.

Standard library only: the parent's compile pool and the workers both use it.
"""

from __future__ import annotations

import traceback

from evotune.records import TrialStatus

__all__ = ["MAX_ERROR_TEXT", "classify_exception", "describe_exception"]

MAX_ERROR_TEXT = 4000


def describe_exception(exc: BaseException) -> str:
    """One readable text for a stored trial: type, message, and the innermost frames."""
    text = f"{type(exc).__name__}: {exc}"
    tb = traceback.extract_tb(exc.__traceback__)[-3:]
    if tb:
        text += "\n" + "".join(traceback.format_list(tb))
    return text[:MAX_ERROR_TEXT]


def classify_exception(exc: BaseException, stage: str, context_broken: bool = False) -> TrialStatus:
    """The status of a trial that raised `exc` in `stage` ('inputs', 'compile', 'check',
    'timing'). See the module docstring for the rules."""
    if context_broken:
        return TrialStatus.CUDA_ERROR
    names = {cls.__name__ for cls in type(exc).__mro__}
    message = str(exc).lower()
    if (
        "OutOfResources" in names
        or "OutOfMemoryError" in names
        or "out of resource" in message
        or "too many resources requested" in message
    ):
        return TrialStatus.OUT_OF_RESOURCES
    if names & {"CompilationError", "PTXASError"}:
        return TrialStatus.COMPILE_ERROR
    if stage == "compile":
        return TrialStatus.COMPILE_ERROR
    return TrialStatus.CRASHED
