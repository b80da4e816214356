"""Losses of pausing-aware training: the segmentation loss and the pausing heads' soft targets."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..data.classes import IGNORE_INDEX
from ..model import AuxPrediction


def patch_targets(labels: torch.Tensor, patch: int, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per patch: the class distribution of its pixels [B, N, K] and the fraction of labelled pixels [B, N].

    Soft targets teach the heads to be unsure exactly where a patch mixes classes (edges, thin
    things): the tokens that most need the later blocks.
    """
    b, h, w = labels.shape
    valid = labels != IGNORE_INDEX
    onehot = F.one_hot(torch.where(valid, labels, 0), num_classes).float() * valid.unsqueeze(-1)
    counts = F.avg_pool2d(onehot.permute(0, 3, 1, 2), patch, patch)  # [B, K, rows, cols]
    counts = counts.flatten(2).transpose(1, 2)
    mass = counts.sum(-1)
    return counts / mass.clamp_min(1e-6).unsqueeze(-1), mass


def prediction_targets(logits: torch.Tensor, patch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per patch: the network's own mean class probabilities [B, N, K], every patch at full weight [B, N].

    Retrofitting teaches new pausing heads what the frozen network will finally say, so a head's
    entropy is high where the final prediction is unsure or mixed: where pausing would change it.
    """
    probs = logits.detach().float().softmax(1)
    pooled = F.avg_pool2d(probs, patch, patch).flatten(2).transpose(1, 2)
    return pooled, torch.ones(pooled.shape[:2], dtype=pooled.dtype, device=pooled.device)


def aux_loss(aux: list[AuxPrediction], targets: torch.Tensor, mass: torch.Tensor) -> torch.Tensor:
    """Mean soft cross-entropy of every pausing head on the tokens active at its point."""
    losses = []
    for pred in aux:
        idx = pred.positions
        tgt = targets.gather(1, idx.unsqueeze(-1).expand(-1, -1, targets.shape[-1]))
        weight = mass.gather(1, idx)
        ce = -(tgt * torch.log_softmax(pred.logits.float(), -1)).sum(-1)
        losses.append((ce * weight).sum() / weight.sum().clamp_min(1e-6))
    return torch.stack(losses).mean() if losses else targets.new_zeros(())


def segmentation_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits, labels, ignore_index=IGNORE_INDEX)
