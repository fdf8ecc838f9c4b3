"""Pick what measures candidates: a recorded landscape, the interpreter, or the GPUs."""

from __future__ import annotations

from typing import TYPE_CHECKING

from evotune.errors import NoGpuError, UserError
from evotune.space import SearchSpace
from evotune.worker.evaluator import Evaluator

if TYPE_CHECKING:
    from evotune.landscape import Landscape

__all__ = ["cuda_device_count", "open_evaluator", "parse_gpus"]


def cuda_device_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def parse_gpus(spec: str | None) -> list[int]:
    """`all` (default) or a comma list of GPU indices; checked against what is present."""
    count = cuda_device_count()
    if count == 0:
        raise NoGpuError("no CUDA GPU found; run with --interpret to use Triton's CPU interpreter")
    if spec is None or spec == "all":
        return list(range(count)) if spec == "all" else [0]
    try:
        gpus = sorted({int(part) for part in spec.split(",") if part.strip()})
    except ValueError:
        raise UserError(f"--gpus takes 'all' or a comma list of indices, not {spec!r}") from None
    bad = [g for g in gpus if not 0 <= g < count]
    if bad or not gpus:
        raise UserError(f"--gpus {spec!r}: this host has GPUs 0..{count - 1}")
    return gpus


def open_evaluator(
    space: SearchSpace,
    interpret: bool = False,
    gpus: str | None = None,
    replay: Landscape | None = None,
    compile_workers: int | None = None,
    ray: str | None = None,
    ray_workers: int | None = None,
) -> Evaluator:
    """Replay a landscape (checked against `space`: `fit_to_space`), run on a Ray cluster, or
    run here: in the interpreter or on the GPUs asked for. `ray` is an address for `ray.init`
    ("auto", "ray://head:10001") or "local" to start a Ray of this host. An option that the
    chosen evaluator would ignore is refused, so a user never believes it took effect."""
    # (the option given, what makes it meaningless)
    conflicts = [
        ("--gpus", gpus is not None, "--replay", replay is not None),
        ("--gpus", gpus is not None, "--interpret", interpret),
        ("--gpus", gpus is not None, "--ray (it places one actor per GPU)", ray is not None),
        ("--ray", ray is not None, "--replay", replay is not None),
        ("--compile-workers", compile_workers is not None, "--replay", replay is not None),
        ("--compile-workers", compile_workers is not None, "--interpret", interpret),
    ]
    for option, given, other, chosen in conflicts:
        if given and chosen:
            raise UserError(f"{option} has no effect with {other}: drop one of them")
    if replay is not None:
        from evotune.replay import ReplayEvaluator

        return ReplayEvaluator(replay)
    if ray is not None:
        from evotune.worker.ray_pool import RayEvaluator

        return RayEvaluator(
            space.module,
            interpreted=interpret,
            address=None if ray == "local" else ray,
            num_workers=ray_workers,
            compile_workers=compile_workers,
        )
    if ray_workers is not None:
        raise UserError("--ray-workers needs --ray")
    from evotune.worker.pool import WorkerPool

    if interpret:
        return WorkerPool(
            kernel_module=space.module, interpreted=True, gpus=None, compile_workers=0
        )
    return WorkerPool(
        kernel_module=space.module,
        interpreted=False,
        gpus=parse_gpus(gpus),
        compile_workers=compile_workers,
    )
