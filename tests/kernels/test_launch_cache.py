"""kernels/launch_cache.py on the CPU: the bounded cache, what the call key tells apart, rebased
descriptors, and the direct launch of a compiled kernel (against stand-ins for Triton's JIT and
for the C launch function of Triton 3.6's CudaLauncher, whose Python wrappers are Triton's own)."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from triton import knobs
from triton.tools.tensor_descriptor import TensorDescriptor

from evotune.kernels.launch_cache import BoundedCache, CompiledLaunch, call_key, rebased


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


def test_the_last_key_found_is_found_again_until_replaced_evicted_or_cleared() -> None:
    """The cache compares a key with the last one found before hashing it: what that finds must
    be what the dict holds."""
    cache: BoundedCache[str] = BoundedCache(1)
    cache.put(("a", 1), "first")
    assert cache.get(("a", 1)) == "first" and cache.get(("a", 1)) == "first"  # an equal key
    cache.put(("a", 1), "second")
    assert cache.get(("a", 1)) == "second"
    cache.put(("b", 1), "b")  # evicts ("a", 1)
    assert cache.get(("a", 1)) is None and cache.get(("b", 1)) == "b"
    cache.clear()
    assert cache.get(("b", 1)) is None and len(cache) == 0


def _t(*shape: int, dtype: torch.dtype = torch.float16) -> torch.Tensor:
    return torch.zeros(*shape, dtype=dtype)


def _qkvo() -> list[torch.Tensor]:
    return [_t(1, 2, 8, 16) for _ in range(4)]


def _changed(tensors: list[torch.Tensor], i: int, t: Any) -> list[Any]:
    return [t if n == i else other for n, other in enumerate(tensors)]


CONFIG: dict[str, Any] = {"BLOCK_M": 16, "TMA": False}


def test_call_key_is_equal_for_alike_calls_and_differs_for_any_change() -> None:
    tensors = _qkvo()
    key = call_key(tensors, CONFIG, True)
    assert key == call_key(_qkvo(), dict(CONFIG), True)
    hash(key)
    transposed = _t(1, 8, 2, 16).transpose(1, 2)
    misaligned = _t(257)[1:].view(1, 2, 8, 16)
    changed: dict[str, Any] = {}
    for i, name in enumerate("qkvo"):
        changed[f"shape of {name}"] = call_key(_changed(tensors, i, _t(1, 2, 9, 16)), CONFIG, True)
        changed[f"stride of {name}"] = call_key(_changed(tensors, i, transposed), CONFIG, True)
        changed[f"alignment of {name}"] = call_key(_changed(tensors, i, misaligned), CONFIG, True)
    changed |= {
        "dtype": call_key([t.float() for t in tensors], CONFIG, True),
        "device": call_key([t.to("meta") for t in tensors], CONFIG, True),
        "config value": call_key(tensors, {**CONFIG, "BLOCK_M": 32}, True),
        # 64.0 == 64, but the launcher must still refuse a float tile size
        "config type": call_key(tensors, {**CONFIG, "BLOCK_M": 16.0}, True),
        "config name": call_key(tensors, {"BLOCK_N": 16, "TMA": False}, True),
        "config entry added": call_key(tensors, {**CONFIG, "num_warps": 4}, True),
        "empty config": call_key(tensors, {}, True),
        "no config": call_key(tensors, None, True),
        "other": call_key(tensors, CONFIG, False),
    }
    assert all(other is not None and other != key for other in changed.values()), changed
    assert len(set(changed.values())) == len(changed)


def test_call_key_holds_the_current_cuda_device(monkeypatch: pytest.MonkeyPatch) -> None:
    """Checked with stand-ins for CUDA tensors: the key reads only their attributes."""

    class CudaTensor:
        dtype, device, is_cuda, shape = torch.float16, torch.device("cuda", 0), True, (2, 8)

        def stride(self) -> tuple[int, int]:
            return (8, 1)

        def data_ptr(self) -> int:
            return 1024

    tensors: Any = [CudaTensor() for _ in range(4)]
    monkeypatch.setattr(torch._C, "_cuda_getDevice", lambda: 0, raising=False)
    on_0 = call_key(tensors, None, True)
    monkeypatch.setattr(torch._C, "_cuda_getDevice", lambda: 1, raising=False)
    assert on_0 is not None and call_key(tensors, None, True) not in (on_0, None)


def test_call_key_of_a_non_tensor_or_of_mixed_dtypes_or_devices_is_none() -> None:
    """None: the call is planned from scratch, whose checks name the argument."""
    tensors = _qkvo()
    for i in range(4):
        assert call_key(_changed(tensors, i, [1, 2]), None) is None
        assert call_key(_changed(tensors, i, tensors[i].float()), None) is None
        assert call_key(_changed(tensors, i, tensors[i].to("meta")), None) is None
    assert call_key(tensors, [("BLOCK_M", 16)]) is None  # type: ignore[arg-type]
    assert call_key(tensors, {"BLOCK_M": [16]}) is None  # a value that cannot be hashed


def test_call_key_takes_the_four_tensors_of_an_attention_call() -> None:
    with pytest.raises(ValueError):
        call_key(_qkvo()[:2], None)


def test_call_key_reads_layout_not_values() -> None:
    tensors = _qkvo()
    assert call_key(tensors, None) == call_key([torch.ones_like(t) for t in tensors], None)


def test_a_config_changed_in_place_is_a_new_key() -> None:
    """A model passes the same dict every call, which the key does not read again while it
    equals the copy taken of it; changed in place, its key is that of a new dict alike."""
    tensors, config = _qkvo(), dict(CONFIG)
    keys = [call_key(tensors, config, True) for _ in range(3)]  # the second call copies it
    assert keys[0] == keys[1] == keys[2] == call_key(tensors, dict(CONFIG), True)
    for change in (
        lambda c: c.update(BLOCK_M=32),  # a value
        lambda c: c.update(num_warps=4),  # an entry added
        lambda c: c.pop("num_warps"),  # ... and removed again
        lambda c: c.update(BLOCK_N=c.pop("BLOCK_M")),  # a name
    ):
        before = call_key(tensors, config, True)
        change(config)
        after = [call_key(tensors, config, True) for _ in range(3)]
        assert before != after[0] == after[1] == after[2] == call_key(tensors, dict(config), True)


def test_a_config_back_to_earlier_contents_gets_their_key_again() -> None:
    tensors, config = _qkvo(), dict(CONFIG)
    first = [call_key(tensors, config, True) for _ in range(2)]
    config["BLOCK_M"] = 32
    call_key(tensors, config, True)
    config["BLOCK_M"] = 16
    assert call_key(tensors, config, True) == first[0] == first[1]


def test_an_equal_value_of_another_type_set_in_place_keeps_the_key() -> None:
    """What the key of a config passed again does not see (_ConfigTokens): 16 replaced by 16.0
    in place. A new dict with 16.0 is a new key (its plan refuses it)."""
    tensors, config = _qkvo(), dict(CONFIG)
    key = [call_key(tensors, config, True) for _ in range(2)][-1]
    config["BLOCK_M"] = 16.0
    assert call_key(tensors, config, True) == key
    assert call_key(tensors, dict(config), True) != key


def test_config_tokens_are_kept_for_a_bounded_number_of_contents() -> None:
    """A token forgotten is issued anew (a new key: planned again), never one of another
    config's."""
    from evotune.kernels.launch_cache import _ConfigTokens

    tokens = _ConfigTokens(max_contents=2)
    a, b, c = ({"BLOCK_M": m} for m in (16, 32, 64))
    first = tokens.token(dict(a))
    assert tokens.token(dict(a)) == first  # contents, not the object
    issued = {first, tokens.token(b), tokens.token(c)}
    again = tokens.token(dict(a))  # forgotten: a's token was the oldest of three
    assert len(issued) == 3 and again not in issued


