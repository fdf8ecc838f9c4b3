"""The Triton attention kernel on the CPU, through Triton's interpreter (tests/conftest.py).

Small shapes only: the interpreter runs each program in numpy. The GPU-only knobs
(FAST_EXP=1, bf16) are covered by test_attention_gpu.py.
"""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
import triton
import triton.language as tl
import yaml

from evotune.kernels import attention as attn
from evotune.kernels._attention_kernel import _exp2_fma
from evotune.kernels.launch_cache import BoundedCache
from evotune.plugin import DeviceInfo

SPACE_FILE = Path(__file__).resolve().parents[2] / "search_spaces" / "attention.yaml"
TOLERANCES = yaml.safe_load(SPACE_FILE.read_text())["tolerances"]
CPU = DeviceInfo(interpreted=True, name="interpreter")
HOPPER = DeviceInfo(interpreted=False, name="NVIDIA H100", capability=(9, 0), sm_count=132)
AMPERE = DeviceInfo(interpreted=False, name="NVIDIA A100", capability=(8, 0), sm_count=108)

pytestmark = pytest.mark.skipif(
    torch.cuda.is_available(), reason="CPU interpreter tests (test_attention_gpu.py covers the GPU)"
)


def _reference(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool, scale: float
) -> torch.Tensor:
    """Independent float64 reference (plain softmax, no chunking)."""
    s = (q.double() @ k.double().transpose(-1, -2)) * scale
    if causal:
        n = q.shape[2]
        s = s.masked_fill(torch.ones(n, n, dtype=torch.bool).triu(1), float("-inf"))
    return torch.softmax(s, dim=-1) @ v.double()


def _inputs(
    B: int, H: int, S: int, D: int, dtype: torch.dtype, seed: int = 0
) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(B, H, S, D, generator=gen).to(dtype) for _ in range(3)]


def _check(out: torch.Tensor, ref: torch.Tensor) -> None:
    tol = TOLERANCES[str(out.dtype).removeprefix("torch.")]
    assert not torch.isnan(out).any()
    torch.testing.assert_close(out.double(), ref, atol=tol["atol"], rtol=tol["rtol"])


CASES: list[tuple[int, int, int, int, bool, torch.dtype, dict[str, Any]]] = [
    # B, H, S, D, causal, dtype, config
    (1, 2, 128, 64, True, torch.float16, {}),  # the default config at the 'tiny' shape
    (1, 2, 128, 64, False, torch.float16, {"BLOCK_M": 64, "BLOCK_N": 32}),
    (2, 1, 1, 16, True, torch.float32, {"BLOCK_M": 16, "BLOCK_N": 16}),
    (1, 2, 37, 32, False, torch.float32, {"BLOCK_M": 32, "BLOCK_N": 16}),
    (1, 2, 37, 32, True, torch.float16, {"BLOCK_M": 16, "BLOCK_N": 32}),  # BLOCK_N > BLOCK_M
    (2, 1, 100, 64, True, torch.float16, {"BLOCK_M": 64, "BLOCK_N": 32, "FAST_EXP": 2}),
    (1, 2, 100, 64, False, torch.float32, {"BLOCK_M": 32, "BLOCK_N": 32, "FAST_EXP": 2}),
    (1, 3, 100, 16, True, torch.float16, {"BLOCK_M": 32, "BLOCK_N": 16, "CTA_MULT": 1}),
    (2, 2, 70, 32, False, torch.float16, {"BLOCK_M": 16, "BLOCK_N": 32, "CTA_MULT": 2}),
    # The interpreter runs tensor descriptors too: this checks their row arithmetic, the
    # masked tail rows that belong to the next head, and the single-loop (WS) structure.
    (2, 2, 70, 64, True, torch.float16, {"BLOCK_M": 32, "BLOCK_N": 64, "TMA": True}),
    (
        2,
        2,
        64,
        32,
        False,
        torch.float16,
        {"BLOCK_M": 32, "BLOCK_N": 16, "TMA": True, "CTA_MULT": 1},
    ),
    (
        1,
        2,
        70,
        32,
        True,
        torch.float16,
        {"BLOCK_M": 32, "BLOCK_N": 16, "TMA": True, "WARP_SPECIALIZE": True},
    ),
    (
        1,
        2,
        45,
        32,
        False,
        torch.float32,
        {"BLOCK_M": 16, "BLOCK_N": 32, "TMA": True, "WARP_SPECIALIZE": True},
    ),
    (1, 1, 40, 256, True, torch.float16, {"BLOCK_M": 16, "BLOCK_N": 16}),
    (1, 1, 50, 128, False, torch.float16, {"BLOCK_M": 32, "BLOCK_N": 32}),
]


