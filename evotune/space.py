"""Search spaces and named shapes: loaded from `search_spaces/<kernel>.yaml`, validated.

A space declares the kernel's shape dimensions (some with a default, and rules the dims of a
shape satisfy), its tunable parameters (some active only under a condition), constraints over
parameters and dims, per-dtype tolerances, the default config, seed configs every search
starts from, and named shapes. Everything else in evotune reads kernels through this.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from evotune import dims as dim_forms
from evotune.errors import (
    ImpossibleShapeError,
    KernelNotFoundError,
    ShapeNotFoundError,
    SpaceFileError,
    UserError,
)
from evotune.expressions import ExpressionError, compile_expression, evaluate, names_in
from evotune.records import Config, Dims

__all__ = [
    "BOOL_FALSE",
    "BOOL_TRUE",
    "Constraint",
    "Parameter",
    "SearchSpace",
    "Seed",
    "Shape",
    "Tolerance",
    "available_kernels",
    "load_space",
    "parse_dim",
    "parse_value",
    "space_directory",
]

DimType = Literal["int", "bool", "str"]

BOOL_TRUE = frozenset({"true", "1", "yes", "on"})
BOOL_FALSE = frozenset({"false", "0", "no", "off"})
_INT = re.compile(r"^[+-]?\d{1,18}$")
_DIM_TYPES: dict[str, type] = {"int": int, "bool": bool, "str": str}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Parameter(_Strict):
    """One tunable knob. `ordered` values have neighbours; `categorical` ones do not."""

    kind: Literal["ordered", "categorical", "bool", "int"]
    values: list[Any] | None = None
    low: int | None = None
    high: int | None = None
    step: int = 1
    default: Any
    when: str | None = None
    doc: str = ""

    @model_validator(mode="after")
    def _check(self) -> Parameter:
        if self.kind in ("ordered", "categorical"):
            if not self.values:
                raise ValueError(f"a {self.kind} parameter needs a non-empty 'values' list")
            if len(set(map(json.dumps, self.values))) != len(self.values):
                raise ValueError("'values' has duplicates")
        elif self.kind == "int" and (
            self.low is None or self.high is None or self.low > self.high or self.step < 1
        ):
            raise ValueError("an int parameter needs low <= high and step >= 1")
        if self.default not in self.choices():
            raise ValueError(f"default {self.default!r} is not one of {self.choices()}")
        if self.when is not None:
            compile_expression(self.when)
        return self

    def parse(self, value: Any) -> Any:
        """The choice a recorded value stands for: itself, or a value of another type that
        means exactly one choice ("64" for 64, 0/1 for a bool). ValueError if none."""
        choices = self.choices()
        if _typed_in(value, choices):
            return value
        for kind in dict.fromkeys(type(c) for c in choices):
            try:
                converted = parse_value(value, kind)
            except ValueError:
                continue
            if _typed_in(converted, choices):
                return converted
        raise ValueError(f"{value!r} is not one of {choices}")

    def choices(self) -> list[Any]:
        """Every value this parameter can take, in order."""
        if self.kind == "bool":
            return [False, True]
        if self.kind == "int":
            assert self.low is not None and self.high is not None
            return list(range(self.low, self.high + 1, self.step))
        assert self.values is not None
        return list(self.values)


class Constraint(_Strict):
    """A rule every valid config satisfies, e.g. `BLOCK_M <= S or BLOCK_M == 16`."""

    expr: str
    why: str = ""

    @model_validator(mode="after")
    def _check(self) -> Constraint:
        compile_expression(self.expr)
        return self


class Tolerance(_Strict):
    """Allowed error against the float32 reference: |out - ref| <= atol + rtol * |ref|."""

    atol: float = Field(gt=0)
    rtol: float = Field(default=0.0, ge=0)


class Seed(_Strict):
    """A config every search starts from beside the default: a family that measured fastest
    somewhere, so that a search need not find it again by chance. Missing parameters take
    their defaults; a seed that breaks a shape's constraints is left out for that shape."""

    config: dict[str, Any]
    why: str


