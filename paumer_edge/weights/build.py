"""Converted weights -> a PausingSegmenter: the shape read off the tensors, the rest filled in and reported.

Width, depth, patch size, MLP size, class/distillation tokens, patch grid, decoder and class count all
come from the tensors (the file's own config, where there is one, only confirms them); what tensors
cannot say (attention heads, LayerNorm eps, input normalisation) comes from the format, the user or a
stated default. Every encoder weight must be found: a missing or mis-shaped one is an error, never a
silent re-initialisation. Pausing heads are always new; the decoder is new when there is none to map.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import torch

from .. import UserError
from ..config import DECODERS, ModelConfig
from ..model import PausingSegmenter
from ..model.vit import resize_pos_embed
from .common import Converted, ImportOptions, ImportReport
from .labels import resolve_labels

NORMALIZATION = {
    "vit": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    "deit": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}


def default_pause_points(depth: int) -> tuple[int, ...]:
    """After a quarter, half and three quarters of the blocks, as the presets do (3, 6, 9 of 12)."""
    return tuple(sorted({depth * k // 4 for k in (1, 2, 3)} - {0, depth}))


def _need(w: dict[str, torch.Tensor], key: str, conv: Converted, dims: int) -> torch.Tensor:
    t = w.get(key)
    if t is None:
        raise UserError(f"the {conv.format} checkpoint has no {key.split('.', 1)[1]} weights "
                        f"({key}); it is not a complete ViT")
    if t.dim() != dims:
        raise UserError(f"inconsistent shapes: {conv.source_keys.get(key, key)} has shape {list(t.shape)}, "
                        f"expected {dims} dimensions")
    return t


def _count(w: dict[str, torch.Tensor], prefix: str) -> int:
    """Number of blocks under `prefix` (e.g. 'encoder.blocks.'); they must be numbered 0..n-1."""
    found = {int(m.group(1)) for k in w if (m := re.match(re.escape(prefix) + r"(\d+)\.", k))}
    if found and found != set(range(len(found))):
        missing = sorted(set(range(max(found) + 1)) - found)
        raise UserError(f"the checkpoint's blocks under '{prefix}' skip numbers {missing[:5]}; it is incomplete")
    return len(found)


def _heads(width: int, asked: int | None, known: int | None, what: str, notes: list[str]) -> int:
    heads = asked or known
    if heads is None:
        if width % 64 or width < 64:
            option = "--decoder-heads" if what == "decoder" else "--num-heads"
            raise UserError(f"the weights do not say how many attention heads the {what} has and its width "
                            f"{width} is not a multiple of 64; give {option}")
        heads = width // 64
        notes.append(f"{what} attention heads: {heads} (width // 64, the usual choice; the weights cannot tell)")
    if width % heads:
        raise UserError(f"{what} width {width} is not divisible by {heads} attention heads")
    return heads


def _mlp_ratio(width: int, hidden: int) -> float:
    """A ratio r with int(width * r) == hidden exactly, as the Block computes its hidden size."""
    ratio = hidden / width
    return ratio if int(width * ratio) == hidden else (hidden + 0.5) / width


def _source_grid(n: int, patch: int, conv: Converted, opts: ImportOptions) -> tuple[int, int]:
    size = conv.facts.image_size or opts.source_size
    if size:
        grid = (size[0] // patch, size[1] // patch)
        if grid[0] * grid[1] != n:
            said = "the checkpoint's config" if conv.facts.image_size else "--source-size"
            raise UserError(f"inconsistent shapes: the position embedding has {n} patch positions but {said} "
                            f"gives a {size[0]}x{size[1]} image, a {grid[0]}x{grid[1]} grid of {patch}-pixel patches")
        return grid
    side = math.isqrt(n)
    if side * side != n:
        raise UserError(f"the position embedding has {n} patch positions, not a square grid; give the size the "
                        "source was trained at with --source-size HxW")
    return side, side


@dataclass(frozen=True)
class DecoderShape:
    """The decoder fields of a ModelConfig."""

    kind: str
    classes: int
    depth: int = 2
    dim: int = 0  # 0: the encoder's width
    heads: int = 0  # 0: the encoder's heads


def _decoder_shape(w: dict[str, torch.Tensor], kind: str, conv: Converted, opts: ImportOptions,
                   width: int, notes: list[str]) -> DecoderShape:
    """The shape of the checkpoint's decoder."""
    if kind == "linear":
        return DecoderShape(kind, _need(w, "decoder.head.weight", conv, 2).shape[0])
    cls_emb = _need(w, "decoder.cls_emb", conv, 3)
    dim = _need(w, "decoder.proj_dec.weight", conv, 2).shape[0]
    depth = _count(w, "decoder.blocks.")
    if depth == 0:
        raise UserError("the checkpoint's mask transformer has no blocks (decoder.blocks.N.*)")
    heads = _heads(dim, opts.decoder_heads, conv.facts.decoder_heads, "decoder", notes)
    return DecoderShape(kind, cls_emb.shape[1], depth, dim if dim != width else 0, heads)


