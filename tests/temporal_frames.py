"""Frames and pipelines the temporal-reuse tests share (the tiny model: a 32x64 input, a 4x8 grid of patches)."""

from __future__ import annotations

from collections.abc import Hashable
from pathlib import Path

import numpy as np

from paumer_edge.runtime import Pipeline
from paumer_edge.runtime.pipeline import Result

H, W = 64, 128  # frames at twice the tiny model's input (32x64, a 4x8 grid of 8-pixel patches)


def scene(seed: int = 0) -> np.ndarray:
    """A smooth random frame (blobs, not per-pixel noise: the tiny model sees structure)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (4, 8, 3), dtype=np.uint8)
    import cv2

    return cv2.resize(small, (W, H), interpolation=cv2.INTER_CUBIC)


def changed(frame: np.ndarray, rows: slice, cols: slice, value: int = 255) -> np.ndarray:
    out = frame.copy()
    out[rows, cols] = value
    return out


def pipes(bundle: Path, **kw: object) -> tuple[Pipeline, Pipeline]:
    """A per-frame pipeline and a reusing one with the same knobs (MAC budgets: no latency profile to measure)."""
    return Pipeline(bundle, cost="macs", **kw), Pipeline(bundle, cost="macs", reuse=True, stage_map=True, **kw)


def start(pipe: Pipeline, frame: np.ndarray, stream: Hashable = 0) -> Result:
    """A still stream's start: two frames in full, then the refresh that fills the cache (returned)."""
    kinds = [pipe(frame, stream=stream).stats.frame_kind for _ in range(2)]
    out = pipe(frame, stream=stream)
    assert kinds == ["full", "full"] and out.stats.frame_kind == "refresh"
    return out
