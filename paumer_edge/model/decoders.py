"""Segmenter's decoders with Segmenter's parameter names: linear (`head`) and mask transformer.

Both map patch tokens [B, N, C] on a (rows, cols) grid to class logits [B, K, rows, cols];
upsampling to the image happens in the segmenter.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .vit import Block

SEGMENTER_EPS = 1e-5  # Segmenter's decoder uses nn.LayerNorm's default


def _to_grid(x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    b, _, k = x.shape
    return x.transpose(1, 2).reshape(b, k, grid[0], grid[1])


class DecoderLinear(nn.Module):
    def __init__(self, embed_dim: int, num_classes: int):
        super().__init__()
        self.head = nn.Linear(embed_dim, num_classes)
        nn.init.trunc_normal_(self.head.weight, std=0.02)
        nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        return _to_grid(self.head(x), grid)


class MaskTransformer(nn.Module):
    """Class embeddings attend jointly with patch tokens; masks are patch/class cosine products."""

    def __init__(self, embed_dim: int, num_classes: int, d_model: int, depth: int, num_heads: int):
        super().__init__()
        self.num_classes = num_classes
        self.scale = d_model**-0.5
        self.proj_dec = nn.Linear(embed_dim, d_model)
        self.blocks = nn.ModuleList(Block(d_model, num_heads, 4.0, SEGMENTER_EPS) for _ in range(depth))
        self.cls_emb = nn.Parameter(torch.randn(1, num_classes, d_model) * 0.02)
        self.proj_patch = nn.Parameter(self.scale * torch.randn(d_model, d_model))
        self.proj_classes = nn.Parameter(self.scale * torch.randn(d_model, d_model))
        self.decoder_norm = nn.LayerNorm(d_model, eps=SEGMENTER_EPS)
        self.mask_norm = nn.LayerNorm(num_classes, eps=SEGMENTER_EPS)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        x = self.proj_dec(x)
        x = torch.cat([x, self.cls_emb.expand(x.shape[0], -1, -1)], dim=1)
        for blk in self.blocks:
            x = blk(x)
        x = self.decoder_norm(x)
        patches, classes = x[:, : -self.num_classes], x[:, -self.num_classes :]
        patches = F.normalize(patches @ self.proj_patch, dim=-1, eps=0.0)
        classes = F.normalize(classes @ self.proj_classes, dim=-1, eps=0.0)
        masks = self.mask_norm(patches @ classes.transpose(1, 2))
        return _to_grid(masks, grid)
