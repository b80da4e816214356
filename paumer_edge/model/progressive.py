"""Progressive token length (PRO-SCALE) in its closest form for a plain ViT, training-free.

PRO-SCALE (Aich et al., "Progressive Token Length Scaling in Transformer Encoders for Efficient Universal
Segmentation", ICLR 2025) speeds up Mask2Former's multi-scale encoder by letting its first layers see only the
coarsest scale's tokens and adding the finer scales' tokens in later layers: the token length grows through the
encoder. A plain ViT has one scale, so here the first `blocks` blocks run on a coarser token grid (each
`pool` x `pool` window of patch tokens averaged into one, the class token as it is), and then every patch
token comes back at full resolution as its own embedding plus what those blocks added to its window's coarse
token (nearest upsampling of the coarse residual update), for the remaining blocks and the decoder.

The network was trained on the full grid in every block, so this works only as far as its early blocks'
updates are smooth over a window; `paumer-edge compare` measures how far that is.

With `blocks` at the end of stage 0 it replaces the first stage graph alone (same inputs and outputs), so
pausing runs on top of it unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .. import UserError
from .segmenter import PausingSegmenter, StageOutput


def check_coarse(model: PausingSegmenter, blocks: int, pool: int, grid: tuple[int, int]) -> None:
    depth = len(model.encoder.blocks)
    if not 0 < blocks <= depth:
        raise UserError(f"coarse blocks {blocks} must be between 1 and the depth {depth}")
    if pool < 2 or grid[0] % pool or grid[1] % pool:
        raise UserError(f"a coarse grid pools {pool} x {pool} patches, which must divide the patch grid "
                        f"{grid[0]} x {grid[1]} (and be at least 2)")


def coarse_tokens(model: PausingSegmenter, images: torch.Tensor, blocks: int, pool: int = 2) -> torch.Tensor:
    """The token buffer [B, L, C] after the first `blocks` blocks ran on a `pool`-times coarser grid: every patch
    is its embedding plus its window's update."""
    grid = model.encoder.grid_for(images.shape[-2], images.shape[-1])
    check_coarse(model, blocks, pool, grid)
    x = model.embed(images)
    e = model.encoder.num_extra_tokens
    b, _, c = x.shape
    fine = x[:, e:].transpose(1, 2).reshape(b, c, *grid)
    coarse = F.avg_pool2d(fine, pool).flatten(2).transpose(1, 2)
    start = torch.cat([x[:, :e], coarse], dim=1)
    out = start
    for blk in model.encoder.blocks[:blocks]:
        out = blk(out)
    rows, cols = grid[0] // pool, grid[1] // pool
    update = (out[:, e:] - coarse).transpose(1, 2).reshape(b, c, rows, cols)
    update = update.repeat_interleave(pool, dim=2).repeat_interleave(pool, dim=3).flatten(2).transpose(1, 2)
    return torch.cat([out[:, :e], x[:, e:] + update], dim=1)


def coarse_stage0(model: PausingSegmenter, images: torch.Tensor, pool: int = 2) -> StageOutput:
    """Stage 0 on the coarse grid: what the `stage0` graph returns (the buffer and the pausing head's logits for
    every patch), so the later stages pause on it as usual."""
    end = model.cfg.stage_bounds[0][1]
    tokens = coarse_tokens(model, images, end, pool)
    head = model.pause_heads[0](tokens)[:, model.encoder.num_extra_tokens :] if len(model.pause_heads) else None
    return StageOutput(tokens, head)


def progressive_forward(model: PausingSegmenter, images: torch.Tensor, blocks: int, pool: int = 2) -> torch.Tensor:
    """Logits [B, K, H, W]: the first `blocks` blocks on the coarse grid, the rest (and the decoder) on every patch."""
    x = coarse_tokens(model, images, blocks, pool)
    for blk in model.encoder.blocks[blocks:]:
        x = blk(x)
    return model.decode(x, (images.shape[-2], images.shape[-1]))
