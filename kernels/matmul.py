"""GEMM, C = A @ B (A [M, K], B [K, N], fp32 accumulation), as an evotune kernel plug-in.

`matmul()` is the public launcher; the module-level plug-in functions (`make_inputs`, `run`,
`reference`, ...) are what evotune's worker calls (see evotune/plugin.py). The Triton kernels
live in `kernels/_matmul_kernel.py`. The default config is read from the `default:` values of
`search_spaces/matmul.yaml`, the one table of defaults (this module needs pyyaml, not pydantic).

Variants, all knobs of one kernel: plain pointers (any strides), TMA tensor descriptors
(Hopper), a persistent tile loop (CTA_MULT > 0), split-K with a deterministic second pass
(SPLIT_K > 1). Triton 3.6's automatic warp specialization of the TMA K loop was a knob until
it deadlocked on an H100 (docs/results/h100.md, 2026-12-07).
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import triton
import yaml

from ._matmul_kernel import (
    REDUCE_BLOCK_M,
    REDUCE_BLOCK_N,
    matmul_kernel,
    splitk_reduce_kernel,
)

if TYPE_CHECKING:
    from evotune.plugin import DeviceInfo

__all__ = [
    "SPACE_FILE",
    "baselines",
    "bytes",
    "compile_only",
    "default_config",
    "empty_output",
    "flops",
    "make_inputs",
    "matmul",
    "reference",
    "resolve_config",
    "run",
    "unsupported",
    "warm_up",
]

SPACE_FILE = Path(__file__).resolve().parents[1] / "search_spaces" / "matmul.yaml"
_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}
_KNOBS = (
    "BLOCK_M",
    "BLOCK_N",
    "BLOCK_K",
    "GROUP_M",
    "num_warps",
    "num_stages",
    "SPLIT_K",
    "CTA_MULT",
    "TMA",
)
# Element offsets at or past this take the kernels' 64-bit address arithmetic (LARGE).
_INDEX_LIMIT = 2**31
# The split-K workspace is addressed plane by plane with a 32-bit step of M * N elements.
_PLANE_LIMIT = 2**31


def _interpreted() -> bool:
    """True when Triton runs kernels through its CPU interpreter (TRITON_INTERPRET=1 at import)."""
    return type(matmul_kernel).__name__ == "InterpretedFunction"


# --- config -------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _yaml_defaults() -> dict[str, Any]:
    raw = yaml.safe_load(SPACE_FILE.read_text())
    return {name: spec["default"] for name, spec in raw["parameters"].items()}


def default_config() -> dict[str, Any]:
    """The config that `config=None` runs: the parameter defaults of search_spaces/matmul.yaml."""
    return dict(_yaml_defaults())


def _power_of_two(value: Any, low: int, high: int) -> bool:
    return isinstance(value, int) and low <= value <= high and value & (value - 1) == 0


def resolve_config(config: Mapping[str, Any] | None) -> dict[str, Any]:
    """The config with defaults filled in, its values checked (ValueError naming `config`)."""
    cfg = default_config()
    if config:
        unknown = sorted(set(config) - set(_KNOBS))
        if unknown:
            raise ValueError(f"config: unknown keys {unknown}; known: {', '.join(_KNOBS)}")
        cfg.update(config)
    # tl.dot needs every extent >= 16; the register file and shared memory end far below 512.
    for key in ("BLOCK_M", "BLOCK_N", "BLOCK_K"):
        if not _power_of_two(cfg[key], 16, 256):
            raise ValueError(f"config: {key} must be a power of two in [16, 256], got {cfg[key]!r}")
    if not isinstance(cfg["GROUP_M"], int) or cfg["GROUP_M"] < 1:
        raise ValueError(f"config: GROUP_M must be an int >= 1, got {cfg['GROUP_M']!r}")
    if cfg["num_warps"] not in (1, 2, 4, 8, 16):
        raise ValueError(f"config: num_warps must be 1, 2, 4, 8 or 16, got {cfg['num_warps']!r}")
    if not isinstance(cfg["num_stages"], int) or not 1 <= cfg["num_stages"] <= 8:
        raise ValueError(f"config: num_stages must be an int in [1, 8], got {cfg['num_stages']!r}")
    if not _power_of_two(cfg["SPLIT_K"], 1, 64):
        raise ValueError(
            f"config: SPLIT_K must be a power of two in [1, 64], got {cfg['SPLIT_K']!r}"
        )
    if not isinstance(cfg["CTA_MULT"], int) or cfg["CTA_MULT"] < 0:
        raise ValueError(f"config: CTA_MULT must be an int >= 0, got {cfg['CTA_MULT']!r}")
    if not isinstance(cfg["TMA"], bool):
        raise ValueError(f"config: TMA must be a bool, got {cfg['TMA']!r}")
    return cfg


# --- inputs -------------------------------------------------------------------------------


def _check_inputs(a: Any, b: Any, out: Any) -> tuple[int, int, int]:
    """Raise ValueError naming the argument for anything the kernel cannot take; (M, N, K)."""
    for name, t in (("a", a), ("b", b)):
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dim() != 2:
            raise ValueError(f"{name} must have rank 2, got shape {tuple(t.shape)}")
        if t.dtype not in _DTYPES.values():
            raise ValueError(f"{name} has dtype {t.dtype}; supported: float16, bfloat16, float32")
    if b.dtype != a.dtype:
        raise ValueError(f"b has dtype {b.dtype}, but a has {a.dtype}")
    if b.device != a.device:
        raise ValueError(f"b is on {b.device}, but a is on {a.device}")
    if a.device.type != "cuda" and not _interpreted():
        raise ValueError(
            f"a is on {a.device}: the kernel needs CUDA tensors "
            "(or TRITON_INTERPRET=1 set before importing kernels, for the CPU interpreter)"
        )
    (M, K), (K_b, N) = a.shape, b.shape
    if K_b != K:
        raise ValueError(
            f"b has {K_b} rows, but a has {K} columns (inner dimensions of a [M, K] @ b [K, N])"
        )
    if min(M, N, K) < 1:
        raise ValueError(f"a @ b has an empty dimension: M={M}, N={N}, K={K}")
    if out is not None:
        if not isinstance(out, torch.Tensor):
            raise ValueError(f"out must be a torch.Tensor or None, got {type(out).__name__}")
        if tuple(out.shape) != (M, N) or out.dtype != a.dtype or out.device != a.device:
            raise ValueError(
                f"out must be [{M}, {N}], {a.dtype}, on {a.device}; "
                f"got {list(out.shape)}, {out.dtype}, {out.device}"
            )
    return M, N, K


# --- launch plan --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Layout:
    """What the launch needs to know of one 2-D operand (a tensor or a stand-in)."""

    rows: int
    cols: int
    strides: tuple[int, int]
    aligned16: bool  # base address

    def tma_ok(self, itemsize: int) -> bool:
        """Whether a tensor descriptor can address it: unit inner stride, 16-byte aligned base
        and row stride (cuTensorMapEncodeTiled's rules)."""
        return self.strides[1] == 1 and self.aligned16 and (self.strides[0] * itemsize) % 16 == 0

    def span(self) -> int:
        """One past the largest element offset it reaches."""
        return (self.rows - 1) * abs(self.strides[0]) + (self.cols - 1) * abs(self.strides[1]) + 1


@dataclass(frozen=True)
class _Plan:
    grid: tuple[int]
    ints: tuple[int, ...]
    constexprs: dict[str, Any]
    split_k: int
    large: bool


def _layout(t: torch.Tensor) -> _Layout:
    s = t.stride()
    return _Layout(t.shape[0], t.shape[1], (s[0], s[1]), t.data_ptr() % 16 == 0)


def _plan(
    M: int,
    N: int,
    K: int,
    dtype: torch.dtype,
    layouts: tuple[_Layout, _Layout, _Layout],
    cfg: Mapping[str, Any],
    sm_count: int,
) -> _Plan:
    bm, bn, bk, split_k = cfg["BLOCK_M"], cfg["BLOCK_N"], cfg["BLOCK_K"], cfg["SPLIT_K"]
    a, b, c = layouts
    itemsize = dtype.itemsize
    if split_k > 1 and M * N >= _PLANE_LIMIT:
        raise ValueError(f"config: SPLIT_K > 1 needs M * N < 2^31 (got M={M}, N={N})")
    # Descriptors where the layout allows; other layouts run on pointers (never wrong, and
    # the search space refuses TMA for shapes whose contiguous rows are misaligned).
    ab_tma = bool(cfg["TMA"]) and a.tma_ok(itemsize) and b.tma_ok(itemsize)
    # Split-K partials go to the fp32 workspace by pointers.
    c_tma = ab_tma and split_k == 1 and c.tma_ok(itemsize)
    large = max(a.span(), b.span(), c.span(), split_k * M * N) >= _INDEX_LIMIT
    work = triton.cdiv(M, bm) * triton.cdiv(N, bn) * split_k
    persistent = cfg["CTA_MULT"] > 0
    grid = (min(work, cfg["CTA_MULT"] * sm_count),) if persistent else (work,)
    ints = (M, N, K, *a.strides, *b.strides, *c.strides)
    constexprs = {
        "BLOCK_M": bm,
        "BLOCK_N": bn,
        "BLOCK_K": bk,
        "GROUP_M": cfg["GROUP_M"],
        "SPLIT_K": split_k,
        "PERSISTENT": persistent,
        "AB_TMA": ab_tma,
        "C_TMA": c_tma,
        "EVEN_K": K % bk == 0,
        "LARGE": large,
        # fp32 inputs: exact fp32 products (the reference has TF32 off); 16-bit: the MMA.
        "DOT_PRECISION": "ieee" if dtype == torch.float32 else "tf32",
        # Divisibility the JIT does not see (it only knows "divisible by 16"): lets rows
        # that are 4- or 8-byte aligned load by cp.async and store vector-wide.
        "DIV_K": _pow2_divisor(K),
        "DIV_N": _pow2_divisor(N),
        "DIV_AM": _pow2_divisor(a.strides[0]),
        "DIV_BK": _pow2_divisor(b.strides[0]),
        "DIV_CM": _pow2_divisor(c.strides[0]),
    }
    return _Plan(grid, ints, constexprs, split_k, large)


def _pow2_divisor(n: int) -> int:
    """The largest power of two that divides n, from 1 to 8 (1 for 16 and more, and for 0
    and 1: the JIT specializes those itself, and a hint would add nothing)."""
    if n % 16 == 0 or n == 1:
        return 1
    d = 1
    while n % (2 * d) == 0:
        d *= 2
    return d


def _descriptor(base: Any, layout: _Layout, block: list[int]) -> Any:
    from triton.tools.tensor_descriptor import TensorDescriptor

    return TensorDescriptor(base, [layout.rows, layout.cols], list(layout.strides), block)


@functools.lru_cache(maxsize=8)
def _sm_count(index: int) -> int:
    return int(torch.cuda.get_device_properties(index).multi_processor_count)


def _device_sm_count(device: torch.device) -> int:
    if device.type == "cuda":
        return _sm_count(device.index if device.index is not None else torch.cuda.current_device())
    return 4  # interpreter: a few "SMs", so that the persistent loop really loops


# --- the launcher -------------------------------------------------------------------------


def matmul(
    a: torch.Tensor,
    b: torch.Tensor,
    config: Mapping[str, Any] | None = None,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """a @ b for a [M, K] and b [K, N] of one dtype (float16, bfloat16, float32), any strides.

    Accumulates in fp32 and returns [M, N] in the inputs' dtype; config=None runs the search
    space's default config; `out` ([M, N], same dtype and device, any strides) receives the
    result if given. TMA configs use tensor descriptors where the layout allows (unit inner
    stride, 16-byte aligned base and row stride) and plain pointers (without warp
    specialization) otherwise; C goes through a descriptor only without split-K.
    """
    M, N, K = _check_inputs(a, b, out)
    cfg = resolve_config(config)
    if out is None:
        out = torch.empty((M, N), dtype=a.dtype, device=a.device)
    la, lb, lc = _layout(a), _layout(b), _layout(out)
    plan = _plan(M, N, K, a.dtype, (la, lb, lc), cfg, _device_sm_count(a.device))
    bm, bn, bk = cfg["BLOCK_M"], cfg["BLOCK_N"], cfg["BLOCK_K"]
    a_arg: Any = _descriptor(a, la, [bm, bk]) if plan.constexprs["AB_TMA"] else a
    b_arg: Any = _descriptor(b, lb, [bk, bn]) if plan.constexprs["AB_TMA"] else b
    c_arg: Any = _descriptor(out, lc, [bm, bn]) if plan.constexprs["C_TMA"] else out
    # Split-K partials: a fresh fp32 workspace from torch's caching allocator (no memset: every
    # element of every split is written, zero-length splits included).
    ws = (
        torch.empty((plan.split_k, M, N), dtype=torch.float32, device=a.device)
        if plan.split_k > 1
        else out
    )
    matmul_kernel[plan.grid](
        a_arg,
        b_arg,
        c_arg,
        ws,
        *plan.ints,
        **plan.constexprs,
        num_warps=cfg["num_warps"],
        num_stages=cfg["num_stages"],
    )
    if plan.split_k > 1:
        splitk_reduce_kernel[_reduce_grid(M, N)](
            ws,
            out,
            M,
            N,
            *lc.strides,
            SPLIT_K=plan.split_k,
            BLOCK_M=REDUCE_BLOCK_M,
            BLOCK_N=REDUCE_BLOCK_N,
            LARGE=plan.large,
            DIV_N=plan.constexprs["DIV_N"],
            DIV_CM=plan.constexprs["DIV_CM"],
            num_warps=4,
        )
    return out


def _reduce_grid(M: int, N: int) -> tuple[int, int]:
    return triton.cdiv(M, REDUCE_BLOCK_M), triton.cdiv(N, REDUCE_BLOCK_N)


# --- plug-in interface (evotune/plugin.py) ------------------------------------------------


def _dims(dims: Mapping[str, Any]) -> tuple[int, int, int, torch.dtype]:
    return int(dims["M"]), int(dims["N"]), int(dims["K"]), _DTYPES[str(dims["dtype"])]


def make_inputs(dims: Mapping[str, Any], seed: int, device: str) -> dict[str, Any]:
    """Fresh a ~ N(0, 1/K) and b ~ N(0, 1), reproducible from the seed: each output element is
    then ~ N(0, 1) whatever K, so that one tolerance fits every shape."""
    M, N, K, dtype = _dims(dims)
    gen = torch.Generator(device=device).manual_seed(int(seed))
    a = torch.randn((M, K), generator=gen, device=device, dtype=torch.float32) / math.sqrt(K)
    b = torch.randn((K, N), generator=gen, device=device, dtype=torch.float32)
    return {"a": a.to(dtype), "b": b.to(dtype)}


def empty_output(inputs: Mapping[str, Any]) -> torch.Tensor:
    a, b = inputs["a"], inputs["b"]
    return torch.empty((a.shape[0], b.shape[1]), dtype=a.dtype, device=a.device)


def run(inputs: Mapping[str, Any], out: torch.Tensor, config: Mapping[str, Any]) -> None:
    matmul(inputs["a"], inputs["b"], config=config, out=out)


@contextlib.contextmanager
def _full_fp32() -> Iterator[None]:
    """cuBLAS fp32 matmuls in full fp32 (TF32 off) for the duration, restored afterwards."""
    flags = torch.backends.cuda.matmul
    old = flags.allow_tf32
    flags.allow_tf32 = False
    try:
        yield
    finally:
        flags.allow_tf32 = old


def reference(inputs: Mapping[str, Any]) -> torch.Tensor:
    """a @ b on upcast inputs: float32 with TF32 off on the GPU, float64 on the CPU; float32."""
    a, b = inputs["a"], inputs["b"]
    if a.device.type == "cpu":
        return torch.matmul(a.double(), b.double()).float()
    with _full_fp32():
        return torch.matmul(a.float(), b.float())


def flops(dims: Mapping[str, Any]) -> float:
    return 2.0 * int(dims["M"]) * int(dims["N"]) * int(dims["K"])


def bytes(
    dims: Mapping[str, Any],
) -> float:  # the plug-in interface's name (shadows builtins.bytes)
    """The fewest bytes one call moves to or from memory: A and B read once, C written once."""
    M, N, K, dtype = _dims(dims)
    return float((M * K + K * N + M * N) * dtype.itemsize)


def baselines(inputs: Mapping[str, Any]) -> dict[str, Callable[[], torch.Tensor]]:
    """What `evotune bench` times beside the kernel: torch.matmul (cuBLAS on the GPU)."""
    a, b = inputs["a"], inputs["b"]
    label = "cublas" if a.device.type == "cuda" else "torch.matmul"
    return {label: lambda: torch.matmul(a, b)}


def unsupported(
    config: Mapping[str, Any], dims: Mapping[str, Any], device: DeviceInfo
) -> str | None:
    """Why this config cannot run for this shape on this device at all, else None."""
    try:
        cfg = resolve_config(config)
    except ValueError as exc:
        return str(exc)
    if dims.get("dtype") not in _DTYPES:
        return f"dtype {dims.get('dtype')!r} is not supported ({', '.join(_DTYPES)})"
    M, N, K, dtype = _dims(dims)
    if min(M, N, K) < 1:
        return f"empty dimension: M={M}, N={N}, K={K}"
    if cfg["SPLIT_K"] > 1 and M * N >= _PLANE_LIMIT:
        return f"SPLIT_K > 1 needs M * N < 2^31 (M={M}, N={N})"
    if device.interpreted:
        if dtype == torch.bfloat16:
            return "the CPU interpreter cannot run bf16 dots"
        if cfg["TMA"]:
            return "TMA needs a Hopper GPU; the interpreter would time plain loads"
        return None
    capability = device.capability or (0, 0)
    if cfg["TMA"] and capability < (9, 0):
        return f"TMA needs sm_90 or newer, this is {device.name} {capability}"
    if cfg["TMA"]:
        row_bytes = {"K (rows of a)": K * dtype.itemsize, "N (rows of b and c)": N * dtype.itemsize}
        for what, nbytes in row_bytes.items():
            if nbytes % 16:
                return f"TMA needs 16-byte aligned rows; {what} is {nbytes} bytes"
    return None


def warm_up(dims: Mapping[str, Any], config: Mapping[str, Any]) -> list[Any]:
    """Compile the kernels a config launches for contiguous inputs of this shape without
    launching them, through the JIT's warm-up (so that the cache key is the launch's own).
    Returns Triton's compiled kernels (the split-K pass second, if any)."""
    from triton.runtime.jit import MockTensor

    cfg = resolve_config(config)
    M, N, K, dtype = _dims(dims)
    la, lb, lc = (
        _Layout(M, K, (K, 1), True),
        _Layout(K, N, (N, 1), True),
        _Layout(M, N, (N, 1), True),
    )
    # The grid does not change the compiled code: any SM count will do.
    plan = _plan(M, N, K, dtype, (la, lb, lc), cfg, 132)
    bm, bn, bk = cfg["BLOCK_M"], cfg["BLOCK_N"], cfg["BLOCK_K"]
    a_arg: Any = (
        _descriptor(MockTensor(dtype), la, [bm, bk]) if plan.constexprs["AB_TMA"] else dtype
    )
    b_arg: Any = (
        _descriptor(MockTensor(dtype), lb, [bk, bn]) if plan.constexprs["AB_TMA"] else dtype
    )
    c_arg: Any = _descriptor(MockTensor(dtype), lc, [bm, bn]) if plan.constexprs["C_TMA"] else dtype
    ws: Any = torch.float32 if plan.split_k > 1 else dtype
    kernels = [
        matmul_kernel.warmup(
            a_arg,
            b_arg,
            c_arg,
            ws,
            *plan.ints,
            grid=plan.grid,
            **plan.constexprs,
            num_warps=cfg["num_warps"],
            num_stages=cfg["num_stages"],
        )
    ]
    if plan.split_k > 1:
        kernels.append(
            splitk_reduce_kernel.warmup(
                torch.float32,
                dtype,
                M,
                N,
                *lc.strides,
                grid=_reduce_grid(M, N),
                SPLIT_K=plan.split_k,
                BLOCK_M=REDUCE_BLOCK_M,
                BLOCK_N=REDUCE_BLOCK_N,
                LARGE=plan.large,
                DIV_N=plan.constexprs["DIV_N"],
                DIV_CM=plan.constexprs["DIV_CM"],
                num_warps=4,
            )
        )
    return kernels


def compile_only(dims: Mapping[str, Any], config: Mapping[str, Any], device: Any = None) -> None:
    """Fill Triton's cache for this shape/config without launching (needs a CUDA driver), so
    that a pool of CPU processes can compile ahead of the GPU worker."""
    if not _interpreted():
        warm_up(dims, config)
