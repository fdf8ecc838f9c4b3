"""What a search starts from: the space's default, its seeds that fit the shape, and the bests
of the nearest tuned shapes.
"""

from __future__ import annotations

from collections.abc import Sequence

from evotune.records import Config, config_hash
from evotune.space import SearchSpace, Shape
from evotune.storage.trial_store import BestRecord

__all__ = ["seed_configs"]


def seed_configs(
    space: SearchSpace, shape: Shape, tuned: Sequence[BestRecord] = ()
) -> list[Config]:
    """The space default first, then the space's seeds that fit the shape, then the best
    configs of the nearest tuned shapes (`tuned`: the kernel's bests in this environment)."""
    seeds = [space.default_config(), *space.seed_configs(shape.dims)]
    for best in sorted(tuned, key=lambda b: space.shape_distance(shape.dims, b.dims))[:3]:
        # Normalized first: a config stored under an older space file may carry a parameter
        # that no longer applies (or lack a new one).
        config = space.normalize(best.config)
        if best.shape_key != shape.key and not space.violations(config, shape.dims):
            seeds.append(config)
    unique = {config_hash(c): c for c in seeds}
    return list(unique.values())
