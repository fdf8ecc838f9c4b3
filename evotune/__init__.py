"""evotune: evolutionary autotuning of Triton kernels, with every trial stored and served.

Only stdlib-backed names are imported eagerly: worker processes import `evotune.records`
and `evotune.plugin` on hosts that may lack pydantic; the space API loads on first use.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from evotune import checkout
from evotune.errors import EvotuneError, UserError
from evotune.records import Config, TrialRequest, TrialResult, TrialStatus, config_hash

checkout.install(Path(__file__).resolve().parent)  # evotune.kernels & co. without an install

if TYPE_CHECKING:
    from evotune.autotuning import autotune

__version__ = "0.1.0"

__all__ = [
    "Config",
    "EvotuneError",
    "SearchSpace",
    "Shape",
    "TrialRequest",
    "TrialResult",
    "TrialStatus",
    "UserError",
    "__version__",
    "autotune",
    "available_kernels",
    "config_hash",
    "load_space",
]

_LAZY = {"SearchSpace", "Shape", "available_kernels", "load_space"}


def __getattr__(name: str) -> Any:
    if name == "autotune":  # loads torch and Triton: only when asked for
        from evotune.autotuning import autotune

        return autotune
    if name in _LAZY:
        from evotune import space

        return getattr(space, name)
    raise AttributeError(f"module 'evotune' has no attribute {name!r}")
