"""Search strategies behind one ask/tell protocol."""

from __future__ import annotations

from evotune.search.base import Candidate, Observation, Strategy
from evotune.search.registry import STRATEGIES, make_strategy

__all__ = ["STRATEGIES", "Candidate", "Observation", "Strategy", "make_strategy"]
