"""mmsegmentation's VisionTransformer backbone (+ its Segmenter heads): `state_dict` with `backbone.*`.

mmseg's encoder layer is torch's nn.MultiheadAttention inside mmcv wrappers: `in_proj_weight` stacks
q, k and v exactly as timm's `qkv` does (and splits heads the same way), `out_proj` is `proj`, the FFN's
`layers.0.0` / `layers.1` are `fc1` / `fc2`, and `backbone.ln1` is the final norm (final_norm=True).
Decode heads that map: SegmenterMaskTransformerHead (its bias-free `patch_proj` / `classes_proj`
Linears become the transposed `proj_patch` / `proj_classes` matrices) and FCNHead with num_convs=0
(Segmenter's linear decoder: a 1x1 `conv_seg`). Other heads are left out and a new decoder starts.
Assumes with_cls_token=True (mmseg's default, and what its Segmenter configs use).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from .common import Converted, ImportOptions, SourceFacts

NAME = "mmseg"
_LAYER = {  # mmseg TransformerEncoderLayer -> paumer-edge Block (prefixes of the rest of the key)
    "ln1.": "norm1.",
    "attn.attn.in_proj_weight": "attn.qkv.weight",
    "attn.attn.in_proj_bias": "attn.qkv.bias",
    "attn.attn.out_proj.": "attn.proj.",
    "ln2.": "norm2.",
    "ffn.layers.0.0.": "mlp.fc1.",
    "ffn.layers.1.": "mlp.fc2.",
}
_BACKBONE = {"patch_embed.projection.": "patch_embed.proj.", "cls_token": "cls_token", "pos_embed": "pos_embed",
             "ln1.": "norm."}
_MASK_HEAD = {"dec_proj.": "proj_dec.", "cls_emb": "cls_emb", "decoder_norm.": "decoder_norm.",
              "mask_norm.": "mask_norm."}
_TRANSPOSED = {"patch_proj.weight": "proj_patch", "classes_proj.weight": "proj_classes"}
_VIT_NORM = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))  # mmseg's Segmenter configs: mean = std = 127.5
_IMAGENET_NORM = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))  # mmseg's usual 123.675 ... / 58.395 ...


def _backbone_prefix(state: dict[str, torch.Tensor]) -> str | None:
    for prefix in ("backbone.", ""):
        if f"{prefix}patch_embed.projection.weight" in state and f"{prefix}layers.0.ln1.weight" in state:
            return prefix
    return None


def matches(state: dict[str, torch.Tensor]) -> bool:
    return _backbone_prefix(state) is not None


def _rename(rest: str, table: dict[str, str]) -> str | None:
    for old, new in table.items():
        if rest == old or (old.endswith(".") and rest.startswith(old)):
            return new + rest[len(old):]
    return None


def _layer_key(rest: str) -> str:
    """'layers.3.ln1.weight' -> 'blocks.3.norm1.weight'; unknown parts keep their name (and are refused)."""
    _, idx, tail = rest.split(".", 2)
    return f"blocks.{idx}.{_rename(tail, _LAYER) or tail}"


def _head_kind(head: dict[str, torch.Tensor]) -> str | None:
    if "cls_emb" in head:
        return "mask_transformer"
    w = head.get("conv_seg.weight")
    if w is not None and w.dim() == 4 and w.shape[-2:] == (1, 1) and set(head) <= {"conv_seg.weight", "conv_seg.bias"}:
        return "linear"
    return None


def _meta_labels(rest: dict[str, Any], facts: SourceFacts) -> None:
    """Class names and palette from mmseg's checkpoint meta (0.x: CLASSES/PALETTE; 1.x: dataset_meta)."""
    meta = rest.get("meta")
    if not isinstance(meta, dict):
        return
    dataset_meta = meta.get("dataset_meta")
    inner: dict[str, Any] = dataset_meta if isinstance(dataset_meta, dict) else meta
    names = inner.get("classes", inner.get("CLASSES"))
    palette = inner.get("palette", inner.get("PALETTE"))
    if isinstance(names, (list, tuple)) and all(isinstance(n, str) for n in names):
        facts.class_names = tuple(n.strip() for n in names)
    if isinstance(palette, (list, tuple)) and all(isinstance(c, (list, tuple)) and len(c) == 3 for c in palette):
        facts.palette = tuple((int(c[0]), int(c[1]), int(c[2])) for c in palette)


