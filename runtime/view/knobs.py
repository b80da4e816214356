"""The knobs a viewer may turn: budget, threshold, latency target (the pipeline's own validated setters)
and the pause map display. Nothing else: no paths, no commands, no other attribute of the pipeline.

A change is checked whole before any of it is applied (the same checks the setters run), so a request
with one bad value changes nothing and answers with the one-line message the API would raise.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from paumer_edge.core.errors import PolicyError
from paumer_edge.core.pausing import check_budget, check_target_ms, check_threshold

from ..pipeline import Pipeline
from .frames import FrameHub

KNOBS = ("budget", "threshold", "target_ms", "pause_map")


def _as_typed(value: Any) -> Any:
    """A page's text field sends what was typed: text that reads as a number is that number; anything else
    goes to the check as it is, so the message is the API's own."""
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return value
    return value


def _field(check: Callable[..., float | None]) -> Callable[[Any], float | None]:
    return lambda value: check(_as_typed(value))


def _optional(check: Callable[..., float | None]) -> Callable[[Any], float | None]:
    """None (or an empty field) turns the knob off; anything else must pass `check`."""
    field = _field(check)
    return lambda value: None if value is None or (isinstance(value, str) and not value.strip()) else field(value)


def _switch(value: Any) -> bool:
    if not isinstance(value, bool):
        raise PolicyError(f"pause_map {value!r}: give true or false")
    return value


CHECKS: dict[str, Callable[[Any], Any]] = {"budget": _field(check_budget), "threshold": _optional(check_threshold),
                                           "target_ms": _optional(check_target_ms), "pause_map": _switch}


class Knobs:
    """Reads and turns one pipeline's knobs for the view; changes are serialised and take effect from the
    pipeline's next frame (the setters wait for a frame in flight)."""

    def __init__(self, pipe: Pipeline, hub: FrameHub):
        self.pipe, self.hub = pipe, hub
        self._lock = threading.Lock()

    def state(self) -> dict[str, Any]:
        """The knobs as they are set now (with a latency target, the budget it currently gives)."""
        return {"budget": round(float(self.pipe.budget), 4), "threshold": self.pipe.threshold,
                "target_ms": self.pipe.target_ms, "pause_map": self.hub.pause_map}

    def apply(self, changes: Any) -> dict[str, Any]:
        """Check every change, then apply them in order; returns the new state and the frame count before it."""
        if not isinstance(changes, dict) or not changes:
            raise PolicyError(f"send a JSON object with the knobs to change: {', '.join(KNOBS)}")
        unknown = [k for k in changes if k not in CHECKS]
        if unknown:
            raise PolicyError(f"unknown knob '{unknown[0]}': the view changes only {', '.join(KNOBS)}")
        checked = {k: CHECKS[k](v) for k, v in changes.items()}
        with self._lock:
            frame = self.hub.frames
            for knob, value in checked.items():
                if knob == "budget":
                    self.pipe.budget = value
                elif knob == "threshold":
                    self.pipe.threshold = value
                elif knob == "target_ms":
                    self.pipe.target_ms = value
                else:
                    self.hub.pause_map = value
            return {"knobs": self.state(), "frames_before": frame}
