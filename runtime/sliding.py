"""Sliding-window inference for frames larger than the model's input: numpy only, never torch.

Segmenter's recipe (segm/model/utils.py): windows of the model's input size at a stride (2/3 of the
window by default), the last window of each row and column flush with the border, per-window class
scores summed where windows overlap and divided by how many windows saw each pixel. A frame smaller
than the window in either side is first scaled up (aspect ratio kept) until the window fits.

The window layout here is the one the PyTorch evaluator uses too (`paumer_edge.sliding`), so both
cover a frame the same way. Scores are class probabilities: the decoder of a bundle exported with
`--scores` gives them; labels alone cannot be averaged.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from paumer_edge import UserError
from paumer_edge.core.pausing import CostModel, PausingPolicy, check_budget, check_threshold
from paumer_edge.core.windows import DEFAULT_STRIDE, check_stride, covering_size, window_layout

from .bundle import Bundle
from .pipeline import Pipeline, Result
from .preprocess import Placement, labels_to_frame, preprocess, to_rgb_uint8
from .staged import StagedRunner, StageStats


class ScoreAccumulator:
    """Sum of per-window class scores [K, H, W] and of window counts [H, W]; the mean where windows overlap."""

    def __init__(self, num_classes: int, image_hw: tuple[int, int]):
        self.sum = np.zeros((num_classes, *image_hw), np.float32)
        self.count = np.zeros(image_hw, np.float32)

    def add(self, scores: np.ndarray, corner: tuple[int, int]) -> None:
        """Add one window's scores [K, wh, ww] with its top-left corner at `corner` (y, x)."""
        y, x = corner
        _, wh, ww = scores.shape
        self.sum[:, y : y + wh, x : x + ww] += scores
        self.count[y : y + wh, x : x + ww] += 1.0

    def mean(self) -> np.ndarray:
        """Averaged scores [K, H, W]; every pixel must have been covered by a window."""
        if (self.count == 0).any():
            raise ValueError("some pixels were covered by no window")
        return self.sum / self.count


@dataclass
class SlidingOutput:
    labels: np.ndarray  # [H, W] class per pixel at the (possibly scaled-up) image size
    scores: np.ndarray  # [K, H, W] averaged class probabilities at that size
    stage_map: np.ndarray | None  # [H, W] the latest encoder stage any window ran each pixel in
    stats: StageStats  # times summed over windows; token counts and compute averaged per window
    windows: int


def combine_stats(parts: list[StageStats], policy: PausingPolicy) -> StageStats:
    """One frame's stats from its windows': time adds up, tokens and compute are the mean per window."""
    n = max(len(parts), 1)
    stats = StageStats(budget=policy.budget, threshold=policy.threshold)
    stats.stage_ms = [sum(col) for col in zip(*(p.stage_ms for p in parts))]
    stats.counts = [round(sum(col) / n) for col in zip(*(p.counts for p in parts))]
    stats.decoder_ms = sum(p.decoder_ms for p in parts)
    stats.policy_ms = sum(p.policy_ms for p in parts)
    stats.cost_fraction = sum(p.cost_fraction for p in parts) / n
    return stats


def require_scores(bundle: Bundle) -> None:
    """Sliding windows average class scores: refuse a bundle whose decoder gives labels only."""
    if "scores" not in {t.name for t in bundle.graphs["decoder"].outputs}:
        raise UserError(f"sliding windows need class scores and the bundle {bundle.path} has none; "
                        "export it again with `paumer-edge export CKPT --scores`")