def _decoder(conv: Converted, opts: ImportOptions, width: int, notes: list[str]) -> DecoderShape:
    """The decoder to build; drops the checkpoint's decoder when a new one is asked for."""
    if opts.decoder and opts.decoder not in DECODERS:
        raise UserError(f"--decoder '{opts.decoder}' is not one of {', '.join(DECODERS)}")
    if conv.decoder and not opts.fresh_decoder:
        shape = _decoder_shape(conv.weights, conv.decoder, conv, opts, width, notes)
        classes = shape.classes
        if conv.facts.num_classes is not None and conv.facts.num_classes != classes:
            raise UserError(f"inconsistent shapes: the checkpoint's config says {conv.facts.num_classes} classes "
                            f"but its decoder has {classes}")
        if opts.num_classes is not None and opts.num_classes != classes:
            raise UserError(f"--num-classes {opts.num_classes} disagrees with the checkpoint's decoder ({classes} "
                            "classes); leave it out, or add --fresh-decoder to start a new decoder")
        if opts.decoder and opts.decoder != conv.decoder:
            raise UserError(f"the checkpoint's decoder is {conv.decoder}; --decoder {opts.decoder} needs "
                            "--fresh-decoder")
        return shape
    # a new decoder: drop any in the checkpoint (its class count is the default for the new one)
    old = conv.weights.get("decoder.head.weight", conv.weights.get("decoder.cls_emb"))
    old_classes = None if old is None else old.shape[-2 if old.dim() == 3 else 0]
    for key in [k for k in conv.weights if k.startswith("decoder.")]:
        conv.ignored.append((conv.source_keys.pop(key), "replaced by a new decoder (--fresh-decoder)"))
        del conv.weights[key]
    new_classes = opts.num_classes or old_classes
    if not new_classes:
        raise UserError(f"the {conv.format} checkpoint has no segmentation decoder to import; give --num-classes K "
                        "(and --classes) for a new one")
    kind = opts.decoder or conv.decoder or "linear"
    if kind == "linear":
        return DecoderShape(kind, new_classes)
    heads = _heads(width, opts.decoder_heads, None, "decoder", notes)
    return DecoderShape(kind, new_classes, opts.decoder_depth, 0, heads)


Normalisation = tuple[tuple[float, float, float], tuple[float, float, float]]


def _normalisation(conv: Converted, opts: ImportOptions, notes: list[str]) -> Normalisation:
    if opts.normalization:
        if opts.normalization not in NORMALIZATION:
            raise UserError(f"--normalization '{opts.normalization}' is not one of {', '.join(NORMALIZATION)}")
        mean, std = NORMALIZATION[opts.normalization]
    elif conv.facts.mean and conv.facts.std:
        mean, std = conv.facts.mean, conv.facts.std
        notes.append(f"input normalisation: {conv.facts.normalization_from}")
    else:
        mean, std = NORMALIZATION["imagenet"]
        notes.append("input normalisation: ImageNet mean/std (assumed; --normalization vit|deit|imagenet, or "
                     "--mean/--std, to change)")
    return opts.mean or mean, opts.std or std