@pytest.mark.parametrize(("B", "H", "S", "D", "causal", "dtype", "config"), CASES)
def test_matches_float64_reference(
    B: int, H: int, S: int, D: int, causal: bool, dtype: torch.dtype, config: dict[str, Any]
) -> None:
    q, k, v = _inputs(B, H, S, D, dtype, seed=S + D)
    out = attn.attention(q, k, v, causal=causal, config=config)
    assert out.shape == q.shape and out.dtype == dtype
    _check(out, _reference(q, k, v, causal, 1.0 / math.sqrt(D)))


@pytest.mark.parametrize("config", [{}, {"CTA_MULT": 1}])
def test_heads_in_uneven_groups(monkeypatch: pytest.MonkeyPatch, config: dict[str, Any]) -> None:
    """7 heads in groups of 3: the remainder group (1 head) runs first; every tile once."""
    monkeypatch.setattr("evotune.kernels.tile_order.MAX_CAUSAL_HEAD_GROUP", 3)
    monkeypatch.setattr(attn, "_CALLS", BoundedCache(8))  # planned anew, with the groups of 3
    q, k, v = _inputs(1, 7, 40, 16, torch.float32)
    out = torch.full_like(q, float("nan"))
    cfg = {"BLOCK_M": 16, "BLOCK_N": 16, **config}
    attn.attention(q, k, v, causal=True, config=cfg, out=out)
    _check(out, _reference(q, k, v, True, 1 / math.sqrt(16)))


def test_causal_differs_from_non_causal() -> None:
    # Guards the tests above against a kernel that ignores the mask.
    q, k, v = _inputs(1, 1, 40, 16, torch.float32)
    cfg = {"BLOCK_M": 16, "BLOCK_N": 16}
    diff = attn.attention(q, k, v, causal=True, config=cfg) - attn.attention(q, k, v, config=cfg)
    assert diff.abs().max() > 0.1
    assert diff[0, 0, -1].abs().max() < 1e-5  # the last row sees every key either way


@pytest.mark.parametrize("config", [{}, {"TMA": True}, {"TMA": True, "WARP_SPECIALIZE": True}])
def test_non_contiguous_inputs_and_output(config: dict[str, Any]) -> None:
    B, H, S, D = 2, 3, 50, 32
    gen = torch.Generator().manual_seed(7)
    # q: [B, S, H, D] storage seen as [B, H, S, D]; k: every other row of a longer sequence;
    # v: head dim not innermost; out: a column slice of a wider buffer.
    q = torch.randn(B, S, H, D, generator=gen).half().transpose(1, 2)
    k = torch.randn(B, H, 2 * S, D, generator=gen).half()[:, :, ::2]
    v = torch.randn(B, H, D, S, generator=gen).half().transpose(2, 3)
    wide = torch.full((B, H, S, 2 * D), float("nan"), dtype=torch.float16)
    out = wide[..., D:]
    assert not (q.is_contiguous() or k.is_contiguous() or v.is_contiguous() or out.is_contiguous())
    cfg = {"BLOCK_M": 32, "BLOCK_N": 16, **config}
    result = attn.attention(q, k, v, causal=True, sm_scale=0.3, config=cfg, out=out)
    assert result is out
    _check(out, _reference(q, k, v, True, 0.3))
    assert torch.isnan(wide[..., :D]).all()  # nothing written outside `out`