def sliding_segment(runner: StagedRunner, rgb: np.ndarray, policy: PausingPolicy, stride: float = DEFAULT_STRIDE,
                    stage_map: bool = False, batch: int = 1, cost: CostModel | None = None) -> SlidingOutput:
    """Segment an RGB uint8 frame [h, w, 3] window by window with a bundle whose decoder outputs scores
    (`require_scores` checks that, once per bundle: `SlidingPipeline` does on construction).

    `cost` is what the budget is a fraction of (default: the bundle's MAC model), as in `StagedRunner`.
    """
    m = runner.bundle.model
    size = covering_size((rgb.shape[0], rgb.shape[1]), m.input_size)
    x, _ = preprocess(rgb, size, m.mean, m.std, letterbox=False)  # scale (if needed) and normalise once
    corners = window_layout(size, m.input_size, stride)
    wh, ww = m.input_size
    acc = ScoreAccumulator(m.num_classes, size)
    smap = np.zeros(size, np.uint8) if stage_map else None
    parts: list[StageStats] = []
    for i in range(0, len(corners), max(1, batch)):
        group = corners[i : i + max(1, batch)]
        crops = np.stack([x[:, y : y + wh, c : c + ww] for y, c in group])
        out = runner.forward(crops, policy, stage_map=stage_map, cost=cost)
        assert out.scores is not None  # the decoder declares them (checked above)
        for j, corner in enumerate(group):
            acc.add(out.scores[j], corner)
            if smap is not None and out.stage_map is not None:
                y, c = corner
                up = cv2.resize(out.stage_map[j], (ww, wh), interpolation=cv2.INTER_NEAREST)
                np.maximum(smap[y : y + wh, c : c + ww], up, out=smap[y : y + wh, c : c + ww])
        parts.append(out.stats)
    scores = acc.mean()
    dtype = np.uint8 if m.num_classes <= 256 else np.int32
    return SlidingOutput(scores.argmax(0).astype(dtype), scores, smap, combine_stats(parts, policy), len(corners))


def sliding_placement(frame_hw: tuple[int, int], image_hw: tuple[int, int]) -> Placement:
    """Where a sliding result sits: the whole frame, at the scaled-up size the windows ran over."""
    return Placement((int(frame_hw[0]), int(frame_hw[1])), image_hw, (0, 0, image_hw[0], image_hw[1]))


class SlidingPipeline(Pipeline):
    """A `Pipeline` that segments every frame window by window at its own resolution (scaled up if smaller).

        seg = SlidingPipeline("model.paumer", stride=2 / 3, budget=0.5)   # bundle exported with --scores
        result = seg(frame)     # labels at the frame's size; scores [K, h, w] at the size the windows ran over

    Letterboxing does not apply (the whole frame is covered). Timings and stats add up all windows.
    """

    def __init__(self, bundle: Any, stride: float = DEFAULT_STRIDE, batch: int = 1, **options: Any):
        if options.get("letterbox"):
            raise UserError("sliding windows cover the whole frame: leave letterboxing off")
        super().__init__(bundle, **options)
        require_scores(self.bundle)
        self.stride = check_stride(stride)
        self.batch = max(1, int(batch))

    def describe(self) -> str:
        return f"{super().describe()}, sliding windows at stride {self.stride:.2f}"

    def __call__(self, frame: np.ndarray, budget: float | None = None, threshold: float | None = None) -> Result:
        t0 = time.perf_counter()
        rgb = to_rgb_uint8(frame, bgr=self.bgr)
        with self._lock:
            b = check_budget(budget) if budget is not None else self.budget
            thr = check_threshold(threshold) if threshold is not None else self.threshold
            out = sliding_segment(self.runner, rgb, PausingPolicy(b, thr), self.stride, self.stage_map, self.batch,
                                  self.cost)
            t1 = time.perf_counter()
            if self.controller is not None and budget is None:
                self.controller.update((t1 - t0) * 1000)
        placement = sliding_placement((rgb.shape[0], rgb.shape[1]), (out.labels.shape[0], out.labels.shape[1]))
        labels = labels_to_frame(out.labels, placement)
        t2 = time.perf_counter()
        return Result(labels, out.stats, placement, out.scores, out.stage_map,
                      {"inference": (t1 - t0) * 1000, "postprocess": (t2 - t1) * 1000})
