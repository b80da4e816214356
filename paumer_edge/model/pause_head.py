"""Auxiliary pausing heads and the normalised entropy that decides which tokens pause."""

from __future__ import annotations

import math

import torch
from torch import nn


class PauseHead(nn.Module):
    """LayerNorm + Linear to the classes: an intermediate per-token class prediction."""

    def __init__(self, embed_dim: int, num_classes: int, eps: float):
        super().__init__()
        self.norm = nn.LayerNorm(embed_dim, eps=eps)
        self.head = nn.Linear(embed_dim, num_classes)
        nn.init.trunc_normal_(self.head.weight, std=0.02)
        nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.norm(x))


def normalised_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of softmax(logits) over the last axis divided by log(K): 0 = certain, 1 = uniform."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    return -(logp.exp() * logp).sum(-1) / math.log(logits.shape[-1])