def test_sm_scale_is_applied() -> None:
    q, k, v = _inputs(1, 2, 33, 16, torch.float32)
    out = attn.attention(q, k, v, sm_scale=2.0, config={"BLOCK_M": 16, "BLOCK_N": 16})
    _check(out, _reference(q, k, v, False, 2.0))


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ({"q": torch.zeros(2, 8, 16)}, "^q must have rank 4"),
        ({"k": torch.zeros(1, 2, 8, 16, dtype=torch.int32)}, "^k has dtype"),
        ({"v": torch.zeros(1, 2, 8, 16, dtype=torch.float32)}, "^v has dtype"),
        # k of 9 keys against v of 8 (other shape mismatches: test_attention_models.py)
        ({"k": torch.zeros(1, 2, 9, 16, dtype=torch.float16)}, "^v has shape"),
        ({"v": torch.zeros(1, 2, 8, 16, dtype=torch.float16, device="meta")}, "^v is on meta"),
        ({"q": "not a tensor"}, "^q must be a torch.Tensor"),
        (
            {
                "q": torch.zeros(1, 2, 8, 48),
                "k": torch.zeros(1, 2, 8, 48),
                "v": torch.zeros(1, 2, 8, 48),
            },
            "head dim D=48",
        ),
        (
            {
                "q": torch.zeros(1, 2, 0, 16),
                "k": torch.zeros(1, 2, 0, 16),
                "v": torch.zeros(1, 2, 0, 16),
            },
            "empty",
        ),
        ({"out": torch.zeros(1, 2, 8, 32, dtype=torch.float16)}, "^out must match q"),
        ({"sm_scale": -1.0}, "^sm_scale must be a positive"),
        ({"sm_scale": float("nan")}, "^sm_scale"),
        ({"config": {"BLOCK_M": 48}}, "^config: BLOCK_M"),
        # 192 rows are three Gluon consumer warpgroups; the tl-level kernel tiles by powers of two
        ({"config": {"BLOCK_M": 192}}, "^config: BLOCK_M must be a power of two"),
        ({"config": {"BLOCK_N": 512}}, "^config: BLOCK_N"),
        ({"config": {"num_warps": 3}}, "^config: num_warps"),
        ({"config": {"FAST_EXP": 3}}, "^config: FAST_EXP"),
        ({"config": {"CTA_MULT": -1}}, "^config: CTA_MULT"),
        ({"config": {"impl": "cuda"}}, "^config: impl"),
        ({"config": {"WARP_SPECIALIZE": True}}, "^config: WARP_SPECIALIZE needs TMA"),
        (
            {"config": {"WARP_SPECIALIZE": True, "TMA": True, "FAST_EXP": 2}},
            "^config: WARP_SPECIALIZE",
        ),
    ],
)
def test_bad_input_raises_value_error_naming_the_argument(args: dict[str, Any], match: str) -> None:
    call: dict[str, Any] = {
        n: torch.zeros(1, 2, 8, 16, dtype=torch.float16) for n in ("q", "k", "v")
    }
    call.update(args)
    with pytest.raises(ValueError, match=match):
        attn.attention(**call)


def test_default_config_is_the_search_space_default() -> None:
    from evotune.space import load_space

    space = load_space("attention")
    assert space.default_config() == attn.DEFAULT_CONFIG
    for name in space.shapes:
        assert not space.violations(attn.DEFAULT_CONFIG, space.shape(name).dims), name


def test_triton_configs_of_the_space_resolve() -> None:
    # Every valid triton config of the space passes the launcher's own checks.
    from evotune.space import load_space

    space = load_space("attention")
    dims = space.shape("stage1").dims
    names = space.active_names({"impl": "triton"})
    grid = itertools.product(*(space.parameters[n].choices() for n in names))
    configs = [
        c
        for c in (dict(zip(names, values, strict=True)) for values in grid)
        if not space.violations(c, dims)
    ]
    assert 100 < len(configs) < 3000
    for config in configs:
        attn.resolve_config(config)
        # The space's constraints and the launcher's own refusals agree on Hopper.
        assert attn.unsupported(config, dims, HOPPER) is None, config


# The space's rules that no kernel checks (by the start of their `why`): where a tile overhangs
# the shape by a whole tile, the tl-level and decode kernels would spill or run out of shared
# memory (measured bounds, not refusals), or a knob would not change the code that runs. Every
# other constraint is a static refusal of the plug-in's, spelled in the space.
SPACE_ONLY_RULES = (
    "a query tile may overhang",
    "a key tile may overhang",
    "triton: the fp32 score",
    "triton: Q tile",
    "decode: for a few queries",
    "decode: num_stages K and V",
    "decode: 128-key tiles",
    "gluon: PINGPONG=0 needs two or three consumers",
)