@dataclass(frozen=True)
class Shape:
    """An input shape: a name (None for ad-hoc shapes) and its dims."""

    name: str | None
    dims: Dims

    @property
    def key(self) -> str:
        """Canonical identity of the dims, independent of the name."""
        return json.dumps(self.dims, sort_keys=True, separators=(",", ":"))

    def label(self) -> str:
        return self.name or " ".join(f"{k}={v}" for k, v in self.dims.items())

    def dims_text(self) -> str:
        """The dims as `--dims` takes them: `B=1,H=2,causal=true,dtype=float16`."""
        return ",".join(
            f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in self.dims.items()
        )


def parse_dim(name: str, kind: str, raw: str) -> Any:
    """A dim's value from text (a query parameter, `--dims`), typed as the space declares it."""
    if kind == "int":
        if not _INT.match(raw):
            raise UserError(f"{name} must be an integer")
        return int(raw)
    if kind == "bool":
        lowered = raw.lower()
        if lowered in BOOL_TRUE:
            return True
        if lowered in BOOL_FALSE:
            return False
        raise UserError(f"{name} must be true or false")
    return raw


def parse_value(value: Any, kind: type) -> Any:
    """`value` as a `kind` (int, bool or str) where that is unambiguous: text as `parse_dim`
    reads it, 0/1 as a bool, an integral float as an int. ValueError otherwise."""
    if type(value) is kind:
        return value
    if isinstance(value, str) and kind in (int, bool):
        try:
            return parse_dim("value", kind.__name__, value)
        except UserError:
            pass
    elif kind is bool and type(value) in (int, float) and value in (0, 1):
        return bool(value)
    elif kind is int and type(value) is float and value.is_integer():
        return int(value)
    raise ValueError(f"{value!r} is not a {kind.__name__}")


def _typed_in(value: Any, choices: list[Any]) -> bool:
    # `in` alone would take 1 for True and 64.0 for 64, which hash as other configs.
    return any(type(c) is type(value) and c == value for c in choices)


def _distance(a: Mapping[str, Any], b: Mapping[str, Any]) -> float:
    """How far complete dims `b` are from `a`: |log2| of each numeric ratio, 1 per other
    mismatch (`SearchSpace.shape_distance` completes them first)."""
    total = 0.0
    for key, value in a.items():
        other = b.get(key)
        if isinstance(value, bool) or not isinstance(value, int | float):
            total += 0.0 if other == value else 1.0
        elif isinstance(other, int | float) and other > 0 and value > 0:
            total += abs(math.log2(value / other))
        else:
            total += 1.0
    return total


