"""Any image size through a model that needs multiples of the patch size: pad, segment, crop.

The same steps as Segmenter's forward (zero-pad the normalised image at the bottom and right to the
next multiple of the patch size, segment, drop the padded rows and columns of the logits), so an
imported Segmenter model gives Segmenter's outputs on images of any size.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F

from .segmenter import PausingSegmenter, SegmenterOutput


def pad_to_patches(images: torch.Tensor, patch_size: int, fill: float = 0.0) -> torch.Tensor:
    """Pad [B, C, H, W] at the bottom and right so H and W are multiples of `patch_size`."""
    h, w = images.shape[-2], images.shape[-1]
    pad_h, pad_w = -h % patch_size, -w % patch_size
    if pad_h == 0 and pad_w == 0:
        return images
    return F.pad(images, (0, pad_w, 0, pad_h), value=fill)


def segment_any_size(model: PausingSegmenter, images: torch.Tensor, budget: float = 1.0,
                     threshold: float | None = None) -> SegmenterOutput:
    """`model(images, budget, threshold)` for normalised images of any size; logits at the input size.

    The stage map and token counts describe the padded patch grid the encoder saw.
    """
    h, w = images.shape[-2], images.shape[-1]
    out = model(pad_to_patches(images, model.cfg.patch_size), budget=budget, threshold=threshold)
    if out.logits.shape[-2:] == (h, w):
        return out
    return dataclasses.replace(out, logits=out.logits[..., :h, :w])
