"""What a call costs a caller that runs it back to back, beside the GPU time of one call: wall
time and host time per call, and the GPU time per call when a CUDA graph replays it
(`evotune bench`'s launch-cost columns).

The GPU time (the timer of evotune/worker/trial.py) is one call between CUDA events with the L2
flushed before it: what the kernel costs the GPU. A model calling it eagerly also pays the host's
launch path, and a CUDA graph takes that path out again:

- wall µs/call: `calls` calls back to back, one synchronize at the end, divided by `calls`.
  Where the host launches slower than the GPU runs, this is the host's cost of a call.
- host µs/call: the same calls' enqueue time (before that synchronize), per call: the host path
  alone, as long as the calls fit in the GPU's launch queue (about a thousand launches).
- graph µs/call: the call captured `calls` times in one CUDA graph, each replay between CUDA
  events, divided by `calls`.

These run the call on one input set without flushing the L2 between calls, as a model's layer
runs: at small shapes they can read below the GPU time of a cold call. GPU only.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from evotune.worker.measure import HEAD_START_CYCLES

__all__ = ["GRAPH_CALLS", "WALL_CALLS", "WallTime", "graph_per_call", "wall_per_call"]

WALL_CALLS = 100  # calls between the start and the synchronize
WALL_REPEATS = 5  # the median of this many such runs
GRAPH_CALLS = 10  # calls captured in one graph
GRAPH_REPLAYS = 20  # timed replays (the median is kept)
_WARMUP_CALLS = 3


@dataclass(frozen=True)
class WallTime:
    """Microseconds per call of back-to-back calls: until the GPU finished (wall) and until the
    host had enqueued them (host)."""

    wall_us: float
    host_us: float


def wall_per_call(
    call: Callable[[], Any], calls: int = WALL_CALLS, repeats: int = WALL_REPEATS
) -> WallTime:
    """The median over `repeats` runs of `calls` back-to-back calls, synchronized once each."""
    for _ in range(_WARMUP_CALLS):
        call()
    torch.cuda.synchronize()
    walls, hosts = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(calls):
            call()
        t_enqueued = time.perf_counter()
        torch.cuda.synchronize()
        t_done = time.perf_counter()
        hosts.append((t_enqueued - t0) / calls * 1e6)
        walls.append((t_done - t0) / calls * 1e6)
    return WallTime(statistics.median(walls), statistics.median(hosts))


def graph_per_call(
    call: Callable[[], Any],
    poison: Callable[[], None] = lambda: None,
    verify: Callable[[Any], None] = lambda _result: None,
    calls: int = GRAPH_CALLS,
    replays: int = GRAPH_REPLAYS,
) -> float:
    """GPU µs per call of `calls` calls captured in one CUDA graph: the median replay between
    CUDA events, divided by `calls`. Warms up on a side stream first, as torch requires. Before
    the first replay `poison()` spoils the output; after it `verify(result)` (the last captured
    call's return value) raises if the replay did not compute it. Raises whatever capture or
    replay raises."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(_WARMUP_CALLS):
            call()
    torch.cuda.current_stream().wait_stream(side)
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(calls):
            result = call()
    poison()
    graph.replay()
    torch.cuda.synchronize()
    verify(result)
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(replays)]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(replays)]
    # As the GPU timer does: the host enqueues the replays behind a spin kernel, so that no
    # host time shows up between a start event and its replay.
    sleep = getattr(torch.cuda, "_sleep", None)
    if sleep is not None:
        sleep(HEAD_START_CYCLES)
    for start, end in zip(starts, ends, strict=True):
        start.record()
        graph.replay()
        end.record()
    torch.cuda.synchronize()
    return statistics.median(
        s.elapsed_time(e) * 1e3 / calls for s, e in zip(starts, ends, strict=True)
    )