class SearchSpace(_Strict):
    """A kernel's whole tuning problem, as declared in its YAML file."""

    kernel: str
    module: str
    description: str = ""
    dims: dict[str, DimType]
    # Dims a shape may leave out: name -> an expression over the other dims (e.g. `Hkv: H`).
    # Shapes are keyed and stored without the dims at their default (evotune/dims.py), so a
    # dim added with a default keeps every existing shape, study and best as it was.
    dim_defaults: dict[str, str] = Field(default_factory=dict)
    # Rules every shape satisfies (e.g. `H % Hkv == 0`): a shape that breaks one is refused.
    shape_constraints: list[Constraint] = Field(default_factory=list)
    derived: dict[str, str] = Field(default_factory=dict)
    parameters: dict[str, Parameter]
    constraints: list[Constraint] = Field(default_factory=list)
    tolerances: dict[str, Tolerance]
    shapes: dict[str, dict[str, Any]]
    seeds: list[Seed] = Field(default_factory=list)
    # What Triton's CPU interpreter can run: `--interpret` searches only where these hold
    # (`for_interpreter`); the plug-in's `unsupported` refuses the rest at run time.
    interpreter: list[Constraint] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check(self) -> SearchSpace:
        if not self.parameters:
            raise ValueError("parameters: at least one is needed")
        self._check_dim_defaults()
        visible = set(self.dims)
        for name, expr in self.derived.items():
            # Checked here, not first when a shape is evaluated: a file that tries to run
            # code (or names what does not exist) is refused as it loads.
            try:
                unknown = names_in(expr) - visible
            except ExpressionError as exc:
                raise ValueError(f"derived.{name}: {exc}") from None
            if unknown:
                raise ValueError(
                    f"derived.{name}: names {sorted(unknown)}, which are not dims or "
                    "derived values declared above it"
                )
            visible.add(name)
        seen: set[str] = set()
        for name, param in self.parameters.items():
            if param.when is not None:
                unknown = names_in(param.when) - seen - set(self.dims) - set(self.derived)
                if unknown:
                    raise ValueError(
                        f"parameters.{name}.when: names {sorted(unknown)}, which are not "
                        "dims or parameters declared above it"
                    )
            seen.add(name)
        known = set(self.parameters) | set(self.dims) | set(self.derived)
        for i, constraint in enumerate(self.shape_constraints):
            unknown = names_in(constraint.expr) - set(self.dims) - set(self.derived)
            if unknown:
                raise ValueError(
                    f"shape_constraints.{i}: names {sorted(unknown)}, not dims or derived values"
                )
        for where, rules in (("constraints", self.constraints), ("interpreter", self.interpreter)):
            for i, constraint in enumerate(rules):
                unknown = names_in(constraint.expr) - known
                if unknown:
                    raise ValueError(f"{where}.{i}: unknown names {sorted(unknown)}")
        for shape_name, dims in self.shapes.items():
            self._check_dims(dims, f"shapes.{shape_name}")
            self._check_rules(dims, f"shapes.{shape_name}")
            # Named shapes are written as they are keyed, so that `shapes` is that form too.
            spelled = [d for d in dims if d not in self.canonical_dims(dims)]
            if spelled:
                defaults = ", ".join(f"{d}: {self.dim_defaults[d]}" for d in spelled)
                raise ValueError(
                    f"shapes.{shape_name}: leave out {', '.join(spelled)} (at the default, "
                    f"{defaults})"
                )
        if not self.is_valid_structure(self.default_config()):
            raise ValueError("the parameters' defaults do not form a config of this space")
        for i, seed in enumerate(self.seeds):
            # Defaults fill what the seed leaves out; its own keys stay to be checked (unknown,
            # out of domain, or made inactive by its other values: dropped silently otherwise).
            problems = self.structural_problems({**self.normalize(seed.config), **seed.config})
            if problems:
                raise ValueError(f"seeds.{i}: {'; '.join(problems)}")
        return self

    def _check_dim_defaults(self) -> None:
        for i, (name, expr) in enumerate(self.dim_defaults.items()):
            if name not in self.dims:
                raise ValueError(f"dim_defaults.{name}: not a dim")
            # A default reads dims that have none, or one declared above it.
            readable = set(self.dims) - set(list(self.dim_defaults)[i:])
            try:
                unknown = names_in(expr) - readable
            except ExpressionError as exc:
                raise ValueError(f"dim_defaults.{name}: {exc}") from None
            if unknown:
                raise ValueError(
                    f"dim_defaults.{name}: names {sorted(unknown)}, which are not dims without "
                    "a default or with one declared above it"
                )

    def _check_dims(self, dims: Mapping[str, Any], where: str) -> None:
        missing = set(self.dims) - set(dims) - set(self.dim_defaults)
        extra = set(dims) - set(self.dims)
        if missing or extra:
            raise ValueError(f"{where}: missing {sorted(missing)}, unknown {sorted(extra)}")
        complete = self.complete_dims(dims)
        for dim, kind in self.dims.items():
            value = complete[dim]
            if type(value) is not _DIM_TYPES[kind]:
                raise ValueError(f"{where}.{dim}: expected {kind}, got {value!r}")
        if "dtype" in dims and dims["dtype"] not in self.tolerances:
            raise ValueError(f"{where}.dtype: no tolerance declared for {dims['dtype']!r}")

    def _check_rules(self, dims: Mapping[str, Any], where: str) -> None:
        """ValueError naming the first shape constraint that well-formed dims break."""
        ns = self.namespace(dims)
        for rule in self.shape_constraints:
            if not _truthy(rule.expr, ns):
                values = ", ".join(f"{n}={ns[n]}" for n in self.dims if n in names_in(rule.expr))
                raise ValueError(
                    f"{where}: {values} break `{rule.expr}`"
                    + (f" ({rule.why})" if rule.why else "")
                )

    def complete_dims(self, dims: Mapping[str, Any]) -> Dims:
        """Every dim: those a shape leaves out at their declared default (`dim_defaults`)."""
        return dim_forms.complete_dims(dims, self.dim_defaults)

    def canonical_dims(self, dims: Mapping[str, Any]) -> Dims:
        """The form shapes are keyed, stored and exported in: the dims in declared order, those
        at their default left out (so `Hkv=H` spelled out names the same shape)."""
        canonical = dim_forms.canonical_dims(dims, self.dim_defaults)
        return {name: canonical[name] for name in self.dims if name in canonical}

    def typed_dims(self, dims: Mapping[str, Any]) -> dict[str, Any]:
        """Recorded dims as declared: each converted where unambiguous (`parse_value`), then
        checked, in canonical form; ValueError names the first dim missing, unknown or of
        another type, or the shape constraint the dims break."""
        typed = {name: self._typed_dim(name, value) for name, value in dims.items()}
        self._check_dims(typed, "shape")
        self._check_rules(typed, "shape")
        return self.canonical_dims(typed)

    def _typed_dim(self, name: str, value: Any) -> Any:
        if name not in self.dims:
            return value  # _check_dims names it
        try:
            return parse_value(value, _DIM_TYPES[self.dims[name]])
        except ValueError:
            return value  # _check_dims names it

    # --- shapes -------------------------------------------------------------------------

    def shape(self, name: str) -> Shape:
        """A named shape; unknown names list the known ones."""
        if name not in self.shapes:
            known = ", ".join(self.shapes)
            raise ShapeNotFoundError(
                f"unknown shape {name!r} for kernel {self.kernel!r}; known shapes: {known}"
            )
        return Shape(name, dict(self.shapes[name]))

    def adhoc_shape(self, dims: Mapping[str, Any]) -> Shape:
        """A shape given by its dims (complete or canonical); a named shape with the same
        dims keeps its name."""
        try:
            self._check_dims(dims, "shape")
        except ValueError as exc:
            raise UserError(str(exc)) from None
        try:
            self._check_rules(dims, "shape")
        except ValueError as exc:
            raise ImpossibleShapeError(str(exc)) from None
        shape = Shape(None, self.canonical_dims(dims))
        for name, named in self.shapes.items():
            if Shape(name, named).key == shape.key:
                return Shape(name, shape.dims)
        return shape

    def parse_dims(self, text: str) -> Shape:
        """A shape from `B=8,H=32,causal=true,dtype=bfloat16`: every dim once (those with a
        default may be left out), typed as declared."""
        raw: dict[str, str] = {}
        for item in (part.strip() for part in text.split(",")):
            name, sep, value = (piece.strip() for piece in item.partition("="))
            if not sep or not name:
                raise UserError(f"{item!r} is not NAME=VALUE (e.g. {self._dims_example()})")
            if name not in self.dims:
                raise UserError(
                    f"unknown dim {name!r}; the dims of {self.kernel} are {', '.join(self.dims)}"
                )
            if name in raw:
                raise UserError(f"dim {name!r} is given twice")
            raw[name] = value
        missing = [dim for dim in self.dims if dim not in raw and dim not in self.dim_defaults]
        if missing:
            optional = ", ".join(f"{d}={e}" for d, e in self.dim_defaults.items())
            raise UserError(
                f"missing {', '.join(missing)}: an ad-hoc shape needs every dim"
                + (f" (but those with a default: {optional})" if optional else "")
            )
        return self.adhoc_shape(
            {dim: parse_dim(dim, kind, raw[dim]) for dim, kind in self.dims.items() if dim in raw}
        )

    def shape_distance(self, a: Mapping[str, Any], b: Mapping[str, Any]) -> float:
        """How far shape dims `b` are from `a` (either form): |log2| of each numeric ratio of
        their complete dims, 1 per other mismatch."""
        return _distance(self.complete_dims(a), self.complete_dims(b))

    def _dims_example(self) -> str:
        first = next(iter(self.shapes.values()), None)
        if first is None:
            return ",".join(f"{dim}=..." for dim in self.dims)
        return Shape(None, first).dims_text()

    def restricted(self, expr: str | None) -> SearchSpace:
        """This space with one more constraint (e.g. `impl == 'triton'`): a sub-space to search."""
        if not expr:
            return self
        try:
            data = self.model_dump()
            data["constraints"].append({"expr": expr, "why": "restricted to a sub-space"})
            return SearchSpace.model_validate(data)
        except ValidationError as exc:
            # The rest of the space is valid: the problem is the restriction's own.
            reason = str(exc.errors()[0]["msg"]).removeprefix("Value error, ")
            reason = re.sub(r"^constraints\.\d+: ", "", reason)
            raise UserError(f"bad restriction {expr!r}: {reason}") from None
        except ExpressionError as exc:
            raise UserError(f"bad restriction {expr!r}: {exc}") from None

    def searched(self, restrict: str | None, interpreted: bool) -> SearchSpace:
        """The sub-space a study searches: its `--restrict`, and in the interpreter only what
        the interpreter can run."""
        space = self.restricted(restrict)
        return space.for_interpreter() if interpreted else space

    def for_interpreter(self) -> SearchSpace:
        """This space less what Triton's CPU interpreter cannot run (its `interpreter:` rules)."""
        if not self.interpreter:
            return self
        data = self.model_dump()
        data["constraints"] += data["interpreter"]
        data["interpreter"] = []
        return SearchSpace.model_validate(data)

    def tolerance(self, dims: Mapping[str, Any]) -> Tolerance:
        return self.tolerances[str(dims.get("dtype", next(iter(self.tolerances))))]

    # --- configs ------------------------------------------------------------------------

    def default_config(self) -> Config:
        """The space's default config, with inactive parameters left out."""
        return self.normalize({name: p.default for name, p in self.parameters.items()})

    def seed_configs(self, dims: Mapping[str, Any]) -> list[Config]:
        """The declared seeds that are valid configs for a shape with these dims."""
        configs = [self.normalize(seed.config) for seed in self.seeds]
        return [config for config in configs if not self.violations(config, dims)]

    def active_names(
        self, config: Mapping[str, Any], dims: Mapping[str, Any] | None = None
    ) -> list[str]:
        """Parameters whose `when` holds for this config (in declaration order)."""
        active: list[str] = []
        ns: dict[str, Any] = self.namespace(dims) if dims else {}
        for name, param in self.parameters.items():
            value = config.get(name, param.default)
            if param.when is None or _truthy(param.when, ns):
                active.append(name)
                ns[name] = value
        return active

    def normalize(self, config: Mapping[str, Any]) -> Config:
        """Drop inactive parameters, fill missing active ones with defaults."""
        active = self.active_names(config)
        return {n: config.get(n, self.parameters[n].default) for n in active}

    def is_valid_structure(self, config: Mapping[str, Any]) -> bool:
        return not self.structural_problems(config)

    def structural_problems(self, config: Mapping[str, Any]) -> list[str]:
        """Unknown keys, values outside a parameter's domain, inactive keys present."""
        problems = [f"unknown parameter {k!r}" for k in config if k not in self.parameters]
        active = self.active_names(config)
        for name in active:
            if name not in config:
                problems.append(f"missing parameter {name!r}")
            elif config[name] not in self.parameters[name].choices():
                problems.append(
                    f"{name}={config[name]!r} is not one of {self.parameters[name].choices()}"
                )
        problems += [
            f"{k!r} does not apply here" for k in config if k in self.parameters and k not in active
        ]
        return problems

    def violations(self, config: Mapping[str, Any], dims: Mapping[str, Any]) -> list[str]:
        """Why a config is invalid for a shape (empty when it is valid)."""
        problems = self.structural_problems(config)
        if problems:
            return problems
        ns = self.namespace(dims)
        for name, param in self.parameters.items():
            ns[name] = config.get(name, param.default)
        for c in self.constraints:
            if not _truthy(c.expr, ns):
                problems.append(f"violates `{c.expr}`" + (f" ({c.why})" if c.why else ""))
        return problems

    def enumerate(self, dims: Mapping[str, Any] | None = None) -> Iterator[Config]:
        """Every structurally distinct config; with dims, only the valid ones for that shape.

        The plain definition (the product of every parameter's values, each checked whole):
        slow on a space with conditional branches. Code that needs the valid configs uses
        `evotune.search.grid.valid_configs`, which the tests hold to this definition.
        """
        names = list(self.parameters)
        seen: set[str] = set()
        for values in itertools.product(*(self.parameters[n].choices() for n in names)):
            config = self.normalize(dict(zip(names, values, strict=True)))
            key = json.dumps(config, sort_keys=True)
            if key in seen:
                continue
            seen.add(key)
            if dims is None or not self.violations(config, dims):
                yield config

    def namespace(self, dims: Mapping[str, Any]) -> dict[str, Any]:
        """What the space's expressions see of a shape: its complete dims and derived values."""
        ns = self.complete_dims(dims)
        for name, expr in self.derived.items():
            ns[name] = evaluate(expr, ns)
        return ns


