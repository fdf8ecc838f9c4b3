"""Ahead-of-time compiles for sm_90a on a host without a GPU, for the kernel tests.

A test writes a short script that compiles what it checks and prints one JSON value a line;
`run_script` runs it in a fresh Python without TRITON_INTERPRET (the interpreter replaces the
jit functions that compile, and Gluon cannot compile inside an interpreted process) and with
the repository on the path, and returns the parsed lines. Inside such a script:

- `use_sm90a_driver()` makes the JIT compile for sm_90a: a kernel's `warmup` (compile_only's
  own path, with a launch's specialisation) asks the active driver for the target, so it then
  compiles exactly what a Hopper launch would.
- `cuobjdump(flag, cubin)` / `sass(cubin)` read a compiled cubin back with the cuobjdump that
  Triton bundles ("" where it is not bundled, so that the SASS checks are skipped).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["ROOT", "Sm90aDriver", "cuobjdump", "run_script", "sass", "spills", "use_sm90a_driver"]

ROOT = Path(__file__).resolve().parents[2]


class Sm90aDriver:
    """Triton's active driver, answering the JIT as a Hopper host's would: target sm_90a,
    device 0, the default stream."""

    def get_current_target(self) -> Any:
        from triton.backends.compiler import GPUTarget

        return GPUTarget("cuda", 90, 32)

    def get_current_device(self) -> int:
        return 0

    def get_current_stream(self, device: int | None = None) -> int:
        return 0


def use_sm90a_driver() -> None:
    """Make Sm90aDriver Triton's active driver (in the compiling subprocess only)."""
    from triton.runtime import driver

    driver.set_active(Sm90aDriver())


def cuobjdump(flag: str, cubin: bytes) -> str:
    """`cuobjdump <flag>` of a cubin (e.g. -sass, -res-usage); "" without Triton's cuobjdump."""
    import triton

    tool = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "cuobjdump"
    if not tool.exists():
        return ""
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        return subprocess.run([str(tool), flag, f.name], capture_output=True, text=True).stdout


def sass(cubin: bytes) -> str:
    return cuobjdump("-sass", cubin)


def spills(sass_text: str) -> int:
    """Local-memory stores and loads in SASS: register spills."""
    return sass_text.count("STL") + sass_text.count("LDL")


def run_script(script: str, *args: Any, timeout: float = 600) -> list[Any]:
    """Run `script` (Python source) in a subprocess without TRITON_INTERPRET, each argument as
    JSON in sys.argv[1:]; the JSON value of each line it prints. Fails the test, with the end
    of its stderr, if the script fails."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run(
        [sys.executable, "-c", script, *(json.dumps(arg) for arg in args)],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [json.loads(line) for line in proc.stdout.strip().splitlines()]
