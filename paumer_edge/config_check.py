"""Model config validation, one place for every loader: types, ranges, cross-field rules, memory.

`ModelConfig` runs `check_config` whenever one is made (a preset, `--config`, a checkpoint's config, an
import), and `config_kwargs` turns a mapping from a file into its fields; so a config from any source is
held to the same rules and refused in one line naming the field. `check_model_memory` estimates what
building and running the model needs and refuses it beyond the memory limit (`paumer_edge.core.memory`)
before anything is allocated; `PausingSegmenter` calls it, so no path builds a model unchecked.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .core.errors import UserError
from .core.knobs import MAX_FRAME_PIXELS, MAX_SIDE, check_count, check_number, show_value
from .core.memory import VitShape, check_memory, forward_bytes

if TYPE_CHECKING:
    from .config import ModelConfig

DECODERS = ("linear", "mask_transformer")
POS_EMBED_INTERP = ("bicubic", "bilinear")
MAX_PATCH = 1024
MAX_WIDTH = 1 << 16
MAX_DEPTH = 1024
MAX_HEADS = 1024
MAX_MLP_RATIO = 64.0
MAX_DECODER_DEPTH = 64
MAX_CLASSES = 1 << 16  # label PNGs hold 16-bit class ids
SEQUENCES = ("image_size", "pause_after", "class_names", "mean", "std")

__all__ = ["DECODERS", "MAX_CLASSES", "MAX_DECODER_DEPTH", "MAX_HEADS", "POS_EMBED_INTERP", "check_config",
           "check_model_memory", "config_kwargs", "vit_shape"]


def _kind(v: Any) -> str:
    return "a string" if isinstance(v, str) else "a boolean" if isinstance(v, bool) else type(v).__name__


def config_kwargs(d: Any, fields: set[str]) -> dict[str, Any]:
    """The fields of a config mapping as ModelConfig takes them (lists -> tuples); types are checked after."""
    if not isinstance(d, Mapping):
        raise UserError(f"the model config must be a mapping of field names to values (a JSON object), not "
                        f"{_kind(d)}")
    bad = [k for k in d if not isinstance(k, str)]
    if bad:
        raise UserError(f"model config field names must be strings, not {_kind(bad[0])}")
    unknown = sorted(set(d) - fields)
    if unknown:
        shown = unknown[:8] + (["..."] if len(unknown) > 8 else [])
        raise UserError(f"model config has unknown fields {shown}; was it written by a newer paumer-edge?")
    kw: dict[str, Any] = {}
    for k, v in d.items():
        if k == "palette" and isinstance(v, (list, tuple)):
            kw[k] = tuple(tuple(rgb) if isinstance(rgb, (list, tuple)) else rgb for rgb in v)
        elif k in SEQUENCES and isinstance(v, (list, tuple)):
            kw[k] = tuple(v)
        else:
            kw[k] = v
    return kw


class _Fields:
    """Typed reads of one config's fields; every failure names the config and the field."""

    def __init__(self, cfg: ModelConfig):
        self.cfg = cfg
        self.where = f"model config {show_value(cfg.name)}" if isinstance(cfg.name, str) else "model config"

    def bad(self, msg: str) -> UserError:
        return UserError(f"{self.where}: {msg}")

    def whole(self, key: str, lo: int, hi: int, value: Any = None) -> int:
        v = getattr(self.cfg, key) if value is None else value
        if isinstance(v, bool) or not isinstance(v, numbers.Integral):
            raise self.bad(f"{key} must be a whole number, not {_kind(v)} {show_value(v)}")
        return check_count(v, f"{self.where}: {key}", lo, hi, error=UserError)

    def number(self, key: str, expected: str, lo: float, hi: float, lo_open: bool = False,
               hi_open: bool = False, value: Any = None) -> float:
        v = getattr(self.cfg, key) if value is None else value
        return check_number(v, f"{self.where}: {key}", expected, lo, hi, lo_open, hi_open, error=UserError)

    def flag(self, key: str) -> bool:
        v = getattr(self.cfg, key)
        if not isinstance(v, bool):
            raise self.bad(f"{key} must be true or false, not {_kind(v)}")
        return v

    def choice(self, key: str, options: tuple[str, ...]) -> str:
        v = getattr(self.cfg, key)
        if not isinstance(v, str) or v not in options:
            raise self.bad(f"{key} {show_value(v)} is not one of {', '.join(options)}")
        return v

    def seq(self, key: str, length: int | None = None, lo: int = 0, hi: int | None = None) -> tuple[Any, ...]:
        v = getattr(self.cfg, key)
        if not isinstance(v, (tuple, list)):
            raise self.bad(f"{key} must be a list, not {_kind(v)}")
        if length is not None and len(v) != length:
            raise self.bad(f"{key} needs {length} values, not {len(v)}")
        if not lo <= len(v) <= (hi if hi is not None else len(v)):
            raise self.bad(f"{key} has {len(v)} entries; give {lo} to {hi}")
        return tuple(v)


