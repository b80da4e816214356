"""The exportable pieces of a PausingSegmenter, one nn.Module per deployment graph.

Stage k > 0 takes the whole token buffer and the int64 patch positions of the active tokens, gathers
them, runs its blocks on `n` tokens (a dynamic dimension), scatters the results back, and scores the
active tokens with its pausing head. So gather and scatter run where the data lives, and the host
only exchanges entropies and indices. The last stage emits no entropy; the decoder applies the
encoder's final norm, decodes, upsamples to the image size and takes the arg-max.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from paumer_edge.model import PausingSegmenter
from paumer_edge.model.pause_head import normalised_entropy
from paumer_edge.model.vit import resize_pos_embed


class Stage0(nn.Module):
    """image [B,3,H,W] -> tokens [B,L,C], entropy [B,N] (every patch is active in stage 0)."""

    def __init__(self, model: PausingSegmenter):
        super().__init__()
        self.model = model
        start, end = model.cfg.stage_bounds[0]
        self.blocks = model.encoder.blocks[start:end]
        self.head = model.pause_heads[0] if model.cfg.pause_after else None

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = self.model.encoder.embed(image)
        for blk in self.blocks:
            x = blk(x)
        if self.head is None:
            return (x,)
        # the head scores every row and the (small) entropies are sliced, not the (large) tokens
        return x, normalised_entropy(self.head(x))[:, self.model.encoder.num_extra_tokens :]


class StageK(nn.Module):
    """tokens [B,L,C], active [B,n] int64 -> tokens [B,L,C] (+ entropy [B,n] unless last)."""

    def __init__(self, model: PausingSegmenter, k: int):
        super().__init__()
        self.extra = model.encoder.num_extra_tokens
        start, end = model.cfg.stage_bounds[k]
        self.blocks = model.encoder.blocks[start:end]
        self.head = model.pause_heads[k] if k < len(model.cfg.pause_after) else None

    def forward(self, tokens: torch.Tensor, active: torch.Tensor) -> tuple[torch.Tensor, ...]:
        e = self.extra
        b, length, c = tokens.shape
        # Rows of the buffer this stage runs on: the extra tokens (always active), then the active patches.
        # Built as indices, so the tokens move once each way: Gather and ScatterND of whole rows on
        # [B*L, C] (no split, slice or concat of the token buffer; GatherElements / ScatterElements would
        # index every element).
        if e:
            extra = torch.arange(e, device=active.device).unsqueeze(0).expand(b, e)
            idx = torch.cat([extra, active + e], dim=1)
        else:
            idx = active
        flat = (idx + torch.arange(b, device=active.device).unsqueeze(1) * length).reshape(-1)
        rows = tokens.reshape(b * length, c)
        x = rows.index_select(0, flat).reshape(b, -1, c)
        for blk in self.blocks:
            x = blk(x)
        out = rows.index_put((flat,), x.reshape(-1, c)).reshape(b, length, c)
        if self.head is None:
            return (out,)
        return out, normalised_entropy(self.head(x))[:, e:]


class Decoder(nn.Module):
    """tokens [B,L,C] -> labels [B,H,W] (uint8 when the classes fit) and optionally scores [B,K,H,W]."""

    def __init__(self, model: PausingSegmenter, scores: bool = False):
        super().__init__()
        self.model = model
        self.scores = scores
        self.label_dtype = torch.uint8 if model.cfg.num_classes <= 256 else torch.int32
        self.image_size = (int(model.cfg.image_size[0]), int(model.cfg.image_size[1]))

    def forward(self, tokens: torch.Tensor) -> tuple[torch.Tensor, ...]:
        logits = self.model.decode(self.model.encoder.norm(tokens), self.image_size)
        # via float: TensorRT casts float -> uint8 but not int64 -> uint8
        labels = logits.argmax(1).to(torch.float32).to(self.label_dtype)
        return (labels, F.softmax(logits, dim=1)) if self.scores else (labels,)


class Full(nn.Module):
    """image -> labels: the unsplit network at budget 1, the reference for parity and speed."""

    def __init__(self, model: PausingSegmenter, scores: bool = False):
        super().__init__()
        self.model = model
        self.decoder = Decoder(model, scores)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = self.model.encoder.embed(image)
        for blk in self.model.encoder.blocks:
            x = blk(x)
        return self.decoder(x)


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