@pytest.mark.parametrize(
    "shape",
    # (decode: grouped-query heads, one query over many keys)
    ["tiny", "mission", "stage1", "llama-d128", "llama-d128-bf16", "decode"],
)
def test_the_space_refuses_exactly_what_the_plugin_refuses_before_compiling(shape: str) -> None:
    """Every config of the space's parameter domains that the space-only rules let through, at a
    named shape: the space accepts it exactly where `static_unsupported` (what no device runs:
    the gluon register and shared-memory model, head dims, dtypes, the Triton 3.6 limits) lets
    it run. So a search never proposes a config the kernel refuses before compiling, and the
    space leaves out nothing the kernel would run."""
    from evotune.records import config_hash
    from evotune.search.grid import valid_configs
    from evotune.space import SearchSpace, load_space

    space = load_space("attention")
    data = space.model_dump()
    data["constraints"] = [c for c in data["constraints"] if c["why"].startswith(SPACE_ONLY_RULES)]
    assert len(data["constraints"]) == len(SPACE_ONLY_RULES)
    domain = SearchSpace.model_validate(data)
    dims = space.shape(shape).dims
    valid = {config_hash(c) for c in valid_configs(space, dims)}
    configs = valid_configs(domain, dims)
    refused = {config_hash(c) for c in configs if attn.static_unsupported(c, dims) is not None}
    assert valid == {config_hash(c) for c in configs} - refused
    impls = {c["impl"] for c in configs if config_hash(c) in refused}
    assert "gluon" in impls  # (at every one of these shapes the kernel refuses some)


def test_attention_modules_import_one_way() -> None:
    """kernels/attention.py imports kernels/attention_gluon.py, never the other way round (not
    even through another module); the sm_90 shared memory limit is spelled once, in the space
    file."""
    from evotune.source_hash import kernel_source_files

    kernels = Path(attn.__file__).parent
    reached = {
        m: kernel_source_files(f"evotune.kernels.{m}")
        for m in ("attention_gluon", "attention_common")
    }
    assert "evotune.kernels.attention_common" in reached["attention_gluon"]  # imports are followed
    for module, names in reached.items():
        assert "evotune.kernels.attention" not in names, module
    for module in ("attention", "attention_gluon", "attention_common"):
        assert "232448" not in (kernels / f"{module}.py").read_text(), module


# --- the plug-in interface ------------------------------------------------------------------


TINY = {"B": 1, "H": 2, "S": 40, "D": 16, "causal": True, "dtype": "float16"}


def test_make_inputs_is_seeded() -> None:
    a, b, c = (
        attn.make_inputs(TINY, 1, "cpu"),
        attn.make_inputs(TINY, 1, "cpu"),
        attn.make_inputs(TINY, 2, "cpu"),
    )
    assert torch.equal(a["q"], b["q"]) and torch.equal(a["v"], b["v"])
    assert not torch.equal(a["q"], c["q"])
    assert not torch.equal(a["q"], a["k"])
    assert a["q"].shape == (1, 2, 40, 16) and a["q"].dtype == torch.float16
    assert a["causal"] is True


def test_run_fills_the_output_and_matches_reference() -> None:
    inputs = attn.make_inputs({**TINY, "dtype": "float32"}, 3, "cpu")
    out = attn.empty_output(inputs)
    out.fill_(float("nan"))
    attn.run(inputs, out, {"BLOCK_M": 16, "BLOCK_N": 16, "FAST_EXP": 2})
    ref = attn.reference(inputs)
    assert ref.dtype == torch.float32
    torch.testing.assert_close(
        ref.double(), _reference(inputs["q"], inputs["k"], inputs["v"], True, 0.25)
    )
    torch.testing.assert_close(out, ref, atol=5e-3, rtol=5e-3)


def test_reference_chunks_agree_with_whole() -> None:
    inputs = attn.make_inputs(
        {"B": 3, "H": 2, "S": 8, "D": 16, "causal": False, "dtype": "float32"}, 0, "cpu"
    )
    whole = _reference(inputs["q"], inputs["k"], inputs["v"], False, 0.25)
    torch.testing.assert_close(attn.reference(inputs).double(), whole, atol=1e-6, rtol=1e-6)


def test_flops() -> None:
    dims = {"B": 2, "H": 3, "S": 10, "D": 64, "causal": False, "dtype": "float16"}
    assert attn.flops(dims) == 4 * 2 * 3 * 100 * 64
    assert attn.flops({**dims, "causal": True}) == 2 * 2 * 3 * 100 * 64