def _check_types(f: _Fields, cfg: ModelConfig) -> None:
    if not isinstance(cfg.name, str):
        raise f.bad(f"name must be a string, not {_kind(cfg.name)}")
    patch = f.whole("patch_size", 1, MAX_PATCH)
    size = f.seq("image_size", 2)
    h, w = (f.whole("image_size", patch, MAX_SIDE, value=x) for x in size)
    width = f.whole("embed_dim", 1, MAX_WIDTH)
    depth = f.whole("depth", 1, MAX_DEPTH)
    f.whole("num_heads", 1, min(width, MAX_HEADS))
    f.number("mlp_ratio", f"a ratio in (0, {MAX_MLP_RATIO:g}]", 0.0, MAX_MLP_RATIO, lo_open=True)
    f.flag("class_token")
    f.flag("distilled")
    f.number("norm_eps", "a small positive number below 1, e.g. 1e-6", 0.0, 1.0, lo_open=True, hi_open=True)
    f.choice("pos_embed_interp", POS_EMBED_INTERP)
    for p in f.seq("pause_after", hi=depth):  # whole numbers; where they may lie is a rule between fields
        f.whole("pause_after", -MAX_DEPTH, MAX_DEPTH, value=p)
    f.choice("decoder", DECODERS)
    f.whole("decoder_depth", 1, MAX_DECODER_DEPTH)
    f.whole("decoder_dim", 0, MAX_WIDTH)
    f.whole("decoder_heads", 0, MAX_HEADS)
    for name in f.seq("class_names", lo=2, hi=MAX_CLASSES):
        if not isinstance(name, str):
            raise f.bad(f"class_names must be strings, not {_kind(name)}")
    for rgb in f.seq("palette"):
        if not isinstance(rgb, (tuple, list)) or len(rgb) != 3:
            raise f.bad("palette entries must be [R, G, B] colours")
        for c in rgb:
            f.whole("palette", 0, 255, value=c)
    for x in f.seq("mean", 3):
        f.number("mean", "a finite number", float("-inf"), float("inf"), value=x)
    for x in f.seq("std", 3):
        f.number("std", "a positive number", 0.0, float("inf"), lo_open=True, value=x)
    if h * w > MAX_FRAME_PIXELS:
        raise f.bad(f"image size {h}x{w} is more than the {MAX_FRAME_PIXELS >> 20} megapixels a model input may have")


def check_config(cfg: ModelConfig) -> None:
    """Every field's type and range, then the rules between fields; one line naming the field if not."""
    f = _Fields(cfg)
    _check_types(f, cfg)
    h, w = cfg.image_size
    if h % cfg.patch_size or w % cfg.patch_size:
        raise f.bad(f"image size {h}x{w} must be a multiple of the patch size {cfg.patch_size}")
    if cfg.embed_dim % cfg.num_heads:
        raise f.bad(f"embed_dim {cfg.embed_dim} must be divisible by num_heads {cfg.num_heads}")
    if int(cfg.embed_dim * cfg.mlp_ratio) < 1:
        raise f.bad(f"mlp_ratio {cfg.mlp_ratio} gives an empty MLP at embed_dim {cfg.embed_dim}")
    if list(cfg.pause_after) != sorted(set(cfg.pause_after)):
        raise f.bad(f"pause_after {list(cfg.pause_after)} must be strictly increasing")
    if cfg.pause_after and not (0 < cfg.pause_after[0] and cfg.pause_after[-1] < cfg.depth):
        raise f.bad(f"pause_after {list(cfg.pause_after)} must lie strictly between 0 and depth {cfg.depth}")
    if cfg.distilled and not cfg.class_token:
        raise f.bad("a distillation token needs a class token (distilled=True, class_token=False)")
    if cfg.decoder == "mask_transformer" and cfg.mask_dim % cfg.mask_heads:
        raise f.bad(f"decoder_dim {cfg.mask_dim} must be divisible by decoder_heads {cfg.mask_heads}")
    if cfg.mask_heads > cfg.mask_dim:
        raise f.bad(f"decoder_heads {cfg.mask_heads} exceed the decoder width {cfg.mask_dim}")
    if len(cfg.palette) != len(cfg.class_names):
        raise f.bad(f"palette has {len(cfg.palette)} colours for {len(cfg.class_names)} classes")


def vit_shape(cfg: ModelConfig, image_size: tuple[int, int] | None = None) -> VitShape:
    """The memory-deciding numbers of a (checked) config, at its own or another input size."""
    return VitShape(image_size or cfg.image_size, cfg.patch_size, cfg.embed_dim, cfg.depth, cfg.num_heads,
                    int(cfg.embed_dim * cfg.mlp_ratio), cfg.num_extra_tokens, cfg.num_classes, len(cfg.pause_after),
                    cfg.mask_dim if cfg.decoder == "mask_transformer" else 0,
                    cfg.decoder_depth if cfg.decoder == "mask_transformer" else 0)


def check_model_memory(cfg: ModelConfig, batch: int = 1, training: bool = False,
                       image_size: tuple[int, int] | None = None) -> None:
    """Refuse a model whose weights and one forward pass (at `batch`, training or not) exceed the memory limit."""
    shape = vit_shape(cfg, image_size)
    h, w = shape.image_hw
    what = (f"model {show_value(cfg.name)} (embed_dim {cfg.embed_dim}, depth {cfg.depth}, {cfg.num_heads} heads, "
            f"{h}x{w} input in {shape.patches:,} patches{f', batch {batch}' if batch > 1 else ''}"
            f"{', training' if training else ''})")
    check_memory(forward_bytes(shape, batch, training), what)
