from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from evotune.errors import (
    ImpossibleShapeError,
    KernelNotFoundError,
    ShapeNotFoundError,
    SpaceFileError,
    UserError,
)
from evotune.space import available_kernels, load_space

MINIMAL = {
    "kernel": "toy",
    "module": "kernels.toy",
    "dims": {"N": "int", "dtype": "str"},
    "parameters": {
        "impl": {"kind": "categorical", "values": ["a", "b"], "default": "a"},
        "BLOCK": {"kind": "ordered", "values": [16, 32, 64], "default": 32},
        "FAST": {"kind": "bool", "default": False},
        "depth": {"kind": "int", "low": 1, "high": 3, "default": 2, "when": "impl == 'b'"},
    },
    "constraints": [{"expr": "BLOCK <= N", "why": "no tile larger than the data"}],
    "tolerances": {"float16": {"atol": 0.01}},
    "shapes": {"small": {"N": 32, "dtype": "float16"}, "big": {"N": 1024, "dtype": "float16"}},
}


def write_space(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / f"{data.get('kernel', 'toy')}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return tmp_path


def test_attention_space_loads_with_the_issue_shapes() -> None:
    space = load_space("attention")
    assert "attention" in available_kernels()
    for name in (
        "mission",
        "stage1",
        "stage1-noncausal",
        "llama-d128",
        "long",
        "small",
        "llama-d128-bf16",
        "tiny",
    ):
        shape = space.shape(name)
        assert not space.violations(space.default_config(), shape.dims), name
    assert space.shape("mission").dims == {
        "B": 32,
        "H": 8,
        "S": 512,
        "D": 64,
        "causal": True,
        "dtype": "float16",
    }
    assert space.shape("llama-d128-bf16").dims["dtype"] == "bfloat16"
    assert space.shape("stage1-noncausal").dims["causal"] is False


def test_conditional_parameters_and_normalize(tmp_path: Path) -> None:
    space = load_space("toy", write_space(tmp_path, MINIMAL))
    assert space.default_config() == {"impl": "a", "BLOCK": 32, "FAST": False}
    assert space.normalize({"impl": "b", "BLOCK": 16, "FAST": True}) == {
        "impl": "b",
        "BLOCK": 16,
        "FAST": True,
        "depth": 2,
    }
    assert space.normalize({"impl": "a", "BLOCK": 16, "FAST": True, "depth": 3}) == {
        "impl": "a",
        "BLOCK": 16,
        "FAST": True,
    }


def test_violations_and_enumerate(tmp_path: Path) -> None:
    space = load_space("toy", write_space(tmp_path, MINIMAL))
    small = space.shape("small").dims
    assert space.violations({"impl": "a", "BLOCK": 64, "FAST": False}, small) == [
        "violates `BLOCK <= N` (no tile larger than the data)"
    ]
    assert "BLOCK=48" in space.violations({"impl": "a", "BLOCK": 48, "FAST": False}, small)[0]
    assert "'depth' does not apply here" in space.violations(
        {"impl": "a", "BLOCK": 16, "FAST": False, "depth": 1}, small
    )
    # impl a: 3 blocks x 2 fast; impl b: x 3 depths -> 6 + 18 structurally distinct configs.
    assert len(list(space.enumerate())) == 24
    valid_small = list(space.enumerate(small))
    assert len(valid_small) == 16  # BLOCK=64 excluded
    assert all(not space.violations(c, small) for c in valid_small)


def test_unknown_shape_lists_known_ones(tmp_path: Path) -> None:
    space = load_space("toy", write_space(tmp_path, MINIMAL))
    with pytest.raises(ShapeNotFoundError, match="known shapes: small, big"):
        space.shape("huge")


def test_unknown_kernel(tmp_path: Path) -> None:
    with pytest.raises(KernelNotFoundError, match="known kernels: toy"):
        load_space("nope", write_space(tmp_path, MINIMAL))


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (
            lambda d: d["parameters"]["BLOCK"].update(default=8),
            "parameters.BLOCK: default 8 is not one of",
        ),
        (
            lambda d: d["parameters"]["BLOCK"].update(values=[]),
            "parameters.BLOCK: a ordered parameter needs",
        ),
        (
            lambda d: d["constraints"].append({"expr": "TILE > 1"}),
            "constraints.1: unknown names ['TILE']",
        ),
        (lambda d: d["constraints"].append({"expr": "open('x')"}), "only ["),
        (
            lambda d: d["parameters"]["depth"].update(when="later == 1"),
            "parameters.depth.when: names ['later']",
        ),
        (lambda d: d["shapes"]["small"].update(N="32"), "shapes.small.N: expected int"),
        (lambda d: d.update(kernel="other"), "kernel: is 'other', but the file is named 'toy'"),
        (lambda d: d.pop("tolerances"), "tolerances: Field required"),
        (lambda d: d.update(surprise=1), "surprise: Extra inputs are not permitted"),
        (
            lambda d: d.update(seeds=[{"config": {"BLOCK": 48}, "why": "x"}]),
            "seeds.0: BLOCK=48 is not one of [16, 32, 64]",
        ),
        (
            lambda d: d.update(seeds=[{"config": {"TILE": 16}, "why": "x"}]),
            "seeds.0: unknown parameter 'TILE'",
        ),
        (
            lambda d: d.update(seeds=[{"config": {"impl": "a", "depth": 3}, "why": "x"}]),
            "seeds.0: 'depth' does not apply here",
        ),
        (lambda d: d.update(seeds=[{"config": {"BLOCK": 16}}]), "seeds.0.why: Field required"),
        (
            lambda d: d.update(derived={"x": "__import__('os').system('true')"}),
            "derived.x: only [",
        ),
        (lambda d: d.update(derived={"x": "N.real"}), "derived.x: Attribute is not allowed"),
        (lambda d: d.update(derived={"x": "y + 1", "y": "N"}), "derived.x: names ['y']"),
        (lambda d: d.update(interpreter=[{"expr": "TILE > 1"}]), "interpreter.0: unknown names"),
    ],
)
def test_broken_file_gives_one_line_naming_file_and_key(
    tmp_path: Path, mutate, message: str
) -> None:
    import copy

    data = copy.deepcopy(MINIMAL)
    mutate(data)
    (tmp_path / "toy.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(SpaceFileError) as info:
        load_space("toy", tmp_path)
    text = str(info.value)
    assert "\n" not in text
    assert "toy.yaml" in text
    assert message in text


def test_seeds_fill_defaults_and_leave_out_those_a_shape_rules_out(tmp_path: Path) -> None:
    data = {
        **MINIMAL,
        "seeds": [
            {"config": {"impl": "b", "BLOCK": 64}, "why": "fastest on big inputs"},
            {"config": {"BLOCK": 16}, "why": "fastest on small ones"},
        ],
    }
    space = load_space("toy", write_space(tmp_path, data))
    wide = {"impl": "b", "BLOCK": 64, "FAST": False, "depth": 2}
    narrow = {"impl": "a", "BLOCK": 16, "FAST": False}
    assert space.seed_configs({"N": 1024, "dtype": "float16"}) == [wide, narrow]
    # BLOCK 64 breaks `BLOCK <= N` at N = 32.
    assert space.seed_configs({"N": 32, "dtype": "float16"}) == [narrow]
    # A restricted sub-space keeps only the seeds inside it.
    assert space.restricted("impl == 'b'").seed_configs({"N": 1024, "dtype": "float16"}) == [wide]


def test_attention_seeds_fit_the_shapes_they_were_measured_at() -> None:
    space = load_space("attention")
    for name in ("stage1", "long", "llama-d128"):
        gluon = [c for c in space.seed_configs(space.shape(name).dims) if c["impl"] == "gluon"]
        consumers = sorted(c["CONSUMER_WGS"] for c in gluon)
        # The three-consumer seed (measured at D64) needs 192 registers a consumer thread at
        # D128, of 160: the kernel refuses it there, and so does the space.
        assert consumers == ([2] if space.shape(name).dims["D"] == 128 else [2, 3]), name


def test_not_yaml(tmp_path: Path) -> None:
    (tmp_path / "toy.yaml").write_text("kernel: [unclosed\n")
    with pytest.raises(SpaceFileError, match="not valid YAML"):
        load_space("toy", tmp_path)


def test_adhoc_shape_keeps_a_matching_name(tmp_path: Path) -> None:
    space = load_space("toy", write_space(tmp_path, MINIMAL))
    assert space.adhoc_shape({"N": 32, "dtype": "float16"}).name == "small"
    assert space.adhoc_shape({"N": 48, "dtype": "float16"}).name is None
    with pytest.raises(UserError):
        space.adhoc_shape({"N": 48})


def test_the_interpreter_rules_narrow_the_space(tmp_path: Path) -> None:
    data = {**MINIMAL, "interpreter": [{"expr": "impl == 'a'", "why": "b needs a GPU"}]}
    space = load_space("toy", write_space(tmp_path, data))
    small = space.shape("small").dims
    interpreted = space.searched(None, interpreted=True)
    assert interpreted.violations({"impl": "b", "BLOCK": 16, "FAST": False, "depth": 1}, small) == [
        "violates `impl == 'a'` (b needs a GPU)"
    ]
    assert len(list(interpreted.enumerate(small))) == 4  # impl a: BLOCK 16, 32 x FAST
    assert space.searched(None, interpreted=False) is space


# --- dims with a default (Hkv = H, Skv = S in attention) ------------------------------------

WITH_DEFAULTS = {
    **MINIMAL,
    "dims": {"N": "int", "M": "int", "dtype": "str"},
    "dim_defaults": {"M": "N"},
    "shape_constraints": [{"expr": "M >= N", "why": "no fewer Ms than Ns"}],
    "constraints": [{"expr": "BLOCK <= M", "why": "no tile larger than the data"}],
    "shapes": {
        "small": {"N": 32, "dtype": "float16"},
        "wide": {"N": 32, "M": 64, "dtype": "float16"},
    },
}


def test_a_dim_at_its_default_is_left_out_of_the_shape_and_its_key(tmp_path: Path) -> None:
    space = load_space("toy", write_space(tmp_path, WITH_DEFAULTS))
    small = space.shape("small")
    # The key of a shape from before M existed.
    assert small.key == '{"N":32,"dtype":"float16"}'
    assert space.adhoc_shape({"N": 32, "M": 32, "dtype": "float16"}) == small
    assert space.parse_dims("N=32,M=32,dtype=float16") == small
    assert space.parse_dims("dtype=float16,N=32") == small
    wide = space.parse_dims("M=64,N=32,dtype=float16")
    assert wide.name == "wide" and wide.dims == {"N": 32, "M": 64, "dtype": "float16"}
    assert wide.key == '{"M":64,"N":32,"dtype":"float16"}'
    assert space.complete_dims(small.dims) == {"N": 32, "dtype": "float16", "M": 32}
    # Expressions see the complete dims: BLOCK <= M reads the default M.
    assert space.violations({"impl": "a", "BLOCK": 64, "FAST": False}, small.dims)
    assert not space.violations({"impl": "a", "BLOCK": 64, "FAST": False}, wide.dims)
    assert space.shape_distance(small.dims, wide.dims) == 1.0  # log2(64 / 32)
    assert space.shape_distance(wide.dims, small.dims) == 1.0


def test_dims_that_break_a_shape_constraint_are_impossible(tmp_path: Path) -> None:
    space = load_space("toy", write_space(tmp_path, WITH_DEFAULTS))
    with pytest.raises(ImpossibleShapeError) as info:
        space.parse_dims("N=32,M=16,dtype=float16")
    assert str(info.value) == "shape: N=32, M=16 break `M >= N` (no fewer Ms than Ns)"
    with pytest.raises(UserError, match=r"^missing N: an ad-hoc shape needs every dim \(but"):
        space.parse_dims("M=16,dtype=float16")
    with pytest.raises(ValueError, match="break `M >= N`"):
        space.typed_dims({"N": "32", "M": 16, "dtype": "float16"})
    assert space.typed_dims({"N": "32", "M": "32", "dtype": "float16"}) == space.shape("small").dims


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d["dim_defaults"].update(K="N"), "dim_defaults.K: not a dim"),
        (lambda d: d["dim_defaults"].update(M="Q + 1"), "dim_defaults.M: names ['Q']"),
        (lambda d: d["dim_defaults"].update(M="M"), "dim_defaults.M: names ['M']"),
        (
            lambda d: d["shapes"].update(spelled={"N": 8, "M": 8, "dtype": "float16"}),
            "shapes.spelled: leave out M (at the default, M: N)",
        ),
        (
            lambda d: d["shapes"].update(narrow={"N": 8, "M": 4, "dtype": "float16"}),
            "shapes.narrow: N=8, M=4 break `M >= N`",
        ),
        (lambda d: d["shape_constraints"].append({"expr": "K > 1"}), "shape_constraints.1: names"),
    ],
)
def test_broken_dim_defaults_are_one_line(tmp_path: Path, mutate, message: str) -> None:
    import copy

    data = copy.deepcopy(WITH_DEFAULTS)
    mutate(data)
    (tmp_path / "toy.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(SpaceFileError) as info:
        load_space("toy", tmp_path)
    assert "\n" not in str(info.value) and message in str(info.value)


MISSION_KEY = '{"B":32,"D":64,"H":8,"S":512,"causal":true,"dtype":"float16"}'


def test_attention_shapes_from_before_hkv_and_skv_keep_their_keys() -> None:
    space = load_space("attention")
    assert space.shape("mission").key == MISSION_KEY
    explicit = space.parse_dims("B=32,H=8,Hkv=8,S=512,Skv=512,D=64,causal=true,dtype=float16")
    assert explicit == space.shape("mission")
    gqa = space.parse_dims("B=1,H=4,Hkv=2,S=16,Skv=48,D=16,causal=true,dtype=float16")
    assert gqa.name is None and gqa.dims_text() == (
        "B=1,H=4,Hkv=2,S=16,Skv=48,D=16,causal=true,dtype=float16"
    )
    assert space.parse_dims(gqa.dims_text().replace("Skv=48", "Skv=16")).dims_text() == (
        "B=1,H=4,Hkv=2,S=16,D=16,causal=true,dtype=float16"
    )
    assert space.shape("decode").dims == {
        "B": 64,
        "H": 32,
        "Hkv": 8,
        "S": 1,
        "Skv": 4096,
        "D": 128,
        "causal": False,
        "dtype": "float16",
    }


@pytest.mark.parametrize(
    ("dims", "message"),
    [
        ("Hkv=3", "H=4, Hkv=3 break `Hkv >= 1 and H % Hkv == 0`"),
        ("Hkv=0", "H=4, Hkv=0 break"),
        ("Skv=8", "S=16, Skv=8 break `S <= Skv`"),
    ],
)
def test_attention_refuses_heads_that_do_not_group_and_more_queries_than_keys(
    dims: str, message: str
) -> None:
    space = load_space("attention")
    with pytest.raises(ImpossibleShapeError, match=re.escape(message)):
        space.parse_dims(f"B=1,H=4,S=16,D=16,causal=true,dtype=float16,{dims}")


def test_attention_seeds_and_configs_at_model_shapes_are_never_gluon() -> None:
    from evotune.search.grid import valid_configs

    space = load_space("attention")
    for name in ("llama3-8b-prefill", "chunked-prefill", "decode", "decode-long"):
        dims = space.shape(name).dims
        assert not space.violations(space.default_config(), dims), name
        assert "triton" in [c["impl"] for c in space.seed_configs(dims)], name
        assert "gluon" not in [c["impl"] for c in space.seed_configs(dims)], name
        impls = {c["impl"] for c in valid_configs(space, dims)}
        assert "triton" in impls and "gluon" not in impls, name
    # One query: a 64-row query tile, but key tiles of every size.
    decode = [c for c in valid_configs(space, space.shape("decode").dims) if c["impl"] == "triton"]
    assert {c["BLOCK_M"] for c in decode} == {64}
    assert {c["BLOCK_N"] for c in decode} == {32, 64, 128}
