"""A real kernel plug-in (y = 2x, a tiny Triton vector kernel) whose `fault` config parameter
makes it misbehave on purpose: the worker tests prove each fault ends as the right status
and that the next trial on that GPU still succeeds.

Faults: none; segfault and abort (the host process dies inside run); hang (the interpreter
sleeps from the second call on, so the run timeout fires; on a GPU a kernel spins on a flag
that is never set, bounded at 30 s so that a GPU survives even a failed kill);
compile_hang (compile_only and the first call never finish); compile_error (a static assert
fails at compile time); out_of_resources (a layout change of a 256x256 fp32 tile needs
256 KiB of shared memory); nan, unwritten, wrong (the output is wrong in those ways);
illegal_address (stores through a null pointer); device_assert (tl.device_assert fails).
The last three of the GPU-only faults are `unsupported` in the interpreter.

Faults that pass a check of the first call only (what timed-run verification must catch):
stale_queue (a persistent-style kernel takes its blocks from a global atomic counter that is
never reset: launch 1 is right, every later launch finds the queue empty and does nothing);
every_nth (every `nth`-th launch, 4 by default, writes a wrong output); first_inputs_only
(reads the input tensor it saw first for this size, as a stale cache of pointers would).
Faults of worker hygiene: leak (keeps `leak_mb` of memory alive per call: on the GPU, 1 GiB
by default, so that the device runs out; under the interpreter host memory, 64 MiB);
oom (asks for more device memory than there is: CUDA out of memory); flood (prints 40 MB to
stdout and stderr on its first call, otherwise correct).
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Mapping
from typing import Any

import torch
import triton
import triton.language as tl

FAULTS = (
    "none",
    "segfault",
    "abort",
    "hang",
    "compile_hang",
    "compile_error",
    "out_of_resources",
    "nan",
    "unwritten",
    "wrong",
    "illegal_address",
    "device_assert",
    "stale_queue",
    "every_nth",
    "first_inputs_only",
    "leak",
    "oom",
    "flood",
)
GPU_ONLY = ("out_of_resources", "illegal_address", "device_assert", "oom")
_MODES = {"none": 0, "nan": 1, "unwritten": 2, "wrong": 3, "illegal_address": 4}
_MODES.update({"compile_error": 5, "hang": 6})
_SPIN_LIMIT_NS = 30_000_000_000
_HOG_BLOCK, _HOG_WARPS = 256, 32
_MAX_SHARED = {(9, 0): 232448, (8, 0): 166912, (8, 6): 101376, (8, 9): 101376}
_calls: dict[str, int] = {}
_queues: dict[str, torch.Tensor] = {}  # device -> the work counter nobody resets
_first_inputs: dict[int, torch.Tensor] = {}  # size -> the input seen first
_kept: list[torch.Tensor] = []  # what `leak` keeps alive


@triton.jit
def _scale_kernel(x_ptr, y_ptr, flag_ptr, n, spin_ns, BLOCK: tl.constexpr, MODE: tl.constexpr):  # type: ignore[no-untyped-def]
    off = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = off < n
    x = tl.load(x_ptr + off, mask=mask, other=1.0)
    y = x * 2.0
    if MODE == 1:  # NaN in the first element: 0/0 at run time
        y = tl.where(off == 0, (x - x) / (x - x), y)
    if MODE == 2:  # only the first half is written
        mask = mask & (off < n // 2)
    if MODE == 3:
        y = y + 1.0
    if MODE == 5:
        tl.static_assert(MODE != 5, "fault injection: this config does not compile")
    if MODE == 6:  # spin on a flag nobody sets (bounded, so the GPU recovers regardless)
        start = tl.extra.cuda.globaltimer()
        flag = tl.load(flag_ptr, volatile=True)
        while (flag == 0) & (tl.extra.cuda.globaltimer() - start < spin_ns):
            flag = tl.load(flag_ptr, volatile=True)
    if MODE == 4:  # through a null pointer: an illegal address (a sticky CUDA error)
        bad = (off.to(tl.int64) * 4 + 64).to(tl.pointer_type(tl.float32))
        tl.store(bad, y, mask=mask)
    else:
        tl.store(y_ptr + off, y, mask=mask)


@triton.jit
def _queue_kernel(x_ptr, y_ptr, counter_ptr, n, BLOCK: tl.constexpr):  # type: ignore[no-untyped-def]
    # Each program takes the next block from the counter, as a persistent kernel's work queue
    # does; the bug is that nothing resets the counter after a launch.
    block = tl.atomic_add(counter_ptr, 1)
    # arange first: Triton 3.9's interpreter makes an int32 mask of `block * BLOCK + arange`.
    # off < n alone bounds the queue: a block past the last one has every offset >= n.
    off = tl.arange(0, BLOCK) + block * BLOCK
    mask = off < n
    x = tl.load(x_ptr + off, mask=mask, other=1.0)
    tl.store(y_ptr + off, x * 2.0, mask=mask)


@triton.jit(debug=True)
def _assert_kernel(x_ptr, y_ptr, n, BLOCK: tl.constexpr):  # type: ignore[no-untyped-def]
    off = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = off < n
    x = tl.load(x_ptr + off, mask=mask, other=1.0)
    tl.device_assert(x != x, "fault injection: device-side assert")
    tl.store(y_ptr + off, x * 2.0, mask=mask)


@triton.jit
def _smem_hog_kernel(x_ptr, y_ptr, BLOCK: tl.constexpr):  # type: ignore[no-untyped-def]
    r = tl.arange(0, BLOCK)
    tile = tl.load(x_ptr + r[:, None] * BLOCK + r[None, :])
    tl.store(y_ptr + r[:, None] * BLOCK + r[None, :], tl.trans(tile) + 1.0)


def _interpreted() -> bool:
    return type(_scale_kernel).__name__ == "InterpretedFunction"


def _sleep_forever() -> None:
    while True:
        time.sleep(3600)


# --- plug-in interface -------------------------------------------------------------------


def make_inputs(dims: Mapping[str, Any], seed: int, device: str) -> dict[str, Any]:
    gen = torch.Generator(device=device).manual_seed(int(seed))
    x = torch.randn(int(dims["N"]), generator=gen, device=device, dtype=torch.float32)
    hog = torch.zeros((_HOG_BLOCK, _HOG_BLOCK), device=device, dtype=torch.float32)
    return {"x": x, "flag": torch.zeros(1, device=device, dtype=torch.int32), "hog": hog}


def empty_output(inputs: Mapping[str, Any]) -> torch.Tensor:
    return torch.empty_like(inputs["x"])


def reference(inputs: Mapping[str, Any]) -> torch.Tensor:
    return inputs["x"].float() * 2.0


def flops(dims: Mapping[str, Any]) -> float:
    return float(dims["N"])


def bytes(dims: Mapping[str, Any]) -> float:
    return 8.0 * dims["N"]  # x read, y written, fp32


def unsupported(config: Mapping[str, Any], dims: Mapping[str, Any], device: Any) -> str | None:
    fault = config.get("fault", "none")
    if fault not in FAULTS:
        return f"unknown fault {fault!r}"
    if device.interpreted and fault in GPU_ONLY:
        return f"fault {fault!r} needs a GPU"
    return None


def _count_call(config: Mapping[str, Any]) -> int:
    key = repr(sorted(config.items()))
    _calls[key] = _calls.get(key, 0) + 1
    return _calls[key]


def run(inputs: Mapping[str, Any], out: torch.Tensor, config: Mapping[str, Any]) -> None:
    fault = config.get("fault", "none")
    block = int(config.get("BLOCK", 1024))
    x, n = inputs["x"], inputs["x"].numel()
    if fault == "stale_queue":
        counter = _queues.setdefault(
            str(x.device), torch.zeros(1, device=x.device, dtype=torch.int32)
        )
        _queue_kernel[(triton.cdiv(n, block),)](x, out, counter, n, BLOCK=block)
        return
    if fault == "first_inputs_only":
        x = _first_inputs.setdefault(n, x)
    if fault == "leak":
        mb = int(config.get("leak_mb", 64 if _interpreted() else 1024))
        _kept.append(torch.ones(mb << 18, device=x.device, dtype=torch.float32))
    if fault == "oom":
        total = torch.cuda.mem_get_info()[1]
        _kept.append(torch.empty(total + (1 << 30), device=x.device, dtype=torch.uint8))
    if fault == "flood" and _count_call(config) == 1:
        line = "evotune flood test " * 50 + "\n"
        for stream in (sys.stdout, sys.stderr):
            stream.write(line * (20_000_000 // len(line)))
            stream.flush()
    if fault == "every_nth" and _count_call(config) % int(config.get("nth", 4)) == 0:
        _scale_kernel[(triton.cdiv(n, block),)](
            x, out, inputs["flag"], n, _SPIN_LIMIT_NS, BLOCK=block, MODE=_MODES["wrong"]
        )
        return
    if fault == "segfault":
        os.kill(os.getpid(), signal.SIGSEGV)
    elif fault == "abort":
        os.abort()
    elif fault == "compile_hang":
        _sleep_forever()
    elif fault == "hang" and _interpreted() and _count_call(config) > 1:
        _sleep_forever()  # the first call (the "compile") returns; timing hangs
    if fault == "device_assert":
        _assert_kernel[(triton.cdiv(n, block),)](x, out, n, BLOCK=block)
    elif fault == "out_of_resources":
        hog = inputs["hog"]
        _smem_hog_kernel[(1,)](hog, hog, BLOCK=_HOG_BLOCK, num_warps=_HOG_WARPS)
    else:
        mode = 0 if fault == "hang" and _interpreted() else _MODES.get(fault, 0)
        _scale_kernel[(triton.cdiv(n, block),)](
            x, out, inputs["flag"], n, _SPIN_LIMIT_NS, BLOCK=block, MODE=mode
        )


def compile_only(dims: Mapping[str, Any], config: Mapping[str, Any], device: Any) -> None:
    """Compile without launching: through the CUDA driver when there is one (the same
    specialization as a real launch, so Triton's cache serves the worker), else straight
    to the device's architecture with triton.compile (CPU-only tests of the compile pool)."""
    fault = config.get("fault", "none")
    if fault == "compile_hang":
        _sleep_forever()
    if _interpreted() or fault in ("segfault", "abort", "stale_queue", "leak", "oom"):
        return  # nothing to compile ahead (or a kernel of its own, compiled by the worker)
    block, n = int(config.get("BLOCK", 1024)), int(dims["N"])
    if fault == "device_assert":
        kernel, sig, const, opts = (
            _assert_kernel,
            {"x_ptr": "*fp32", "y_ptr": "*fp32", "n": "i32", "BLOCK": "constexpr"},
            {"BLOCK": block},
            {},
        )
        args: tuple[Any, ...] = (torch.float32, torch.float32, n)
    elif fault == "out_of_resources":
        kernel, sig, const, opts = (
            _smem_hog_kernel,
            {"x_ptr": "*fp32", "y_ptr": "*fp32", "BLOCK": "constexpr"},
            {"BLOCK": _HOG_BLOCK},
            {"num_warps": _HOG_WARPS},
        )
        args = (torch.float32, torch.float32)
    else:
        kernel = _scale_kernel
        sig = {
            "x_ptr": "*fp32",
            "y_ptr": "*fp32",
            "flag_ptr": "*i32",
            "n": "i32",
            "spin_ns": "i64",
            "BLOCK": "constexpr",
            "MODE": "constexpr",
        }
        const, opts = {"BLOCK": block, "MODE": _MODES.get(fault, 0)}, {}
        args = (torch.float32, torch.float32, torch.int32, n, _SPIN_LIMIT_NS)
    if torch.cuda.is_available():
        compiled = kernel.warmup(*args, grid=(1,), **const, **opts)
        max_shared = triton.runtime.driver.active.utils.get_device_properties(
            torch.cuda.current_device()
        )["max_shared_mem"]
    else:
        from triton.backends.compiler import GPUTarget
        from triton.compiler import ASTSource

        cap = tuple(device.capability or (9, 0))
        names = list(sig)
        src = ASTSource(kernel, sig, {(names.index(k),): v for k, v in const.items()})
        compiled = triton.compile(
            src, target=GPUTarget("cuda", cap[0] * 10 + cap[1], 32), options=opts
        )
        max_shared = _MAX_SHARED.get(cap, 101376)
    if compiled.metadata.shared > max_shared:
        from triton.runtime.errors import OutOfResources

        raise OutOfResources(compiled.metadata.shared, max_shared, "shared memory")
