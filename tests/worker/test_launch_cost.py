"""evotune/worker/launch_cost.py on a CUDA GPU: back-to-back wall and host time per call, and
GPU time per call of a CUDA graph replay, on plain torch calls."""

from __future__ import annotations

import pytest
import torch

from evotune.worker.launch_cost import graph_per_call, wall_per_call

pytestmark = pytest.mark.gpu


def test_wall_time_is_at_least_the_host_time_and_counts_every_call() -> None:
    x = torch.ones(1 << 20, device="cuda")
    calls = 0

    def call() -> torch.Tensor:
        nonlocal calls
        calls += 1
        return x.mul_(1.0)

    cost = wall_per_call(call, calls=50, repeats=3)
    assert calls == 3 + 50 * 3  # the warm-up, then each run
    assert 0 < cost.host_us <= cost.wall_us


def test_a_host_bound_call_shows_its_host_time() -> None:
    """A call that sleeps 200 µs on the host: wall and host time per call both carry it."""
    import time

    x = torch.ones(16, device="cuda")

    def call() -> None:
        end = time.perf_counter() + 200e-6
        while time.perf_counter() < end:
            pass
        x.add_(1.0)

    cost = wall_per_call(call, calls=20, repeats=3)
    assert cost.host_us >= 200 and cost.wall_us >= 200


def test_graph_replay_is_timed_and_verified() -> None:
    x = torch.randn(1 << 16, device="cuda")
    out = torch.empty_like(x)

    def call() -> torch.Tensor:
        torch.mul(x, 2.0, out=out)
        return out

    seen: list[torch.Tensor] = []

    def verify(result: torch.Tensor) -> None:
        seen.append(result.clone())

    us = graph_per_call(call, lambda: out.fill_(float("nan")), verify)
    assert us > 0
    torch.testing.assert_close(seen[0], 2 * x)  # the replay wrote the poisoned output
    # New data in the captured input: a replay reads it.
    x.copy_(torch.randn_like(x))
    graph_per_call(call, lambda: out.fill_(float("nan")), verify)
    torch.testing.assert_close(seen[1], 2 * x)


def test_a_wrong_replay_and_a_failed_capture_raise() -> None:
    x = torch.randn(1024, device="cuda")

    def reject(_result: object) -> None:
        raise RuntimeError("the replay's output is wrong")

    with pytest.raises(RuntimeError, match="output is wrong"):
        graph_per_call(lambda: x * 2, verify=reject)

    def syncs() -> float:
        return float(x.sum().item())  # a host read: not allowed while capturing

    with pytest.raises(Exception):  # noqa: B017 - torch raises RuntimeError or a CUDA error
        graph_per_call(syncs)
    # The context survived the failed capture: the next row of a bench still runs.
    assert float((x * 0 + 1).sum().item()) == 1024.0
