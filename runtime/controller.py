"""A latency target as a knob: adjust the budget frame by frame so inference takes about `target_ms`.

Inference time is close to an offset plus a part proportional to the spent compute, so a
multiplicative step on the budget, in proportion to how far the smoothed latency is from the target,
converges in a few frames and follows load changes (thermal throttling, a busy CPU).
"""

from __future__ import annotations

from dataclasses import dataclass

from paumer_edge.core.errors import PolicyError
from paumer_edge.core.knobs import check_budget, check_target_ms


@dataclass
class LatencyController:
    target_ms: float
    budget: float = 1.0
    min_budget: float = 0.05
    gain: float = 0.6  # exponent of the correction: 1 = jump straight to the proportional guess
    smoothing: float = 0.3  # weight of the newest measurement in the moving average
    _avg_ms: float | None = None

    def __post_init__(self) -> None:
        target = check_target_ms(self.target_ms)
        if target is None:
            raise PolicyError("a LatencyController needs a latency target: give target_ms")
        self.target_ms = target
        self.budget = check_budget(self.budget)
        self.min_budget = check_budget(self.min_budget, "min_budget")
        if self.min_budget > self.budget:
            raise PolicyError(f"min_budget {self.min_budget:g} exceeds the starting budget {self.budget:g}")

    def update(self, measured_ms: float) -> float:
        """Feed the last frame's inference time; returns the budget for the next frame."""
        if measured_ms <= 0:
            return self.budget
        a = self.smoothing
        self._avg_ms = measured_ms if self._avg_ms is None else (1 - a) * self._avg_ms + a * measured_ms
        ratio = self.target_ms / self._avg_ms
        self.budget = min(1.0, max(self.min_budget, self.budget * ratio**self.gain))
        return self.budget
