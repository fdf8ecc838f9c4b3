"""`evotune.autotune`: a drop-in for `@triton.autotune` backed by evotune's store.

- `configs.py`: the decorator's `configs`/`constraints` as a SearchSpace;
- `store.py`: lookups, recorded misses (pending studies), trials and the published best;
- `tuner.py`: the in-process search on a call's own arguments;
- `decorator.py`: `autotune` and the `Autotuned` kernel it returns.

Named `autotuning`, not `autotune`: a submodule `evotune.autotune` would replace the
function `evotune.autotune` on the package once imported.
"""

from __future__ import annotations

from evotune.autotuning.decorator import Autotuned, autotune

__all__ = ["Autotuned", "autotune"]
