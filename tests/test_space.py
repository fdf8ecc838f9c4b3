from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from evotune.errors import KernelNotFoundError, ShapeNotFoundError, SpaceFileError, UserError
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
        impls = [c["impl"] for c in space.seed_configs(space.shape(name).dims)]
        assert impls.count("gluon") == 2, name


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
