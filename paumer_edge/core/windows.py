"""Sliding-window layout: where windows of the model's input size sit over a larger frame (torch-free).

Segmenter's recipe (segm/model/utils.py): windows at a stride (2/3 of the window by default), the last
window of each row and column flush with the border; a frame smaller than the window in either side is
first scaled up (aspect ratio kept) until the window fits. The PyTorch evaluator
(`paumer_edge.sliding`) and the runtime (`paumer_edge.runtime.sliding`) both use this one layout.
"""

from __future__ import annotations

import math

from .knobs import check_stride as check_stride  # the stride's one rule (knobs.py), re-exported

DEFAULT_STRIDE = 2 / 3  # of the window, as Segmenter's 512-px stride for 768-px windows


def window_starts(length: int, window: int, step: int) -> list[int]:
    """Start offsets along one side: 0, step, 2*step, ... below length - window, then one flush with the end."""
    if window <= 0 or step <= 0:
        raise ValueError(f"window {window} and step {step} must be positive")
    if length <= window:
        return [0]
    return list(range(0, length - window, step)) + [length - window]


def stride_pixels(window_hw: tuple[int, int], stride: float) -> tuple[int, int]:
    """The stride in pixels (rows, cols) for a fraction of the window, at least one pixel."""
    s = check_stride(stride)
    return max(1, round(window_hw[0] * s)), max(1, round(window_hw[1] * s))


def window_layout(image_hw: tuple[int, int], window_hw: tuple[int, int], stride: float = DEFAULT_STRIDE
                  ) -> list[tuple[int, int]]:
    """Top-left corners (y, x) of every window over an image at least as large as the window, row-major."""
    (h, w), (wh, ww) = image_hw, window_hw
    if h < wh or w < ww:
        raise ValueError(f"image {h}x{w} is smaller than the window {wh}x{ww}; scale it up first")
    sy, sx = stride_pixels(window_hw, stride)
    return [(y, x) for y in window_starts(h, wh, sy) for x in window_starts(w, ww, sx)]


def covering_size(image_hw: tuple[int, int], window_hw: tuple[int, int]) -> tuple[int, int]:
    """The image's size, scaled up (aspect ratio kept) just enough for the window to fit; never scaled down."""
    h, w = image_hw
    scale = max(window_hw[0] / h, window_hw[1] / w, 1.0)
    if scale == 1.0:
        return h, w
    return max(window_hw[0], math.ceil(h * scale - 1e-6)), max(window_hw[1], math.ceil(w * scale - 1e-6))
