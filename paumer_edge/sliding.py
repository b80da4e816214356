"""Sliding-window inference in PyTorch, for images larger than the model's input (evaluation).

The same windows as the runtime (`paumer_edge.runtime.sliding`: one layout for both), Segmenter's
recipe otherwise: every window at the model's input size, class probabilities summed where windows
overlap and divided by the number of windows over each pixel, then resized back to the image when
it had to be scaled up. Probabilities rather than logits are averaged because they are what a
deployed bundle gives (`export --scores`), so evaluation and deployment agree.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .core.windows import DEFAULT_STRIDE, covering_size, window_layout
from .model import PausingSegmenter


@dataclass
class SlidingResult:
    probs: torch.Tensor  # [K, H, W] averaged class probabilities at the image's own size
    cost_fraction: float  # modelled encoder compute per window, mean over window batches
    counts: list[float]  # active patch tokens per stage, mean over window batches
    windows: int


@torch.no_grad()
def sliding_probs(model: PausingSegmenter, image: torch.Tensor, budget: float = 1.0,
                  threshold: float | None = None, stride: float = DEFAULT_STRIDE, batch: int = 8) -> SlidingResult:
    """Class probabilities for one normalised image [3, H, W] of any size, window by window.

    Windows run `batch` at a time; with a threshold, a batch keeps the token count the most
    uncertain of its windows needs (as every batch does), so batch 1 matches the runtime exactly.
    """
    window = (int(model.cfg.image_size[0]), int(model.cfg.image_size[1]))
    hw = (int(image.shape[-2]), int(image.shape[-1]))
    size = covering_size(hw, window)
    x = image[None] if size == hw else F.interpolate(image[None], size=size, mode="bilinear", align_corners=False)
    corners = window_layout(size, window, stride)
    k = model.cfg.num_classes
    total = torch.zeros(k, *size, dtype=torch.float32, device=image.device)
    count = torch.zeros(1, *size, dtype=torch.float32, device=image.device)
    costs: list[float] = []
    counts: list[tuple[int, ...]] = []
    wh, ww = window
    for i in range(0, len(corners), max(1, batch)):
        group = corners[i : i + max(1, batch)]
        crops = torch.cat([x[:, :, y : y + wh, c : c + ww] for y, c in group])
        out = model(crops, budget=budget, threshold=threshold)
        probs = out.logits.float().softmax(1)
        for j, (y, c) in enumerate(group):
            total[:, y : y + wh, c : c + ww] += probs[j]
            count[:, y : y + wh, c : c + ww] += 1.0
        costs.append(out.cost_fraction)
        counts.append(out.counts)
    mean = total / count
    if size != hw:
        mean = F.interpolate(mean[None], size=hw, mode="bilinear", align_corners=False)[0]
    n = len(costs)
    return SlidingResult(mean, sum(costs) / n, [sum(col) / n for col in zip(*counts)], len(corners))
