"""A program that imports its kernel from a module (docs/guide/own-kernel.md, "Tuning recorded
misses later"): its misses name the kernel `scale.scale`, which `evotune tune-pending` can
import, where a kernel defined in the script itself would be `__main__.scale`.

    TRITON_INTERPRET=1 python scale_app.py                           # a miss, recorded
    PYTHONPATH=. evotune tune-pending --interpret                    # tuned, without this program
    TRITON_INTERPRET=1 python scale_app.py                           # launches the winner
"""

from __future__ import annotations

import scale  # examples/scale.py: the decorated kernel and a launch of it

if __name__ == "__main__":
    scale.main()