def _first_error(exc: ValidationError) -> str:
    """Where and what of a validation error's first problem, e.g. `constraints.3: ...`."""
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"])
    msg = str(err["msg"]).removeprefix("Value error, ")
    return f"{loc + ': ' if loc else ''}{msg}"


def _truthy(expr: str, ns: Mapping[str, Any]) -> bool:
    try:
        return bool(evaluate(expr, ns))
    except ExpressionError:
        raise
    except Exception as exc:  # arithmetic on the file's values, e.g. division by zero
        raise ExpressionError(f"`{expr}` failed: {exc}") from None


# --- loading -----------------------------------------------------------------------------


def space_directory() -> Path:
    """Where search-space files live: $EVOTUNE_SPACES, else the bundled `search_spaces`."""
    override = os.environ.get("EVOTUNE_SPACES")
    if override:
        return Path(override)
    return Path(str(resources.files("evotune.search_spaces")))


def available_kernels(directory: Path | None = None) -> list[str]:
    directory = directory or space_directory()
    return sorted(p.stem for p in directory.glob("*.yaml"))


def load_space(kernel: str, directory: Path | None = None) -> SearchSpace:
    """Load and validate `<directory>/<kernel>.yaml`; one clear error line if it is broken."""
    directory = directory or space_directory()
    path = directory / f"{kernel}.yaml"
    if not path.is_file():
        known = ", ".join(available_kernels(directory)) or "none"
        raise KernelNotFoundError(f"unknown kernel {kernel!r}; known kernels: {known}")
    return parse_space_file(path)


def parse_space_file(path: Path) -> SearchSpace:
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise SpaceFileError(f"{path}: not valid YAML: {exc}".replace("\n", " ")) from None
    if not isinstance(raw, dict):
        raise SpaceFileError(f"{path}: expected a mapping at the top level")
    try:
        space = SearchSpace.model_validate(raw)
    except ValidationError as exc:
        raise SpaceFileError(f"{path}: {_first_error(exc)}") from None
    except ExpressionError as exc:
        raise SpaceFileError(f"{path}: bad expression: {exc}") from None
    if space.kernel != path.stem:
        raise SpaceFileError(
            f"{path}: kernel: is {space.kernel!r}, but the file is named {path.stem!r}"
        )
    return space
