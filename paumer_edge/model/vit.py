"""A plain ViT encoder with timm / Segmenter parameter names, so real checkpoints load by key.

Kept readable top to bottom like timm's `vision_transformer.py`; the blocks take any token count,
which is what lets later stages run on the active tokens only.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

Cache = tuple[torch.Tensor, torch.Tensor]  # one block's (keys, values) of some rows, each [B, heads, rows, head_dim]


class PatchEmbed(nn.Module):
    """Non-overlapping patches -> tokens: a strided convolution, flattened to [B, N, C]."""

    def __init__(self, patch_size: int, in_chans: int, embed_dim: int):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    """Multi-head self-attention.

    `fused` (timm's `fused_attn`): PyTorch's scaled_dot_product_attention, the fast kernel in eager mode.
    Off, the same sums are written out, which is what export wants: the ONNX exporter decomposes the
    fused op into shape arithmetic that runs on every call when the token count is dynamic, and
    ONNX Runtime and TensorRT fuse the written-out form themselves.
    """

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.fused = True
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        # [B, N, 3*heads, head_dim] -> [B, 3*heads, N, head_dim], split into q, k, v of [B, heads, N, head_dim]
        q, k, v = self.qkv(x).reshape(b, n, 3 * self.num_heads, self.head_dim).transpose(1, 2).chunk(3, dim=1)
        if self.fused:
            x = F.scaled_dot_product_attention(q, k, v)
        else:
            x = ((q * self.scale) @ k.transpose(-2, -1)).softmax(dim=-1) @ v
        return self.proj(x.transpose(1, 2).reshape(b, n, c))

    def forward_context(self, x: torch.Tensor, batch: int, keys: torch.Tensor,
                        values: torch.Tensor) -> tuple[torch.Tensor, Cache]:
        """Attention of some rows of a token buffer over their own fresh keys and values and cached ones of other
        rows (temporal reuse).

        `x` [B * n, C]: the rows that run (normed), image by image: rows stay flat so the linear layers are single
        matrix products with their bias; `keys` / `values` [B, heads, m, head_dim]: the cached keys and values of
        the context rows, from each row's last computation (m may be 0). Returns the attention output for x
        [B * n, C] and x's own (keys, values) [B, heads, n, head_dim], which the caller writes into its cache.
        """
        c = x.shape[-1]
        q, k, v = self.qkv(x).reshape(batch, -1, 3 * self.num_heads, self.head_dim).transpose(1, 2).chunk(3, dim=1)
        kh, vh = torch.cat([keys, k], dim=2), torch.cat([values, v], dim=2)
        if self.fused:
            x = F.scaled_dot_product_attention(q, kh, vh)
        else:
            x = ((q * self.scale) @ kh.transpose(-2, -1)).softmax(dim=-1) @ vh
        return self.proj(x.transpose(1, 2).reshape(-1, c)), (k, v)


class Gelu(nn.GELU):
    """GELU (erf). `fused` off, it is written out as x * 0.5 * (1 + erf(x / sqrt 2)) in the order ONNX Runtime's
    Gelu fusion recognises: the exporter's own decomposition multiplies in another order, which stays five
    element-wise passes over the MLP's widest tensor, and five kernel calls per block (a tenth of a stage's time
    on a frame that recomputes a few patches)."""

    fused = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fused:
            return super().forward(x)
        return (x * 0.5) * (1.0 + torch.erf(x / math.sqrt(2.0)))


@contextmanager
def written_out(model: nn.Module) -> Iterator[None]:
    """Within the block, every Attention and Gelu of `model` uses its written-out form (for export)."""
    layers = [m for m in model.modules() if isinstance(m, (Attention, Gelu))]
    before = [m.fused for m in layers]
    for m in layers:
        m.fused = False
    try:
        yield
    finally:
        for m, fused in zip(layers, before):
            m.fused = fused


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = Gelu()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, eps: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))

    def forward_context(self, x: torch.Tensor, batch: int, keys: torch.Tensor,
                        values: torch.Tensor) -> tuple[torch.Tensor, Cache]:
        """The block on some rows of the buffer [B * n, C], also attending to cached keys and values of others
        (`Attention.forward_context`); returns the rows and their fresh (keys, values)."""
        h, fresh = self.attn.forward_context(self.norm1(x), batch, keys, values)
        x = x + h
        return x + self.mlp(self.norm2(x)), fresh


def resize_pos_embed(pos_embed: torch.Tensor, old_grid: tuple[int, int], new_grid: tuple[int, int],
                     extra_tokens: int, mode: str = "bicubic") -> torch.Tensor:
    """Resize the patch part of a position embedding: bicubic as timm and mmseg do, or bilinear as
    Segmenter does."""
    if tuple(old_grid) == tuple(new_grid):
        return pos_embed
    extra, grid = pos_embed[:, :extra_tokens], pos_embed[:, extra_tokens:]
    c = grid.shape[-1]
    grid = grid.reshape(1, old_grid[0], old_grid[1], c).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=new_grid, mode=mode, align_corners=False)
    grid = grid.permute(0, 2, 3, 1).reshape(1, new_grid[0] * new_grid[1], c)
    return torch.cat([extra, grid], dim=1)


class VisionTransformer(nn.Module):
    """ViT encoder: `patch_embed.proj`, `cls_token`, `pos_embed`, `blocks.N.*`, `norm` as in timm.

    `distilled` adds DeiT's `dist_token` after the class token; `pos_embed_interp` is how the position
    embedding follows another input size (the source model's way, for imported weights).
    """

    def __init__(self, image_size: tuple[int, int], patch_size: int, embed_dim: int, depth: int,
                 num_heads: int, mlp_ratio: float, class_token: bool, eps: float, in_chans: int = 3,
                 distilled: bool = False, pos_embed_interp: str = "bicubic"):
        super().__init__()
        self.patch_size = patch_size
        self.grid = (image_size[0] // patch_size, image_size[1] // patch_size)
        self.num_extra_tokens = int(class_token) + int(distilled)
        self.pos_embed_interp = pos_embed_interp
        self.patch_embed = PatchEmbed(patch_size, in_chans, embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim)) if class_token else None
        self.dist_token = nn.Parameter(torch.zeros(1, 1, embed_dim)) if distilled else None
        num_pos = self.grid[0] * self.grid[1] + self.num_extra_tokens
        self.pos_embed = nn.Parameter(torch.zeros(1, num_pos, embed_dim))
        self.blocks = nn.ModuleList(Block(embed_dim, num_heads, mlp_ratio, eps) for _ in range(depth))
        self.norm = nn.LayerNorm(embed_dim, eps=eps)
        self.init_weights()

    def init_weights(self) -> None:
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        for token in (self.cls_token, self.dist_token):
            if token is not None:
                nn.init.trunc_normal_(token, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        w = self.patch_embed.proj.weight
        nn.init.uniform_(w, -1 / math.sqrt(w[0].numel()), 1 / math.sqrt(w[0].numel()))

    def grid_for(self, height: int, width: int) -> tuple[int, int]:
        return height // self.patch_size, width // self.patch_size

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """Images [B,3,H,W] -> tokens [B, extra + N, C] with position embedding added."""
        x, pos = self._with_extra(self.patch_embed(images), images)
        return x + pos

    def embed_rows(self, images: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """Rows `rows` [B, n] (buffer rows: extra tokens first, as `token_rows` gives them) of `embed(images)`, flat
        [B * n, C], computing only those patches' embeddings: the patch projection as one matrix product over the
        gathered pixels (temporal reuse embeds the few patches that changed, not the frame)."""
        b, chans, h, w = images.shape
        p, e = self.patch_size, self.num_extra_tokens
        rows_h, cols_w = self.grid_for(h, w)
        pixels = images[:, :, : rows_h * p, : cols_w * p].reshape(b, chans, rows_h, p, cols_w, p)
        pixels = pixels.permute(0, 2, 4, 1, 3, 5).reshape(b * rows_h * cols_w, chans * p * p)
        patches = rows[:, e:] - e + torch.arange(b, device=rows.device).unsqueeze(1) * (rows_h * cols_w)
        weight = self.patch_embed.proj.weight.reshape(self.patch_embed.proj.out_channels, -1)
        x = F.linear(pixels.index_select(0, patches.reshape(-1)), weight, self.patch_embed.proj.bias)
        c = x.shape[-1]
        x, pos = self._with_extra(x.reshape(b, -1, c), images)
        return x.reshape(-1, c) + pos.reshape(-1, c).index_select(0, rows.reshape(-1))

    def _with_extra(self, patches: torch.Tensor, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Patch embeddings [B, n, C] with the extra tokens (class, distillation) put first, and the position
        embedding [1, extra + N, C] at the images' grid (the one rule `embed` and `embed_rows` share)."""
        grid = self.grid_for(images.shape[-2], images.shape[-1])
        pos = resize_pos_embed(self.pos_embed, self.grid, grid, self.num_extra_tokens, self.pos_embed_interp)
        extra = [t.expand(patches.shape[0], -1, -1) for t in (self.cls_token, self.dist_token) if t is not None]
        return (torch.cat([*extra, patches], dim=1) if extra else patches), pos

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """The unpaused encoder: every block on every token, then the final norm."""
        x = self.embed(images)
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x)