def test_rebased_descriptor_keeps_the_layout_and_swaps_the_base() -> None:
    first, second = _t(64, 32), _t(64, 32)
    template = TensorDescriptor(first, [64, 32], [32, 1], [16, 32])
    desc = rebased(template, second)
    assert type(desc) is TensorDescriptor and desc.base is second and template.base is first
    assert (desc.shape, desc.strides, desc.block_shape) == ([64, 32], [32, 1], [16, 32])
    assert desc.padding == template.padding


class _Compiled:
    """Stands in for a CompiledKernel whose launcher is not Triton 3.6's CudaLauncher: records
    what its `run` was given."""

    function = 1234
    packed_metadata = (4, 1, 0)

    def __init__(self) -> None:
        self.launches: list[tuple[Any, ...]] = []

    def run(self, *args: Any) -> None:
        self.launches.append(args)


class _Jit:
    """Stands in for a JITFunction with params `arg_names` (the last one, BLOCK, a constexpr):
    records its launches and hands back `compiled`."""

    def __init__(self, compiled: Any = None, arg_names: tuple[str, ...] = ("X", "n", "BLOCK")):
        self.compiled = _Compiled() if compiled is None else compiled
        self.arg_names = arg_names
        self.jit_launches: list[tuple[Any, tuple[Any, ...], dict[str, Any]]] = []

    def __getitem__(self, grid: Any) -> Any:
        def launch(*args: Any, **kwargs: Any) -> Any:
            self.jit_launches.append((grid, args, kwargs))
            return self.compiled

        return launch


