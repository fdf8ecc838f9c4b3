"""The recipe of a missed call: what is recorded, what is refused, and the call rebuilt from it."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from importlib.util import module_from_spec, spec_from_file_location
from pathlib import Path
from typing import Any

import pytest
import torch
import triton
import triton.language as tl

from evotune.autotuning import recipe as recipes
from evotune.autotuning.configs import TuningSpace, tuning_space
from evotune.autotuning.recipe import INT_HIGH, rebuild_call, record
from evotune.errors import NotTunableOfflineError
from tests.autotune_kernels import accumulate, gather

CONFIGS = {"BLOCK": [32, 64], "num_warps": [2, 4]}


def _tuning(kernel: Any, key: tuple[str, ...] = ("n",)) -> TuningSpace:
    name = f"{kernel.fn.__module__}.{kernel.fn.__qualname__}"
    return tuning_space(name, kernel.fn.__module__, kernel.arg_names, key, CONFIGS, ())


def _record(
    kernel: Any,
    named: dict[str, Any],
    grid: Any = None,
    inputs: Callable[..., Any] | None = None,
) -> dict[str, Any]:
    n = named["n"]
    grid = grid or (lambda meta: (triton.cdiv(n, meta["BLOCK"]),))
    dims = {"n": n, "dtypes": "float32,float32"}
    return record(kernel, _tuning(kernel), named, dims, grid, (1e-3, 1e-3), inputs)


def _call(n: int = 13) -> dict[str, Any]:
    """x is a view at an offset into a larger tensor (the kernel reads it as contiguous)."""
    base = torch.randn(2 * n)
    return {"x_ptr": base[5 : 5 + n], "y_ptr": torch.zeros(n), "n": n}


def test_a_recipe_holds_the_kernel_arguments_and_a_grid_per_config() -> None:
    recipe = _record(accumulate, _call())
    json.dumps(recipe, allow_nan=False)  # JSON as a study's settings keep it
    assert recipe["kernel"] == {"module": "tests.autotune_kernels", "qualname": "accumulate"}
    assert recipe["args"] == {
        "x_ptr": {
            "tensor": {
                "shape": [13],
                "strides": [1],
                "offset": 5,
                "dtype": "float32",
                "device": "cpu",
            }
        },
        "y_ptr": {
            "tensor": {
                "shape": [13],
                "strides": [1],
                "offset": 0,
                "dtype": "float32",
                "device": "cpu",
            }
        },
        "n": {"value": 13},
    }
    assert recipe["grid"] == {
        "per_config": {
            '{"BLOCK": 32, "num_warps": 2}': [1],
            '{"BLOCK": 32, "num_warps": 4}': [1],
            '{"BLOCK": 64, "num_warps": 2}': [1],
            '{"BLOCK": 64, "num_warps": 4}': [1],
        }
    }
    assert recipe["tolerance"] == [1e-3, 1e-3] and recipe["inputs"] is None
    assert recipes.tuning_of(recipe).space == _tuning(accumulate).space


def test_the_grid_is_evaluated_per_config_with_the_meta_triton_passes() -> None:
    seen: list[dict[str, Any]] = []

    def grid(meta: dict[str, Any]) -> tuple[int, ...]:
        seen.append(meta)
        return (triton.cdiv(meta["n"], meta["BLOCK"]), 2)

    recipe = _record(accumulate, _call(100), grid)
    assert recipe["grid"]["per_config"]['{"BLOCK": 32, "num_warps": 2}'] == [4, 2]
    assert recipe["grid"]["per_config"]['{"BLOCK": 64, "num_warps": 4}'] == [2, 2]
    assert seen[0]["BUG"] == 0  # the kernel's defaults too
    assert "num_warps" not in seen[0]  # a launch option, not an argument
    assert _record(accumulate, _call(), grid=(7,))["grid"] == {"fixed": [7]}


def test_the_rebuilt_call_has_the_recorded_layout_and_seeded_contents() -> None:
    recipe = _record(accumulate, _call())
    call = rebuild_call(recipe, accumulate, seed=3)
    x, y = call.args["x_ptr"], call.args["y_ptr"]
    assert (x.shape, x.stride(), x.storage_offset(), x.dtype) == ((13,), (1,), 5, torch.float32)
    assert call.args["n"] == 13 and set(call.tensors) == {"x_ptr", "y_ptr"}
    again = rebuild_call(recipe, accumulate, seed=3)
    assert torch.equal(again.args["x_ptr"], x) and torch.equal(again.args["y_ptr"], y)
    assert not torch.equal(rebuild_call(recipe, accumulate, seed=4).args["x_ptr"], x)
    expected = y + x
    call.launch({"BLOCK": 32, "num_warps": 2})
    torch.testing.assert_close(y, expected)


def test_scalars_and_other_dtypes_round_trip() -> None:
    named = {
        "x_ptr": torch.zeros(4, 3, dtype=torch.int32).t(),
        "y_ptr": torch.zeros(8, dtype=torch.bool),
        "n": 8,
        "scale": -math.inf,
        "ratio": 0.1,
        "flag": True,
        "label": "a",
        "bias": None,
        "half": torch.zeros(2, dtype=torch.float16),
    }
    recipe = _record(accumulate, named)
    json.dumps(recipe, allow_nan=False)
    args = rebuild_call(recipe, accumulate, seed=0).args
    assert args["scale"] == -math.inf and args["ratio"] == 0.1
    assert (args["flag"], args["label"], args["bias"]) == (True, "a", None)
    ints = args["x_ptr"]
    assert ints.dtype == torch.int32 and ints.shape == (3, 4) and ints.stride() == (1, 3)
    assert int(ints.min()) >= 0 and int(ints.max()) < INT_HIGH
    assert args["y_ptr"].dtype == torch.bool and args["half"].dtype == torch.float16


def _module_kernel(tmp_path: Path, module_name: str) -> Any:
    """A kernel loaded from its own file as module `module_name`, never put in sys.modules."""
    path = tmp_path / "kernel_file.py"
    path.write_text(
        "import triton\nimport triton.language as tl\n\n\n@triton.jit\n"
        "def copy(x_ptr, y_ptr, n, BLOCK: tl.constexpr):\n"
        "    offsets = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)\n"
        "    mask = offsets < n\n"
        "    tl.store(y_ptr + offsets, tl.load(x_ptr + offsets, mask=mask), mask=mask)\n"
    )
    spec = spec_from_file_location(module_name, path)
    assert spec is not None and spec.loader is not None
    module = module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.copy


def test_a_kernel_another_process_cannot_import_is_refused(tmp_path: Path) -> None:
    @triton.jit
    def local(x_ptr, y_ptr, n, BLOCK: tl.constexpr):
        pass

    refused = {
        "__main__": _record(_module_kernel(tmp_path, "__main__"), _call())["refused"],
        "locals": _record(local, _call())["refused"],
        "runtime": _record(_module_kernel(tmp_path, "made_at_run_time"), _call())["refused"],
    }
    assert "defined in __main__ (a script)" in refused["__main__"]
    assert "defined inside a function" in refused["locals"]
    assert "does not lead to this kernel" in refused["runtime"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda c: c.update(y_ptr=c["x_ptr"]), "share memory"),
        (lambda c: c.update(y_ptr=c["x_ptr"][1:]), "share memory"),
        (lambda c: c.update(extra=[1, 2]), "argument 'extra' is a list"),
        (lambda c: c.update(extra=torch.eye(3).to_sparse()), "is a torch.sparse_coo tensor"),
    ],
)
def test_arguments_that_cannot_be_rebuilt_are_refused(
    change: Callable[[dict[str, Any]], None], message: str
) -> None:
    call = _call()
    change(call)
    assert message in _record(accumulate, call)["refused"]


def test_a_grid_that_cannot_be_recorded_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    raising = _record(accumulate, _call(), grid=lambda meta: (1 // 0,))["refused"]
    assert raising.startswith("the grid raised ZeroDivisionError for config {'BLOCK': 32")
    assert "not 1 to 3 integers" in _record(accumulate, _call(), grid=lambda m: 5)["refused"]
    monkeypatch.setattr(recipes, "MAX_GRID_CONFIGS", 3)
    assert "records a grid for at most 3" in _record(accumulate, _call())["refused"]


def test_an_inputs_hook_replaces_arguments() -> None:
    from tests.autotune_kernels import gather_inputs

    named = {"x_ptr": torch.randn(50), "idx_ptr": torch.zeros(50, dtype=torch.int64)}
    named |= {"y_ptr": torch.zeros(50), "n": 50}
    recipe = _record(gather, named, inputs=gather_inputs)
    assert recipe["inputs"] == {"module": "tests.autotune_kernels", "qualname": "gather_inputs"}
    call = rebuild_call(recipe, gather, seed=0)
    assert sorted(call.args["idx_ptr"].tolist()) == list(range(50))  # a permutation
    call.launch({"BLOCK": 64, "num_warps": 2})
    torch.testing.assert_close(call.args["y_ptr"], call.args["x_ptr"][call.args["idx_ptr"]])

    def local_hook(args: dict[str, Any]) -> dict[str, Any]:
        return {}

    assert "inside a function" in _record(gather, named, inputs=local_hook)["refused"]


@pytest.mark.parametrize(
    ("hook", "message"),
    [
        ("tests.autotuning.test_recipe:_returns_unknown", "returned nope, which the kernel"),
        ("tests.autotuning.test_recipe:_raises", "the inputs= hook raised KeyError"),
        ("tests.autotuning.no_such_module:hook", "cannot import the inputs= hook"),
    ],
)
def test_a_hook_that_fails_is_one_reason(hook: str, message: str) -> None:
    named = {"x_ptr": torch.randn(8), "idx_ptr": torch.zeros(8, dtype=torch.int64)}
    named |= {"y_ptr": torch.zeros(8), "n": 8}
    recipe = _record(gather, named)
    module, qualname = hook.split(":")
    recipe["inputs"] = {"module": module, "qualname": qualname}
    with pytest.raises(NotTunableOfflineError, match=message):
        rebuild_call(recipe, gather, seed=0)


def _returns_unknown(args: dict[str, Any]) -> dict[str, Any]:
    return {"nope": 1}


def _raises(args: dict[str, Any]) -> dict[str, Any]:
    return {"x": args["missing"]}