def infer_config(conv: Converted, opts: ImportOptions, notes: list[str]) -> tuple[ModelConfig, tuple[int, int]]:
    """The ModelConfig the converted weights describe, and the patch grid they were trained on."""
    w = conv.weights
    proj = _need(w, "encoder.patch_embed.proj.weight", conv, 4)
    width, in_chans, ph, pw = proj.shape
    if ph != pw or in_chans != 3:
        raise UserError(f"patch embedding {list(proj.shape)} is not square patches of RGB images")
    depth = _count(w, "encoder.blocks.")
    if depth == 0:
        raise UserError(f"the {conv.format} checkpoint has no transformer blocks")
    hidden = _need(w, "encoder.blocks.0.mlp.fc1.weight", conv, 2).shape[0]
    heads = _heads(width, opts.num_heads, conv.facts.num_heads, "encoder", notes)
    class_token, distilled = "encoder.cls_token" in w, "encoder.dist_token" in w
    extra = int(class_token) + int(distilled)
    pos = _need(w, "encoder.pos_embed", conv, 3)
    if pos.shape[1] <= extra:
        raise UserError(f"inconsistent shapes: the position embedding {list(pos.shape)} has no patch positions")
    grid = _source_grid(pos.shape[1] - extra, ph, conv, opts)
    image_size = opts.image_size or (grid[0] * ph, grid[1] * ph)
    dec = _decoder(conv, opts, width, notes)
    names, palette = resolve_labels(dec.classes, opts.classes, conv.facts, notes)
    pause_after = opts.pause_after if opts.pause_after is not None else default_pause_points(depth)
    mean, std = _normalisation(conv, opts, notes)
    cfg = ModelConfig(
        name=opts.name or f"{conv.format}-import", image_size=image_size, patch_size=ph, embed_dim=width,
        depth=depth, num_heads=heads, mlp_ratio=_mlp_ratio(width, hidden), class_token=class_token,
        distilled=distilled, norm_eps=opts.norm_eps if opts.norm_eps is not None else conv.facts.norm_eps,
        pos_embed_interp=conv.facts.pos_embed_interp, pause_after=tuple(pause_after), decoder=dec.kind,
        decoder_depth=dec.depth, decoder_dim=dec.dim, decoder_heads=dec.heads, class_names=names, palette=palette,
        mean=mean, std=std,
    )
    return cfg, grid


def _why_new(key: str, conv: Converted) -> str | None:
    """Why a model key may start from fresh values (None: it must come from the checkpoint)."""
    if key.startswith("pause_heads."):
        return "new pausing head (fine-tune it before running at budgets below 1)"
    if key.startswith("decoder.") and not any(k.startswith("decoder.") for k in conv.weights):
        return "new decoder (train it before use)"
    return next((why for prefix, why in conv.fresh if key.startswith(prefix)), None)


def build_model(conv: Converted, opts: ImportOptions, report: ImportReport) -> PausingSegmenter:
    """A PausingSegmenter holding the converted weights; `report` records every key's fate."""
    cfg, grid = infer_config(conv, opts, report.notes)
    torch.manual_seed(opts.seed)  # new parts start the same way every time
    model = PausingSegmenter(cfg)
    extra = cfg.num_extra_tokens
    if grid != cfg.grid:
        conv.weights["encoder.pos_embed"] = resize_pos_embed(
            conv.weights["encoder.pos_embed"].float(), grid, cfg.grid, extra, cfg.pos_embed_interp)
        report.notes.append(f"position embedding resized from a {grid[0]}x{grid[1]} to a {cfg.grid[0]}x{cfg.grid[1]} "
                            f"grid ({cfg.pos_embed_interp}, as the source does)")
    target = model.state_dict()
    unknown = sorted(k for k in conv.weights if k not in target)
    if unknown:
        shown = ", ".join(conv.source_keys.get(k, k) for k in unknown[:4])
        raise UserError(f"the checkpoint has parts paumer-edge's plain ViT / Segmenter decoder has no place for "
                        f"({len(unknown)} tensors: {shown}{' ...' if len(unknown) > 4 else ''}); only standard "
                        "pre-norm ViTs (no layer scale, registers, q/k norm, patch norm) import")
    state: dict[str, torch.Tensor] = {}
    for key, want in target.items():
        have = conv.weights.get(key)
        if have is None:
            why = _why_new(key, conv)
            if why is None:
                raise UserError(f"the {conv.format} checkpoint lacks {key} (needed by a ViT of this shape); "
                                "it is incomplete or not the layout it looks like")
            report.initialised.append((key, why))
            state[key] = want
            continue
        if have.shape != want.shape:
            raise UserError(f"inconsistent shapes: {conv.source_keys.get(key, key)} is {list(have.shape)} but a "
                            f"width-{cfg.embed_dim} ViT with these other weights needs {list(want.shape)} for {key}")
        if not have.is_floating_point():
            raise UserError(f"{conv.source_keys.get(key, key)} holds {have.dtype} values, not weights")
        state[key] = have.to(want.dtype)
        if key in conv.filled:
            report.initialised.append((key, conv.filled[key]))
        else:
            report.mapped.append((conv.source_keys.get(key, key), key))
    model.load_state_dict(state)
    report.ignored += conv.ignored
    report.config = cfg.to_dict()
    return model.eval()