class _Active:
    """Triton's active driver, answered without a GPU: the current stream (77), and TMA
    descriptors encoded as the tuple of what they were encoded from."""

    def __init__(self) -> None:
        self.streams_asked: list[int] = []
        self.encoded: list[tuple[Any, ...]] = []
        self.utils = self

    def get_current_stream(self, device: int) -> int:
        self.streams_asked.append(device)
        return 77

    def fill_tma_descriptor(self, *args: Any) -> tuple[Any, ...]:
        self.encoded.append(args)
        return ("tma", *args)


@pytest.fixture
def active(monkeypatch: pytest.MonkeyPatch) -> _Active:
    from triton.runtime import driver

    stand_in = _Active()
    monkeypatch.setattr(driver, "_active", stand_in)
    return stand_in


def test_a_launch_through_an_unknown_launcher_goes_through_its_run(active: _Active) -> None:
    fn = _Jit()
    launch = CompiledLaunch(fn, (5,), {"BLOCK": 16}, {"num_warps": 4}, device=3)
    launch("x0", 10)
    assert fn.jit_launches == [((5, 1, 1), ("x0", 10), {"BLOCK": 16, "num_warps": 4})]
    assert launch.direct is not None and not fn.compiled.launches
    launch("x1", 11)
    launch("x2", 12)
    assert len(fn.jit_launches) == 1
    # The JIT's own runner passes: grid, stream, function, metadata, launch metadata, the two
    # hooks, then every parameter in order (constexprs included).
    assert fn.compiled.launches == [
        (5, 1, 1, 77, 1234, (4, 1, 0), None, None, None, "x1", 11, 16),
        (5, 1, 1, 77, 1234, (4, 1, 0), None, None, None, "x2", 12, 16),
    ]
    assert active.streams_asked == [3, 3]


def test_a_registered_launch_hook_sends_every_launch_through_the_jit(active: _Active) -> None:
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
    with pytest.raises(TypeError, match="constexpr parameters must come after"):
        CompiledLaunch(_Jit(arg_names=("BLOCK", "X", "n")), (1,), {"BLOCK": 16}, {}, device=0)


def test_a_descriptor_position_takes_the_base_and_launches_its_template(active: _Active) -> None:
    """The JIT and an unknown launcher get the template rebased over each call's base."""
    fn = _Jit(arg_names=("D", "n", "BLOCK"))
    template = rebased(TensorDescriptor(_t(64, 32), [64, 32], [32, 1], [16, 32]), None)
    launch = CompiledLaunch(fn, (2,), {"BLOCK": 16}, {}, device=0, descriptors={0: template})
    first, second = _t(64, 32), _t(64, 32)
    launch(first, 7)
    launch(second, 8)
    (_, (jit_desc, _), _), run_args = fn.jit_launches[0], fn.compiled.launches[0]
    assert jit_desc.base is first and run_args[9].base is second and template.base is None
    assert jit_desc.block_shape == [16, 32] and run_args[9].shape == [64, 32]
    assert run_args[10:] == (8, 16)


# --- direct launches through the C function of Triton 3.6's CudaLauncher --------------------

try:
    from triton.backends.nvidia import driver as nvidia

    LAID_OUT_AS_36 = nvidia._BASE_ARGS_FORMAT == "iiiKKppOOOOOO" and all(
        hasattr(nvidia, name) for name in ("CudaLauncher", "wrap_handle_tensordesc")
    )
except (ImportError, AttributeError):
    LAID_OUT_AS_36 = False

laid_out_as_36 = pytest.mark.skipif(
    not LAID_OUT_AS_36, reason="this Triton's launcher is not laid out as 3.6's (falls back)"
)


class _CLaunch:
    """Stands in for the C launch function that Triton generates for a kernel's signature."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def __call__(self, *args: Any) -> None:
        self.calls.append(args)


def _cuda_kernel(
    signature: dict[str, str], meta: list[Any] | None = None, scratch: int = 0
) -> tuple[Any, _CLaunch]:
    """A compiled kernel whose launcher is a CudaLauncher (built without compiling one) over a
    stand-in C function, wrapped by Triton's own descriptor expansion."""
    c_launch = _CLaunch()

    class Launcher(nvidia.CudaLauncher):  # type: ignore[misc]
        """Records the calls of its Python wrapper (which would allocate scratch memory)."""

        def __call__(self, *args: Any) -> None:
            self.wrapper_calls.append(args)

    launcher = object.__new__(Launcher)
    launcher.wrapper_calls = []
    launcher.num_ctas = 1
    launcher.launch = nvidia.wrap_handle_tensordesc(c_launch, signature, meta)
    launcher.global_scratch_size = scratch
    launcher.global_scratch_align = launcher.profile_scratch_align = 1
    launcher.profile_scratch_size = 0
    launcher.launch_cooperative_grid = launcher.launch_pdl = False

    class Kernel:
        src = type("Src", (), {"signature": signature})
        run = launcher
        function = 1234
        packed_metadata = (4, 1, 0)

    return Kernel(), c_launch