def convert(state: dict[str, torch.Tensor], rest: dict[str, Any], src: Path, opts: ImportOptions) -> Converted:
    prefix = _backbone_prefix(state) or ""
    facts = SourceFacts(norm_eps=1e-6, pos_embed_interp="bicubic")
    weights: dict[str, torch.Tensor] = {}
    sources: dict[str, str] = {}
    ignored: list[tuple[str, str]] = [(k, "training state, not weights") for k in rest if k != "meta"]
    head = {k[len("decode_head."):]: v for k, v in state.items() if k.startswith("decode_head.")}
    kind = _head_kind(head)
    for key, value in state.items():
        if key.startswith("decode_head."):
            continue
        if key.startswith("auxiliary_head."):
            ignored.append((key, "auxiliary head (used only in training)"))
        elif key.startswith("data_preprocessor."):
            ignored.append((key, "mmseg's data pre-processor state"))
        elif key.startswith(prefix):
            rest_key = key[len(prefix):]
            ours = _layer_key(rest_key) if rest_key.startswith("layers.") else _rename(rest_key, _BACKBONE) or rest_key
            weights[f"encoder.{ours}"], sources[f"encoder.{ours}"] = value, key
        else:
            ignored.append((key, "not part of the backbone or a decode head"))

    if kind == "mask_transformer":
        for rest_key, value in head.items():
            src_key = f"decode_head.{rest_key}"
            if rest_key in _TRANSPOSED:  # Linear(x) = x @ W.T; Segmenter's matrices are used as x @ P
                ours = _TRANSPOSED[rest_key]
                value = value.t().contiguous()
            elif rest_key.startswith("conv_seg."):
                ignored.append((src_key, "unused by SegmenterMaskTransformerHead"))
                continue
            elif rest_key.startswith("layers."):
                ours = _layer_key(rest_key)
            else:
                ours = _rename(rest_key, _MASK_HEAD) or rest_key
            weights[f"decoder.{ours}"], sources[f"decoder.{ours}"] = value, src_key
        facts.decoder_heads = None  # not stored; default: width // 64 as in mmseg's Segmenter configs
    elif kind == "linear":
        weights["decoder.head.weight"] = head["conv_seg.weight"][:, :, 0, 0].contiguous()
        sources["decoder.head.weight"] = "decode_head.conv_seg.weight"
        if "conv_seg.bias" in head:
            weights["decoder.head.bias"] = head["conv_seg.bias"]
            sources["decoder.head.bias"] = "decode_head.conv_seg.bias"
    else:
        ignored += [(f"decode_head.{k}", "a decode head other than Segmenter's mask transformer or linear "
                     "(FCNHead, num_convs=0): a new decoder starts") for k in head]

    _meta_labels(rest, facts)
    if kind:
        facts.mean, facts.std = _VIT_NORM
        facts.normalization_from = "mean = std = 127.5 (mmseg's Segmenter configs; assumed)"
    else:
        facts.mean, facts.std = _IMAGENET_NORM
        facts.normalization_from = "ImageNet mean/std (mmseg's usual; assumed)"
    facts.notes.append("LayerNorm eps 1e-6 in the encoder (mmseg's ViT configs); pass --norm-eps if it used another")
    fresh = [] if "encoder.norm.weight" in weights else [("encoder.norm.", "the source has no final norm "
                                                           "(final_norm=False)")]
    return Converted(NAME, weights, sources, ignored, facts, kind, fresh)
