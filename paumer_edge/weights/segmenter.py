"""Segmenter (Strudel et al. 2021, rstrudel/segmenter): `checkpoint.pth` + `variant.yml` beside it.

Segmenter's modules already use paumer-edge's key names (`encoder.blocks.N.attn.qkv`, `decoder.cls_emb`,
...), so the weights map one to one; what matters is the model around them, as Segmenter builds it:
LayerNorm eps 1e-5 everywhere (nn.LayerNorm's default), bilinear position-embedding resize, an
optional DeiT distillation token, mask-transformer heads = width // 64, and the "vit" / "deit" input
normalisation of segm/data/utils.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from .. import UserError
from .common import Converted, ImportOptions, SourceFacts, as_size

NAME = "segmenter"
NORMALIZATION = {  # segm/data/utils.py STATS, for RGB in [0, 1]
    "vit": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    "deit": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}
LAYER_NORM_EPS = 1e-5  # Segmenter's nn.LayerNorm(dim) everywhere
_IGNORED = {
    "encoder.head.": "the backbone's ImageNet classifier (Segmenter does not use it)",
    "encoder.head_dist.": "the backbone's distillation classifier (Segmenter does not use it)",
}


def matches(state: dict[str, torch.Tensor]) -> bool:
    return "encoder.patch_embed.proj.weight" in state and any(k.startswith("decoder.") for k in state)


def read_variant(path: Path) -> dict[str, Any]:
    """variant.yml as plain data. Segmenter writes it with yaml.dump, so sizes are `!!python/tuple`;
    that tag (only) is read as a list, and anything else that could build objects is refused."""
    import yaml

    class _Loader(yaml.SafeLoader):
        pass

    def _tuple(loader: yaml.SafeLoader, node: yaml.Node) -> list[Any]:
        assert isinstance(node, yaml.SequenceNode)
        return loader.construct_sequence(node)

    _Loader.add_constructor("tag:yaml.org,2002:python/tuple", _tuple)
    try:
        data = yaml.load(path.read_text(), Loader=_Loader)  # a SafeLoader: builds no objects
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"cannot read '{path}' ({e.__class__.__name__})") from None
    except yaml.YAMLError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else "invalid YAML"
        raise UserError(f"'{path}' is not a readable Segmenter variant.yml ({first})") from None
    if not isinstance(data, dict) or not isinstance(data.get("net_kwargs"), dict):
        raise UserError(f"'{path}' has no net_kwargs section; is it Segmenter's variant.yml?")
    return data


def _facts(variant: dict[str, Any] | None, path: Path) -> SourceFacts:
    facts = SourceFacts(norm_eps=LAYER_NORM_EPS, pos_embed_interp="bilinear")
    if variant is None:
        facts.notes.append("no variant.yml beside the checkpoint: shape from the weights alone, 'vit' "
                           "normalisation assumed (use --variant, --num-heads, --normalization to set them)")
        facts.mean, facts.std = NORMALIZATION["vit"]
        facts.normalization_from = "Segmenter 'vit' (assumed)"
        return facts
    net = variant["net_kwargs"]
    data = variant.get("dataset_kwargs") or {}
    if "n_heads" in net:
        facts.num_heads = int(net["n_heads"])
    if "image_size" in net:
        facts.image_size = as_size(net["image_size"], f"{path}: net_kwargs.image_size")
    norm = str(net.get("normalization") or data.get("normalization") or "vit")
    if norm not in NORMALIZATION:
        raise UserError(f"{path}: normalization '{norm}' is not one Segmenter defines ({', '.join(NORMALIZATION)})")
    facts.mean, facts.std = NORMALIZATION[norm]
    facts.normalization_from = f"Segmenter '{norm}' (variant.yml)"
    if "n_cls" in net:
        facts.num_classes = int(net["n_cls"])
    facts.dataset = data.get("dataset")
    if "d_model" in net:  # Segmenter's create_decoder: heads = d_model // 64
        facts.decoder_heads = max(1, int(net["d_model"]) // 64)
    return facts


def _check_variant(variant: dict[str, Any], state: dict[str, torch.Tensor], path: Path) -> None:
    """variant.yml and the weights must describe the same network."""
    net = variant["net_kwargs"]
    proj = state["encoder.patch_embed.proj.weight"]
    depth = len({k.split(".")[2] for k in state if k.startswith("encoder.blocks.")})
    checks = [("d_model", proj.shape[0]), ("patch_size", proj.shape[-1]), ("n_layers", depth),
              ("distilled", "encoder.dist_token" in state)]
    for key, actual in checks:
        if key in net and net[key] is not None and type(actual)(net[key]) != actual:
            raise UserError(f"{path} says {key} = {net[key]} but the weights have {actual}: "
                            "is it the variant.yml of this checkpoint?")


def convert(state: dict[str, torch.Tensor], rest: dict[str, Any], src: Path, opts: ImportOptions) -> Converted:
    variant_path = opts.variant or src.parent / "variant.yml"
    if opts.variant and not opts.variant.is_file():
        raise UserError(f"--variant '{opts.variant}' does not exist or is not a file")
    variant = read_variant(variant_path) if variant_path.is_file() else None
    if variant is not None:
        _check_variant(variant, state, variant_path)
    facts = _facts(variant, variant_path)

    weights: dict[str, torch.Tensor] = {}
    sources: dict[str, str] = {}
    ignored: list[tuple[str, str]] = []
    for key, value in state.items():
        why = next((w for prefix, w in _IGNORED.items() if key.startswith(prefix)), None)
        if why:
            ignored.append((key, why))
        else:  # Segmenter's names are ours; anything we have no place for is refused when loading
            weights[key], sources[key] = value, key
    ignored += [(k, "training state, not weights") for k in rest if k != "n_cls"]
    if "decoder.head.weight" in state:
        decoder: str | None = "linear"
    elif "decoder.cls_emb" in state:
        decoder = "mask_transformer"
    else:
        raise UserError(f"'{src}': the Segmenter decoder is neither linear (decoder.head) nor a mask transformer "
                        "(decoder.cls_emb); only those two are supported")
    if isinstance(rest.get("n_cls"), int) and facts.num_classes is None:
        facts.num_classes = int(rest["n_cls"])
    return Converted(NAME, weights, sources, ignored, facts, decoder)
