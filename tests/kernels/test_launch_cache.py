"""kernels/launch_cache.py on the CPU: the bounded cache, what the call key tells apart, rebased
descriptors, and the direct launch of a compiled kernel (against a stand-in for Triton's JIT)."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from triton import knobs
from triton.tools.tensor_descriptor import TensorDescriptor

from evotune.kernels.launch_cache import BoundedCache, CompiledLaunch, call_key, rebased, tensor_key


def test_bounded_cache_evicts_the_oldest_past_its_size() -> None:
    cache: BoundedCache[int] = BoundedCache(2)
    cache.put("a", 1)
    cache.put("b", 2)
    cache.put("a", 10)  # a key already held: replaced, nothing evicted
    assert len(cache) == 2 and cache.get("a") == 10
    cache.put("c", 3)
    assert len(cache) == 2 and cache.get("a") is None
    assert cache.get("b") == 2 and cache.get("c") == 3


def test_bounded_cache_ignores_none_and_unhashable_keys() -> None:
    cache: BoundedCache[int] = BoundedCache(4)
    cache.put(None, 1)
    cache.put(("x", [1]), 2)
    assert len(cache) == 0
    assert cache.get(None) is None and cache.get(("x", [1])) is None


def _t(*shape: int, dtype: torch.dtype = torch.float16) -> torch.Tensor:
    return torch.zeros(*shape, dtype=dtype)


def test_call_key_is_equal_for_alike_calls_and_differs_for_any_change() -> None:
    q, k = _t(1, 2, 8, 16), _t(1, 2, 8, 16)
    config = {"BLOCK_M": 16, "TMA": False}
    key = call_key((q, k), config, True)
    assert key == call_key((_t(1, 2, 8, 16), _t(1, 2, 8, 16)), dict(config), True)
    hash(key)
    changed = {
        "shape": call_key((_t(1, 2, 9, 16), k), config, True),
        "stride": call_key((_t(1, 8, 2, 16).transpose(1, 2), k), config, True),
        "dtype": call_key((_t(1, 2, 8, 16, dtype=torch.float32), k), config, True),
        "alignment": call_key((_t(257)[1:].view(1, 2, 8, 16), k), config, True),
        "config value": call_key((q, k), {**config, "BLOCK_M": 32}, True),
        # 64.0 == 64, but the launcher must still refuse a float tile size
        "config type": call_key((q, k), {**config, "BLOCK_M": 16.0}, True),
        "no config": call_key((q, k), None, True),
        "other": call_key((q, k), config, False),
    }
    assert all(other != key for other in changed.values()), changed
    assert len(set(changed.values())) == len(changed)


def test_call_key_of_a_non_tensor_is_none() -> None:
    assert call_key(([1, 2], _t(1)), None) is None
    assert call_key((_t(1), "k"), None) is None


def test_tensor_key_reads_layout_not_values() -> None:
    a, b = _t(2, 3), torch.ones(2, 3, dtype=torch.float16)
    assert tensor_key(a) == tensor_key(b)


def test_rebased_descriptor_keeps_the_layout_and_swaps_the_base() -> None:
    first, second = _t(64, 32), _t(64, 32)
    template = TensorDescriptor(first, [64, 32], [32, 1], [16, 32])
    desc = rebased(template, second)
    assert type(desc) is TensorDescriptor and desc.base is second and template.base is first
    assert (desc.shape, desc.strides, desc.block_shape) == ([64, 32], [32, 1], [16, 32])
    assert desc.padding == template.padding


class _Compiled:
    """Stands in for Triton's CompiledKernel: records what its launcher was given."""

    function = 1234
    packed_metadata = (4, 1, 0)

    def __init__(self) -> None:
        self.launches: list[tuple[Any, ...]] = []

    def run(self, *args: Any) -> None:
        self.launches.append(args)


class _Jit:
    """Stands in for a JITFunction with params (X, n, BLOCK: constexpr)."""

    arg_names = ("X", "n", "BLOCK")

    def __init__(self) -> None:
        self.compiled = _Compiled()
        self.jit_launches: list[tuple[Any, tuple[Any, ...], dict[str, Any]]] = []

    def __getitem__(self, grid: Any) -> Any:
        def launch(*args: Any, **kwargs: Any) -> _Compiled:
            self.jit_launches.append((grid, args, kwargs))
            return self.compiled

        return launch


@pytest.fixture
def stream_query(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Triton's current-stream query, answered without a driver; records the devices asked."""
    from triton.runtime import driver

    asked: list[int] = []

    class Active:
        def get_current_stream(self, device: int) -> int:
            asked.append(device)
            return 77

    monkeypatch.setattr(driver, "_active", Active())
    return asked


def test_compiled_launch_goes_through_the_jit_once_then_direct(stream_query: list[int]) -> None:
    fn = _Jit()
    launch = CompiledLaunch(fn, (5,), {"BLOCK": 16}, {"num_warps": 4}, device=3)
    launch("x0", 10)
    assert fn.jit_launches == [((5, 1, 1), ("x0", 10), {"BLOCK": 16, "num_warps": 4})]
    assert launch.compiled and not fn.compiled.launches
    launch("x1", 11)
    launch("x2", 12)
    assert len(fn.jit_launches) == 1
    # The JIT's own runner passes: grid, stream, function, metadata, launch metadata, the two
    # hooks, then every parameter in order (constexprs included).
    assert fn.compiled.launches == [
        (5, 1, 1, 77, 1234, (4, 1, 0), None, None, None, "x1", 11, 16),
        (5, 1, 1, 77, 1234, (4, 1, 0), None, None, None, "x2", 12, 16),
    ]
    assert stream_query == [3, 3]


def test_a_registered_launch_hook_sends_every_launch_through_the_jit(
    stream_query: list[int],
) -> None:
    fn = _Jit()
    launch = CompiledLaunch(fn, (1,), {"BLOCK": 16}, {}, device=0)
    launch("x", 1)

    def hook(metadata: Any) -> None:
        pass

    knobs.runtime.launch_enter_hook.add(hook)
    try:
        launch("x", 2)
    finally:
        knobs.runtime.launch_enter_hook.remove(hook)
    launch("x", 3)
    assert [args for _, args, _ in fn.jit_launches] == [("x", 1), ("x", 2)]
    assert [args[-3:] for args in fn.compiled.launches] == [("x", 3, 16)]


def test_constexprs_before_runtime_parameters_are_refused() -> None:
    class Odd(_Jit):
        arg_names = ("BLOCK", "X", "n")

    with pytest.raises(TypeError, match="constexpr parameters must come after"):
        CompiledLaunch(Odd(), (1,), {"BLOCK": 16}, {}, device=0)