# What the C function parses before the kernel's arguments: grid, stream, function, no
# cooperative grid or PDL, no scratch, packed metadata, no launch metadata, no hooks.
HEAD = (5, 1, 1, 77, 1234, False, False, None, None, (4, 1, 0), None, None, None)


@laid_out_as_36
def test_direct_launches_pass_tensors_as_addresses(active: _Active) -> None:
    kernel, c_launch = _cuda_kernel({"X": "*fp16", "n": "i32", "BLOCK": "constexpr"})
    fn = _Jit(kernel)
    launch = CompiledLaunch(fn, (5,), {"BLOCK": 16}, {}, device=2)
    x0, x1 = _t(8), _t(8)
    launch(x0, 10)
    assert not c_launch.calls  # the first launch was the JIT's
    launch(x1, 11)
    launch(x0, 12)
    assert c_launch.calls == [(*HEAD, x1.data_ptr(), 11, 16), (*HEAD, x0.data_ptr(), 12, 16)]
    assert len(fn.jit_launches) == 1 and active.streams_asked == [2, 2]


@laid_out_as_36
def test_direct_launches_encode_a_tma_descriptor_once_per_base(active: _Active) -> None:
    signature = {"D": "tensordesc<fp16[16, 32]>", "n": "i32", "BLOCK": "constexpr"}
    meta = {"swizzle": 3, "elem_size": 2, "elem_type": 6, "block_size": [16, 32]}
    kernel, c_launch = _cuda_kernel(signature, [{**meta, "fp4_padded": False}])
    template = rebased(TensorDescriptor(_t(64, 32), [64, 32], [32, 1], [16, 32]), None)
    launch = CompiledLaunch(_Jit(kernel), (5,), {"BLOCK": 16}, {}, 0, descriptors={0: template})
    a, b = _t(64, 32), _t(64, 32)
    for base, n in ((a, 1), (a, 2), (b, 3), (a, 4), (b, 5)):
        launch(base, n)
    # Triton's encoding of (address, swizzle, elem size, host dtype, block, shape, strides,
    # padding): once for a, once for b, whatever the calls; the first launch was the JIT's.
    assert active.encoded == [
        (a.data_ptr(), 3, 2, 6, [16, 32], [64, 32], [32, 1], 0),
        (b.data_ptr(), 3, 2, 6, [16, 32], [64, 32], [32, 1], 0),
    ]
    tma_a, tma_b = (("tma", *args) for args in active.encoded)
    sizes = (64, 32, 32, 1)
    assert c_launch.calls == [
        (*HEAD, tma_a, *sizes, 2, 16),
        (*HEAD, tma_b, *sizes, 3, 16),
        (*HEAD, tma_a, *sizes, 4, 16),
        (*HEAD, tma_b, *sizes, 5, 16),
    ]
    # What Triton's own expansion hands the C function for the same call.
    kernel.run.launch(*HEAD, rebased(template, a), 2, 16)
    assert c_launch.calls[-1] == c_launch.calls[0]


@laid_out_as_36
def test_direct_launches_pass_an_unencoded_descriptor_as_its_address_and_sizes(
    active: _Active,
) -> None:
    """A descriptor the compiler did not lower to TMA: base, sizes, strides, padding, sizes,
    strides (Triton's expansion), the base as its address."""
    signature = {"X": "*fp32", "D": "tensordesc<fp16[16, 32]>", "BLOCK": "constexpr"}
    kernel, c_launch = _cuda_kernel(signature)
    template = rebased(TensorDescriptor(_t(64, 32), [64, 32], [32, 1], [16, 32]), None)
    launch = CompiledLaunch(_Jit(kernel), (5,), {"BLOCK": 16}, {}, 0, descriptors={1: template})
    x, base = torch.zeros(4), _t(64, 32)
    for _ in range(2):
        launch(x, base)
    sizes = (64, 32, 32, 1)
    assert c_launch.calls == [(*HEAD, x.data_ptr(), base.data_ptr(), *sizes, False, *sizes, 16)]
    assert not active.encoded


@laid_out_as_36
def test_a_launcher_that_needs_scratch_memory_is_called_through_its_python_wrapper(
    active: _Active,
) -> None:
    kernel, c_launch = _cuda_kernel({"X": "*fp16", "BLOCK": "constexpr"}, scratch=64)
    launch = CompiledLaunch(_Jit(kernel, ("X", "BLOCK")), (5,), {"BLOCK": 16}, {}, device=0)
    x = _t(8)
    launch(x)
    launch(x)
    assert kernel.run.wrapper_calls == [(5, 1, 1, 77, 1234, (4, 1, 0), None, None, None, x, 16)]
    assert not c_launch.calls