@pytest.mark.parametrize(
    ("config", "dims", "device", "expected"),
    [
        ({}, TINY, CPU, None),
        ({"FAST_EXP": 2, "CTA_MULT": 1}, TINY, CPU, None),
        ({"FAST_EXP": 1}, TINY, CPU, "inline PTX"),
        ({}, {**TINY, "dtype": "bfloat16"}, CPU, "bf16"),
        ({"TMA": True}, TINY, CPU, "TMA"),
        ({"TMA": True, "WARP_SPECIALIZE": True}, TINY, CPU, "TMA"),
        ({"impl": "gluon"}, TINY, CPU, "gluon"),
        ({"impl": "gluon"}, TINY, AMPERE, "sm_90"),
        ({}, {**TINY, "D": 96}, HOPPER, "head dim"),
        (
            {"TMA": True, "WARP_SPECIALIZE": True, "FAST_EXP": 1, "num_warps": 8},
            {**TINY, "dtype": "bfloat16"},
            HOPPER,
            None,
        ),
        ({"TMA": True}, TINY, AMPERE, "TMA needs sm_90"),
        ({"FAST_EXP": 1}, {**TINY, "dtype": "bfloat16"}, AMPERE, "bf16x2"),
        ({"FAST_EXP": 1}, TINY, AMPERE, None),
        ({"WARP_SPECIALIZE": True}, TINY, HOPPER, "needs TMA"),
        ({"TMA": True, "WARP_SPECIALIZE": True}, TINY, HOPPER, "num_warps=8"),
        (
            {"TMA": True, "WARP_SPECIALIZE": True, "num_warps": 8, "BLOCK_N": 32},
            TINY,
            HOPPER,
            "BLOCK_N",
        ),
        ({"TMA": True, "WARP_SPECIALIZE": True, "num_warps": 8, "BLOCK_N": 64}, TINY, HOPPER, None),
    ],
)
def test_unsupported(
    config: dict[str, Any], dims: dict[str, Any], device: DeviceInfo, expected: str | None
) -> None:
    reason = attn.unsupported(config, dims, device)
    if expected is None:
        assert reason is None
    else:
        assert reason is not None and expected in reason


@pytest.mark.parametrize("shape", ["tiny", "llama-d128", "llama-d128-bf16"])
def test_the_spaces_interpreter_rules_are_what_the_plugin_runs_in_the_interpreter(
    shape: str,
) -> None:
    """`--interpret` searches the space's `interpreter:` sub-space: exactly the configs that
    `unsupported` lets the interpreter run, so no trial is spent on one it refuses."""
    from evotune.search.grid import valid_configs
    from evotune.space import load_space

    space = load_space("attention")
    dims = space.shape(shape).dims
    runnable = {
        json.dumps(c, sort_keys=True)
        for c in valid_configs(space, dims)
        if attn.unsupported(c, dims, CPU) is None
    }
    searched = {json.dumps(c, sort_keys=True) for c in valid_configs(space.for_interpreter(), dims)}
    assert searched == runnable
    assert bool(searched) == (dims["dtype"] != "bfloat16")


def test_compile_only_is_a_no_op_in_the_interpreter() -> None:
    attn.compile_only(TINY, {}, "cpu")  # must neither raise nor need a GPU


def test_plugin_interface_is_complete() -> None:
    from evotune.plugin import load_plugin

    plugin = load_plugin("evotune.kernels.attention")
    assert plugin is attn
    assert callable(attn.bytes) and callable(attn.baselines)


# --- the FMA-pipe exp2 ----------------------------------------------------------------------


@triton.jit
def _exp2_fma_probe(X, Y, N: tl.constexpr):  # type: ignore[no-untyped-def]
    offs = tl.arange(0, N)
    tl.store(Y + offs, _exp2_fma(tl.load(X + offs)))


def test_polynomial_exp2_is_accurate() -> None:
    x = torch.cat(
        [torch.linspace(-40.0, 0.0, 1000), torch.tensor([-0.5, 0.5 - 1e-6, -1e-7, -130.0, -200.0])]
    )
    x = torch.cat([x, torch.full((1024 - x.numel(),), float("-inf"))])
    y = torch.empty_like(x)
    _exp2_fma_probe[(1,)](x, y, N=1024)
    finite = x > -120
    rel = (
        (y[finite].double() - torch.exp2(x[finite].double())) / torch.exp2(x[finite].double())
    ).abs()
    assert rel.max() < 1e-4
    assert (y[~finite] >= 0).all() and (y[~finite] < 1e-37).all()  # -inf and far-out scores vanish


# --- launch plans, cached by call key (kernels/launch_cache.py) -------------------------------


@pytest.fixture
def plans(monkeypatch: pytest.MonkeyPatch) -> BoundedCache[Any]:
    """attention()'s plan cache, empty for the test."""
    cache: BoundedCache[Any] = BoundedCache(64)
    monkeypatch.setattr(attn, "_CALLS", cache)
    return cache


T16 = {"BLOCK_M": 16, "BLOCK_N": 16}


