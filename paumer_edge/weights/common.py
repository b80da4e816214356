"""What every weight importer shares: the options, the converted weights, the report, and safe reading.

A format module (segmenter, timm, mmseg) turns a foreign state dict into `Converted`: tensors under
paumer-edge's key names plus what the file says about the model (`SourceFacts`). `build.py` then
infers the shape from the tensors and fills a PausingSegmenter.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .. import UserError
from ..checkpoint import FORMAT as PAUMER_FORMAT
from ..checkpoint import load_torch_data

STATE_KEYS = ("model", "state_dict", "model_state_dict", "module")  # where trainers keep the weights
CODE_HINT = ("; where you trust the file, save only its weights and import those: python -c \"import torch; "
             "c = torch.load('SRC', weights_only=False); torch.save(c.get('state_dict', c.get('model', c)), "
             "'weights.pth')\"")


@dataclass(frozen=True)
class ImportOptions:
    """What the user asked for; None means: take it from the checkpoint or a sensible default."""

    format: str | None = None  # segmenter | timm | mmseg; None = detect
    variant: Path | None = None  # Segmenter's variant.yml (default: beside the checkpoint)
    num_classes: int | None = None
    classes: str | None = None  # a label set name (ade20k, cityscapes) or a file with one name per line
    image_size: tuple[int, int] | None = None  # (H, W) the imported model is set up for
    source_size: tuple[int, int] | None = None  # (H, W) the source was trained at (non-square grids)
    pause_after: tuple[int, ...] | None = None
    num_heads: int | None = None
    decoder: str | None = None  # for a new decoder: linear | mask_transformer
    decoder_depth: int = 2
    decoder_heads: int | None = None
    fresh_decoder: bool = False  # drop the checkpoint's decoder, start a new one
    norm_eps: float | None = None
    normalization: str | None = None  # vit | deit | imagenet
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    name: str | None = None
    seed: int = 0


@dataclass
class SourceFacts:
    """What a checkpoint's files say about the model beyond its tensors (None: they do not say)."""

    num_heads: int | None = None
    image_size: tuple[int, int] | None = None  # the size the position embedding was trained for
    norm_eps: float = 1e-6
    pos_embed_interp: str = "bicubic"
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    normalization_from: str = ""  # where mean/std came from, for the report
    num_classes: int | None = None
    dataset: str | None = None
    class_names: tuple[str, ...] | None = None
    palette: tuple[tuple[int, int, int], ...] | None = None
    decoder_heads: int | None = None
    notes: list[str] = field(default_factory=list)


@dataclass
class Converted:
    """A foreign checkpoint under paumer-edge key names (`encoder.*`, `decoder.*`)."""

    format: str
    weights: dict[str, torch.Tensor]
    source_keys: dict[str, str]  # paumer-edge key -> the source key(s) it came from
    ignored: list[tuple[str, str]]  # (source key, why)
    facts: SourceFacts
    decoder: str | None  # linear | mask_transformer | None when the checkpoint has no usable decoder
    fresh: list[tuple[str, str]] = field(default_factory=list)  # (key prefix, why) that may start new
    filled: dict[str, str] = field(default_factory=dict)  # keys whose tensors the converter made up -> why


@dataclass
class ImportReport:
    """Which keys were mapped, initialised or ignored, and the notes worth reading."""

    source: str
    format: str
    mapped: list[tuple[str, str]] = field(default_factory=list)  # (source key, paumer-edge key)
    initialised: list[tuple[str, str]] = field(default_factory=list)  # (paumer-edge key, why)
    ignored: list[tuple[str, str]] = field(default_factory=list)  # (source key, why)
    notes: list[str] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    output: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source, "format": self.format, "output": self.output, "config": self.config,
            "mapped": [{"source": s, "target": t} for s, t in self.mapped],
            "initialised": [{"key": k, "why": w} for k, w in self.initialised],
            "ignored": [{"key": k, "why": w} for k, w in self.ignored],
            "notes": self.notes,
        }


# ---- reading a checkpoint -------------------------------------------------------------------
def checkpoint_file(src: Path) -> Path:
    """The weights file: SRC itself, or SRC/checkpoint.pth for a Segmenter log folder."""
    if src.is_dir():
        inner = src / "checkpoint.pth"
        if not inner.is_file():
            raise UserError(f"'{src}' is a folder without a checkpoint.pth; give the checkpoint file itself")
        return inner
    if not src.is_file():
        raise UserError(f"'{src}' does not exist or is not a file")
    return src


def read_checkpoint(path: Path) -> Any:
    """The file's contents as data only (torch weights_only, or safetensors); never runs its code."""
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError:
            raise UserError(f"'{path}' is a safetensors file; install the reader with `pip install safetensors`") \
                from None
        try:
            return load_file(str(path))
        except Exception as e:  # the reader raises its own error types for corrupt files
            raise UserError(f"'{path}' is not a readable safetensors file ({str(e).strip()[:200]})") from None
    return load_torch_data(path, code_hint=CODE_HINT.replace("SRC", str(path)))


def unwrap_state(obj: Any, path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any], list[tuple[str, str]]]:
    """(state dict, the rest of the file, ignored non-tensor entries) from what trainers save."""
    if not isinstance(obj, dict):
        raise UserError(f"'{path}' holds a {type(obj).__name__}, not a dictionary of weights")
    if obj.get("format") == PAUMER_FORMAT:
        raise UserError(f"'{path}' is already a paumer-edge checkpoint; use it directly (no import needed)")
    state: dict[str, Any] = obj
    rest: dict[str, Any] = {}
    for key in STATE_KEYS:
        inner = obj.get(key)
        if isinstance(inner, dict) and inner and any(isinstance(v, torch.Tensor) for v in inner.values()):
            state, rest = inner, {k: v for k, v in obj.items() if k != key}
            break
    tensors = {str(k): v for k, v in state.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise UserError(f"'{path}' holds no weights (no tensors at the top level or under "
                        f"{', '.join(repr(k) for k in STATE_KEYS)})")
    skipped = [(str(k), "not a tensor") for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if all(k.startswith("module.") for k in tensors):  # saved from DistributedDataParallel
        tensors = {k[len("module."):]: v for k, v in tensors.items()}
    return tensors, rest, skipped


# ---- small shared helpers -------------------------------------------------------------------
_NUMBER = re.compile(r"^\d+$")


def key_group(key: str) -> str:
    """The module a key belongs to, for summaries: 'encoder.blocks.11.attn.qkv.weight' -> 'encoder.blocks.N.*',
    'encoder.patch_embed.proj.weight' -> 'encoder.patch_embed.*', 'pos_embed' -> 'pos_embed'."""
    parts = key.split(".")
    for i, part in enumerate(parts):
        if _NUMBER.match(part):
            return ".".join([*parts[:i], "N", "*"])
    return key if len(parts) <= 2 else ".".join([*parts[:2], "*"])


def group_keys(pairs: list[tuple[str, str]]) -> list[tuple[str, int, str]]:
    """(key, why) pairs -> (group, count, why), in first-seen order."""
    groups: dict[tuple[str, str], int] = {}
    for key, why in pairs:
        g = (key_group(key), why)
        groups[g] = groups.get(g, 0) + 1
    return [(g, n, why) for (g, why), n in groups.items()]


def as_size(value: Any, what: str) -> tuple[int, int]:
    """An int or a pair from a config file -> (H, W)."""
    if isinstance(value, int):
        return value, value
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return int(value[0]), int(value[1])
    raise UserError(f"{what} is {value!r}; expected a number or a pair of numbers")
