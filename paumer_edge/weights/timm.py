"""timm's VisionTransformer (and DeiT): an encoder-only state dict; decoder and pausing heads are new.

paumer-edge's encoder uses timm's key names, so `blocks.N.attn.qkv.weight` becomes
`encoder.blocks.N.attn.qkv.weight`. The classifier is dropped. A checkpoint without qkv bias gets zero
biases, and one whose position embedding leaves out the class token (timm's `no_embed_class`) gets a
zero position for it: both give exactly timm's forward. Parts timm has and this ViT has not (layer
scale, register tokens, q/k norms, a pre-norm) are refused when loading, never dropped silently.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from .common import Converted, ImportOptions, SourceFacts

NAME = "timm"
_IGNORED = {
    "head.": "ImageNet classifier (segmentation uses its own decoder)",
    "head_dist.": "DeiT distillation classifier (segmentation uses its own decoder)",
    "fc_norm.": "norm of the pooled classifier features (segmentation does not pool)",
}


def matches(state: dict[str, torch.Tensor]) -> bool:
    return "patch_embed.proj.weight" in state and any(k.startswith("blocks.") for k in state)


def _positions_without_extra(pos: torch.Tensor, extra: int, opts: ImportOptions, patch: int) -> bool:
    """True when the position embedding has no entries for the class/distillation tokens."""
    if extra == 0:
        return False
    n = pos.shape[1]
    if opts.source_size:
        return n == (opts.source_size[0] // patch) * (opts.source_size[1] // patch)
    return math.isqrt(n) ** 2 == n and math.isqrt(n - extra) ** 2 != n - extra


def convert(state: dict[str, torch.Tensor], rest: dict[str, Any], src: Path, opts: ImportOptions) -> Converted:
    facts = SourceFacts(norm_eps=1e-6, pos_embed_interp="bicubic")
    weights: dict[str, torch.Tensor] = {}
    sources: dict[str, str] = {}
    ignored: list[tuple[str, str]] = [(k, "training state, not weights") for k in rest]
    for key, value in state.items():
        why = next((w for prefix, w in _IGNORED.items() if key.startswith(prefix)), None)
        if why:
            ignored.append((key, why))
        else:  # anything this ViT has no place for is refused when loading
            weights[f"encoder.{key}"], sources[f"encoder.{key}"] = value, key

    filled: dict[str, str] = {}
    extra = int("cls_token" in state) + int("dist_token" in state)
    pos = state.get("pos_embed")
    patch = state["patch_embed.proj.weight"].shape[-1]
    if pos is not None and pos.dim() == 3 and _positions_without_extra(pos, extra, opts, patch):
        zeros = torch.zeros(1, extra, pos.shape[-1], dtype=pos.dtype)
        weights["encoder.pos_embed"] = torch.cat([zeros, pos], dim=1)
        facts.notes.append("the position embedding has no entry for the class token (timm no_embed_class): "
                           "a zero one is added, which changes nothing")
    for i in sorted({int(k.split(".")[1]) for k in state if k.startswith("blocks.") and k.split(".")[1].isdigit()}):
        qkv = state.get(f"blocks.{i}.attn.qkv.weight")
        if qkv is not None and f"blocks.{i}.attn.qkv.bias" not in state:
            weights[f"encoder.blocks.{i}.attn.qkv.bias"] = torch.zeros(qkv.shape[0], dtype=qkv.dtype)
            filled[f"encoder.blocks.{i}.attn.qkv.bias"] = "zeros: the source has no qkv bias"
    fresh = [] if "norm.weight" in state else [("encoder.norm.", "the source has no final norm")]
    facts.notes.append("LayerNorm eps 1e-6 (timm's ViT); pass --norm-eps if the source used another")
    return Converted(NAME, weights, sources, ignored, facts, None, fresh, filled)