def test_a_repeated_call_reuses_its_plan_and_reads_the_new_tensors(
    plans: BoundedCache[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    planned: list[int] = []
    check_inputs = attn._check_inputs
    monkeypatch.setattr(
        attn, "_check_inputs", lambda *args: planned.append(1) or check_inputs(*args)
    )
    q, k, v = _inputs(1, 2, 40, 16, torch.float32)
    first = attn.attention(q, k, v, causal=True, config=T16)
    out = torch.full_like(q, float("nan"))
    # out given or allocated alike: the same key
    assert attn.attention(q, k, v, causal=True, config=dict(T16), out=out) is out
    assert len(plans) == 1 and len(planned) == 1
    torch.testing.assert_close(out, first, atol=0, rtol=0)
    q2, k2, v2 = _inputs(1, 2, 40, 16, torch.float32, seed=9)
    _check(attn.attention(q2, k2, v2, causal=True, config=T16), _reference(q2, k2, v2, True, 0.25))
    assert len(plans) == 1 and len(planned) == 1


def test_any_change_of_layout_dtype_config_or_mask_is_a_new_plan(plans: BoundedCache[Any]) -> None:
    q, k, v = _inputs(1, 2, 40, 16, torch.float32)
    attn.attention(q, k, v, causal=True, config=T16)
    transposed = [t.transpose(1, 2).contiguous().transpose(1, 2) for t in (q, k, v)]
    variants: list[tuple[list[torch.Tensor], dict[str, Any], bool]] = [
        (transposed, T16, True),  # strides
        ([t.half() for t in (q, k, v)], T16, True),  # dtype
        ([q, k, v], {**T16, "BLOCK_N": 32}, True),  # config
        ([q[:, :, :24], k, v], T16, True),  # shape (and strides)
        ([q, k, v], T16, False),  # causal
    ]
    for n, (tensors, config, causal) in enumerate(variants, start=2):
        out = attn.attention(*tensors, causal=causal, config=config)
        assert len(plans) == n
        qt, kt, vt = tensors
        _check(out, _reference_sq_skv(qt, kt, vt, causal))


def _reference_sq_skv(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool
) -> torch.Tensor:
    """float64 attention for Sq <= Skv, the causal mask aligned bottom-right."""
    sq, skv = q.shape[2], k.shape[2]
    s = (q.double() @ k.double().transpose(-1, -2)) / math.sqrt(q.shape[3])
    if causal:
        mask = torch.ones(sq, skv, dtype=torch.bool).triu(skv - sq + 1)
        s = s.masked_fill(mask, float("-inf"))
    return torch.softmax(s, dim=-1) @ v.double()


def test_the_plan_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    cache: BoundedCache[Any] = BoundedCache(2)
    monkeypatch.setattr(attn, "_CALLS", cache)
    for S in (16, 24, 32):
        q, k, v = _inputs(1, 1, S, 16, torch.float32)
        attn.attention(q, k, v, config=T16)
    assert len(cache) == 2


def test_the_scale_and_bad_values_are_checked_on_every_call(plans: BoundedCache[Any]) -> None:
    q, k, v = _inputs(1, 2, 40, 16, torch.float32)
    for scale in (0.5, 0.1):  # the scale is not part of the key
        out = attn.attention(q, k, v, causal=True, sm_scale=scale, config=T16)
        _check(out, _reference(q, k, v, True, scale))
    assert len(plans) == 1
    with pytest.raises(ValueError, match=r"^sm_scale"):
        attn.attention(q, k, v, causal=True, sm_scale=-1.0, config=T16)
    with pytest.raises(ValueError, match=r"^config: BLOCK_M"):
        attn.attention(q, k, v, causal=True, config={**T16, "BLOCK_M": 16.0})
    with pytest.raises(ValueError, match=r"^k has dtype"):
        attn.attention(q, k.half(), v, causal=True, config=T16)
    with pytest.raises(ValueError, match=r"^config"):
        attn.attention(q, k, v, causal=True, config={**T16, "BLOCK_N": [16]})


@pytest.mark.parametrize("config", [T16, {**T16, "TMA": True}])
def test_the_plan_cache_keeps_no_callers_tensor_alive(
    plans: BoundedCache[Any], config: dict[str, Any]
) -> None:
    import gc
    import weakref

    tensors = [*_inputs(1, 2, 32, 16, torch.float32), torch.empty(1, 2, 32, 16)]
    attn.attention(*tensors[:3], config=config, out=tensors[3])
    refs = [weakref.ref(t) for t in tensors]
    del tensors
    gc.collect()
    assert len(plans) == 1 and all(ref() is None for ref in refs)
