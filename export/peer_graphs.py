"""Graphs of the peer methods, each a thin wrapper of the model's own code (`paumer_edge.model.merging`,
`.progressive`) like the staged graphs in `graphs.py`, so `paumer-edge compare` times them through the same
runtime on the same backend.

- early exit (DToP): no graph of its own here; the staged graphs with `head_scores` and the decoder with the
  exit inputs (`graphs.py`), in a variant of kind "early-exit";
- token merging (ToMe): `MergedFull`, image -> labels with `r` tokens merged per block (static shapes);
- progressive token length (PRO-SCALE): `CoarseFull`, image -> labels with the first blocks on a coarser grid,
  and `CoarseStage0`, stage 0 alone on that grid, so the pausing stages run on top of it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from paumer_edge import UserError
from paumer_edge.core.names import coarse_graph_name, merge_graph_name
from paumer_edge.model import PausingSegmenter
from paumer_edge.model.merging import max_merge, merged_encoder
from paumer_edge.model.progressive import check_coarse, coarse_stage0, coarse_tokens

from .graphs import Decoder, _stage_outputs

EARLY_EXIT = "dtop"  # the variant with the early-exit graphs
COARSE = "coarse"  # the variant whose stage 0 runs on the coarse grid


@dataclass(frozen=True)
class PeerOptions:
    """Which peer graphs an export adds (`paumer-edge compare` asks for all of them)."""

    early_exit: bool = False  # variant "dtop": stages that also emit head_logp, a decoder taking the exits
    merge: tuple[int, ...] = ()  # ToMe: one graph per r (tokens merged per block), "tome_r<r>"
    coarse: tuple[int, ...] = ()  # PRO-SCALE: one graph per number of blocks on the coarse grid, "proscale_b<k>"
    coarse_stage0: bool = False  # variant "coarse": stage 0 on the coarse grid, the pausing stages after it
    pool: int = 2  # PRO-SCALE's coarse grid: pool x pool patches per token

    @property
    def any(self) -> bool:
        return self.early_exit or bool(self.merge) or bool(self.coarse) or self.coarse_stage0

    def validate(self, model: PausingSegmenter) -> None:
        patches, depth = model.cfg.num_patches, model.cfg.depth
        top = max_merge(patches, depth)
        bad = [r for r in self.merge if not 0 < r <= top]
        if bad:
            raise UserError(f"ToMe r {bad}: merge between 1 and {top} tokens per block on this model "
                            f"({patches} patches, {depth} blocks)")
        if len(set(self.merge)) != len(self.merge) or len(set(self.coarse)) != len(self.coarse):
            raise UserError("peer graph settings repeat a value")
        for k in self.coarse:
            check_coarse(model, k, self.pool, model.cfg.grid)
        if self.coarse_stage0:
            check_coarse(model, model.cfg.stage_bounds[0][1], self.pool, model.cfg.grid)


def parse_peers(text: str | None) -> PeerOptions:
    """`--peers dtop,tome:16,tome:32,proscale:2,coarse` -> PeerOptions (one line for anything else)."""
    merge: list[int] = []
    coarse: list[int] = []
    flags = {"dtop": False, "coarse": False}
    for item in (t.strip().lower() for t in (text or "").split(",") if t.strip()):
        name, _, value = item.partition(":")
        if name in flags and not value:
            flags[name] = True
        elif name in ("tome", "proscale") and value.isdigit():
            (merge if name == "tome" else coarse).append(int(value))
        else:
            raise UserError(f"--peers: '{item}' is not a peer graph; give dtop, coarse, tome:R (tokens merged per "
                            "block) or proscale:K (blocks on the coarse grid), comma-separated")
    return PeerOptions(early_exit=flags["dtop"], merge=tuple(merge), coarse=tuple(coarse),
                       coarse_stage0=flags["coarse"])


class MergedFull(nn.Module):
    """image -> labels with ToMe: `r` tokens merged per block, unmerged before the decoder."""

    def __init__(self, model: PausingSegmenter, r: int, scores: bool = False):
        super().__init__()
        self.model, self.r = model, r
        self.decoder = Decoder(model, scores)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.decoder(merged_encoder(self.model, image, self.r))


class CoarseFull(nn.Module):
    """image -> labels with PRO-SCALE: the first `blocks` blocks on the coarse grid, the rest on every patch."""

    def __init__(self, model: PausingSegmenter, blocks: int, pool: int = 2, scores: bool = False):
        super().__init__()
        self.model, self.blocks, self.pool = model, blocks, pool
        self.decoder = Decoder(model, scores)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = coarse_tokens(self.model, image, self.blocks, self.pool)
        for blk in self.model.encoder.blocks[self.blocks :]:
            x = blk(x)
        return self.decoder(x)


class CoarseStage0(nn.Module):
    """image -> tokens, entropy like `Stage0`, with stage 0's blocks on the coarse grid."""

    def __init__(self, model: PausingSegmenter, pool: int = 2):
        super().__init__()
        self.model, self.pool = model, pool

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return _stage_outputs(coarse_stage0(self.model, image, self.pool))


def full_peer_modules(model: PausingSegmenter, peers: PeerOptions, scores: bool) -> list[tuple[str, nn.Module]]:
    """(graph name, module) of every image -> labels peer graph asked for."""
    out: list[tuple[str, nn.Module]] = [(merge_graph_name(r), MergedFull(model, r, scores)) for r in peers.merge]
    out += [(coarse_graph_name(k), CoarseFull(model, k, peers.pool, scores)) for k in peers.coarse]
    return out
