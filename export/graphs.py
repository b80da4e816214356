"""The deployment graphs of a PausingSegmenter: thin wrappers of the model's own stage definition.

Each wraps `PausingSegmenter.embed` / `stage(k, tokens, active)` / `decode` (the very code training runs),
fixing only what a graph's signature needs. Stage k > 0 takes the whole token buffer and the int64 patch
positions of the active tokens; `stage` gathers them, runs its blocks on `n` tokens (a dynamic dimension)
and scatters the results back. So gather and scatter run where the data lives, and the host only exchanges
entropies and indices. The last stage emits no entropy; the decoder applies the encoder's final norm,
decodes, upsamples to the image size and takes the arg-max.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from paumer_edge.model import PausingSegmenter
from paumer_edge.model.pause_head import normalised_entropy
from paumer_edge.model.segmenter import ContextOutput, StageOutput
from paumer_edge.model.vit import resize_pos_embed


class Stage0(nn.Module):
    """image [B,3,H,W] -> tokens [B,L,C], entropy [B,N] (every patch is active in stage 0).

    `head_scores`: also the pausing head's log-probabilities [B,N,K] (for early-exit policies, `core.exits`)."""

    def __init__(self, model: PausingSegmenter, head_scores: bool = False):
        super().__init__()
        self.model, self.head_scores = model, head_scores

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return _stage_outputs(self.model.stage(0, self.model.embed(image)), self.head_scores)


class StageK(nn.Module):
    """tokens [B,L,C], active [B,n] int64 -> tokens [B,L,C] (+ entropy [B,n] unless last)."""

    def __init__(self, model: PausingSegmenter, k: int, head_scores: bool = False):
        super().__init__()
        self.model, self.k, self.head_scores = model, k, head_scores

    def forward(self, tokens: torch.Tensor, active: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return _stage_outputs(self.model.stage(self.k, tokens, active), self.head_scores)


class Stage0Reuse(nn.Module):
    """Stage 0 for temporal reuse: image, tokens [B,L,C], active [B,n], context [B,m] int64, cache [B,2xblocks,heads,
    L,head_dim] -> tokens_out, entropy [B,n], cache_rows [B,2xblocks,heads,extra+n,head_dim]. Only the frame's active
    patches are embedded; they run attending to the cached keys/values of the context and are written into the
    previous buffer `tokens`; their fresh keys and values come out for the host to write into its cache."""

    def __init__(self, model: PausingSegmenter):
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor, tokens: torch.Tensor, active: torch.Tensor, context: torch.Tensor,
                cache: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return _reuse_outputs(self.model.stage_context(0, tokens, active, context, cache, image=image))


class StageKReuse(nn.Module):
    """Stage k > 0 for temporal reuse: tokens, active [B,n], context [B,m], cache -> tokens_out, (entropy,)
    cache_rows (as stage 0, without the image)."""

    def __init__(self, model: PausingSegmenter, k: int):
        super().__init__()
        self.model, self.k = model, k

    def forward(self, tokens: torch.Tensor, active: torch.Tensor, context: torch.Tensor,
                cache: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return _reuse_outputs(self.model.stage_context(self.k, tokens, active, context, cache))


def _reuse_outputs(out: ContextOutput) -> tuple[torch.Tensor, ...]:
    return (*_stage_outputs(StageOutput(out.tokens, out.logits)), out.cache_rows)


def _stage_outputs(out: StageOutput, head_scores: bool = False) -> tuple[torch.Tensor, ...]:
    """A stage graph's outputs: the token buffer, and the normalised entropy of its head unless it has none (and
    with `head_scores` the head's log-probabilities)."""
    if out.logits is None:
        return (out.tokens,)
    scores = (torch.log_softmax(out.logits.float(), dim=-1),) if head_scores else ()
    return (out.tokens, normalised_entropy(out.logits), *scores)


def random_positions(total: int, count: int, gen: torch.Generator, rows: int = 1) -> torch.Tensor:
    """[rows, count] int64 patch positions out of `total`, each row its own draw without repetition, ascending: the
    example `active` / `context` / `tiles` inputs an export traces with and verification checks on."""
    return torch.stack([torch.randperm(total, generator=gen)[:count].sort().values for _ in range(rows)])


def label_dtype(num_classes: int) -> torch.dtype:
    """The dtype of a graph's labels: uint8 when the classes fit."""
    return torch.uint8 if num_classes <= 256 else torch.int32


def to_labels(logits: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The arg-max over the classes (dim 1) as `dtype`; via float: TensorRT casts float -> uint8 but not
    int64 -> uint8."""
    return logits.argmax(1).to(torch.float32).to(dtype)


class Decoder(nn.Module):
    """tokens [B,L,C] -> labels [B,H,W] (uint8 when the classes fit) and optionally scores [B,K,H,W].

    Exported with the early-exit inputs too (exit_logp [B,N,K], exited [B,N]), the exited patches' head
    predictions replace the decoder's (`PausingSegmenter.decode`)."""

    def __init__(self, model: PausingSegmenter, scores: bool = False):
        super().__init__()
        self.model = model
        self.scores = scores
        self.label_dtype = label_dtype(model.cfg.num_classes)
        self.image_size = (int(model.cfg.image_size[0]), int(model.cfg.image_size[1]))

    def forward(self, tokens: torch.Tensor, exit_logp: torch.Tensor | None = None,
                exited: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        exits = None if exit_logp is None or exited is None else (exit_logp, exited)
        logits = self.model.decode(tokens, self.image_size, exits)
        labels = to_labels(logits, self.label_dtype)
        return (labels, F.softmax(logits, dim=1)) if self.scores else (labels,)


class DecoderTiles(nn.Module):
    """tokens [1,L,C], tiles [1,t] int64 -> label_tiles [1,t,p,p]: the decoder's labels on the pixel tiles of some
    patches only (`PausingSegmenter.decode_tiles`), what a temporal-reuse frame redraws around the patches it
    recomputed."""

    def __init__(self, model: PausingSegmenter):
        super().__init__()
        self.model = model
        self.label_dtype = label_dtype(model.cfg.num_classes)

    def forward(self, tokens: torch.Tensor, tiles: torch.Tensor) -> torch.Tensor:
        return to_labels(self.model.decode_tiles(tokens, tiles), self.label_dtype)


class Full(nn.Module):
    """image -> labels: the unsplit network at budget 1, the reference for parity and speed."""

    def __init__(self, model: PausingSegmenter, scores: bool = False):
        super().__init__()
        self.model = model
        self.decoder = Decoder(model, scores)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        tokens = self.model.embed(image)
        for k in range(self.model.cfg.num_stages):
            tokens = self.model.stage(k, tokens, head=False).tokens
        return self.decoder(tokens)


def at_image_size(model: PausingSegmenter, size: tuple[int, int]) -> PausingSegmenter:
    """A copy of `model` for a fixed input size: position embedding resized once, config updated,
    so the exported graphs hold no resizing of their own."""
    if tuple(size) == tuple(model.cfg.image_size):
        return model
    cfg = model.cfg.replace(image_size=tuple(size))
    copy = PausingSegmenter(cfg)
    state = dict(model.state_dict())
    enc = model.encoder
    state["encoder.pos_embed"] = resize_pos_embed(enc.pos_embed.data, enc.grid, cfg.grid, enc.num_extra_tokens,
                                                  enc.pos_embed_interp)
    copy.load_state_dict(state)
    return copy.eval()
