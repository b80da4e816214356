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

from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from paumer_edge import UserError
from paumer_edge.core.contract import ModelInfo
from paumer_edge.core.pausing import TokenSelector
from paumer_edge.core.windows import DEFAULT_STRIDE, check_stride, covering_size, window_layout

from .bundle import Bundle
from .pipeline import Pipeline
from .preprocess import Placement, labels_to_frame, preprocess, to_rgb_uint8
from .staged import StagedRunner, StageStats
from .tiling import Tiled


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


def combine_stats(parts: list[StageStats]) -> StageStats:
    """One frame's stats from its windows': time adds up, tokens and compute are the mean per window."""
    n = max(len(parts), 1)
    stats = StageStats(budget=parts[0].budget, threshold=parts[0].threshold)
    stats.stage_ms = [sum(col) for col in zip(*(p.stage_ms for p in parts))]
    stats.counts = [round(sum(col) / n) for col in zip(*(p.counts for p in parts))]
    stats.decoder_ms = sum(p.decoder_ms for p in parts)
    stats.policy_ms = sum(p.policy_ms for p in parts)
    stats.cost_fraction = sum(p.cost_fraction for p in parts) / n
    return stats


def require_scores(bundle: Bundle) -> None:
    """Sliding windows average class scores: refuse a bundle whose decoder gives labels only."""
    if not bundle.manifest.has_scores:
        raise UserError(f"sliding windows need class scores and the bundle {bundle.path} has none; "
                        "export it again with `paumer-edge export CKPT --scores`")


@dataclass
class Windows:
    """A frame prepared for sliding windows: normalised at the size the windows cover, and their corners."""

    frame_hw: tuple[int, int]
    image: np.ndarray  # [3, H, W] normalised, at the (possibly scaled-up) size
    corners: list[tuple[int, int]]


@dataclass
class WindowOutputs:
    scores: np.ndarray  # [K, H, W] averaged class probabilities
    stage_map: np.ndarray | None  # [H, W] the latest encoder stage any window ran each pixel in
    stats: StageStats


@dataclass(frozen=True)
class SlidingWindows:
    """The frame at its own resolution (scaled up if smaller than a window), covered by windows of the model's
    input size; class scores averaged where windows overlap (a bundle exported with `--scores`)."""

    stride: float = DEFAULT_STRIDE
    batch: int = 1
    bgr: bool = False

    def prepare(self, frame: np.ndarray, info: ModelInfo, stream: Hashable = 0) -> Windows:
        rgb = to_rgb_uint8(frame, bgr=self.bgr)
        size = covering_size((rgb.shape[0], rgb.shape[1]), info.input_size)
        x, _ = preprocess(rgb, size, info.mean, info.std, letterbox=False)  # scale (if needed) and normalise once
        return Windows((rgb.shape[0], rgb.shape[1]), x, window_layout(size, info.input_size, self.stride))

    def infer(self, runner: StagedRunner, prepared: Windows, selector: TokenSelector,
              stage_map: bool) -> WindowOutputs:
        m = runner.bundle.model
        wh, ww = m.input_size
        x, corners = prepared.image, prepared.corners
        acc = ScoreAccumulator(m.num_classes, (x.shape[1], x.shape[2]))
        smap = np.zeros(x.shape[1:], np.uint8) if stage_map else None
        parts: list[StageStats] = []
        for i in range(0, len(corners), self.batch):
            group = corners[i : i + self.batch]
            out = runner.forward(np.stack([x[:, y : y + wh, c : c + ww] for y, c in group]), selector, stage_map)
            assert out.scores is not None  # the decoder declares them (`require_scores`)
            for j, (y, c) in enumerate(group):
                acc.add(out.scores[j], (y, c))
                if smap is not None and out.stage_map is not None:
                    up = cv2.resize(out.stage_map[j], (ww, wh), interpolation=cv2.INTER_NEAREST)
                    np.maximum(smap[y : y + wh, c : c + ww], up, out=smap[y : y + wh, c : c + ww])
            parts.append(out.stats)
        return WindowOutputs(acc.mean(), smap, combine_stats(parts))

    def finish(self, prepared: Windows, inferred: WindowOutputs) -> Tiled:
        scores = inferred.scores
        labels = scores.argmax(0).astype(np.uint8 if scores.shape[0] <= 256 else np.int32)
        placement = sliding_placement(prepared.frame_hw, (labels.shape[0], labels.shape[1]))
        return Tiled(labels_to_frame(labels, placement), inferred.stats, placement, scores, inferred.stage_map)


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
        if options.get("reuse"):
            raise UserError("temporal reuse works on whole frames, not sliding windows: leave out --sliding, or reuse "
                            "off (--no-reuse)")
        super().__init__(bundle, **options)
        require_scores(self.bundle)
        self.stride = check_stride(stride)
        self.batch = max(1, int(batch))
        self.tiler = SlidingWindows(self.stride, self.batch, self.bgr)

    def describe(self) -> str:
        return f"{super().describe()}, sliding windows at stride {self.stride:.2f}"
