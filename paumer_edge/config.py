"""Model configuration as data: one dataclass, JSON round-trip, and the named presets.

The config travels with every checkpoint (and later in every bundle manifest), so a model can be
rebuilt from it alone. Presets follow Segmenter's ViT shapes; `tiny` is for tests, `sample` is the
bundled model.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

from . import UserError
from .config_check import DECODERS, POS_EMBED_INTERP, check_config, config_kwargs
from .data.classes import STREET_CLASSES, STREET_PALETTE

__all__ = ["DECODERS", "POS_EMBED_INTERP", "PRESETS", "ModelConfig", "preset"]


@dataclass(frozen=True)
class ModelConfig:
    """Shape of a PAUMER segmenter: ViT encoder, pausing points, decoder, and the label set."""

    name: str = "custom"
    image_size: tuple[int, int] = (512, 512)  # (height, width) the model is trained for
    patch_size: int = 16
    embed_dim: int = 192
    depth: int = 12
    num_heads: int = 3
    mlp_ratio: float = 4.0
    class_token: bool = True
    distilled: bool = False  # a DeiT distillation token after the class token (Segmenter's DeiT backbones)
    norm_eps: float = 1e-6
    # How the position embedding is resized to another patch grid: "bicubic" (timm, mmseg) or
    # "bilinear" (Segmenter), so imported models keep their source's outputs at any input size.
    pos_embed_interp: str = "bicubic"
    # A pausing point after block k (1-based count of blocks done): tokens may pause there.
    pause_after: tuple[int, ...] = (3, 6, 9)
    decoder: str = "linear"  # "linear" | "mask_transformer"
    decoder_depth: int = 2  # mask transformer layers
    decoder_dim: int = 0  # mask transformer width; 0 = embed_dim
    decoder_heads: int = 0  # mask transformer heads; 0 = num_heads
    class_names: tuple[str, ...] = STREET_CLASSES
    palette: tuple[tuple[int, int, int], ...] = STREET_PALETTE
    # Normalisation of RGB images scaled to [0, 1].
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)

    def __post_init__(self) -> None:
        self.validate()

    # ---- derived quantities -------------------------------------------------------------
    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def grid(self) -> tuple[int, int]:
        """Patch grid (rows, cols) at the configured image size."""
        return self.image_size[0] // self.patch_size, self.image_size[1] // self.patch_size

    @property
    def num_patches(self) -> int:
        rows, cols = self.grid
        return rows * cols

    @property
    def num_extra_tokens(self) -> int:
        return int(self.class_token) + int(self.distilled)

    @property
    def num_stages(self) -> int:
        """Encoder stages: the blocks between consecutive pausing points."""
        return len(self.pause_after) + 1

    @property
    def stage_bounds(self) -> tuple[tuple[int, int], ...]:
        """[start, end) block indices of each encoder stage."""
        edges = (0, *self.pause_after, self.depth)
        return tuple((edges[i], edges[i + 1]) for i in range(len(edges) - 1))

    @property
    def mask_dim(self) -> int:
        return self.decoder_dim or self.embed_dim

    @property
    def mask_heads(self) -> int:
        return self.decoder_heads or self.num_heads

    # ---- checks -------------------------------------------------------------------------
    def validate(self) -> None:
        """Types, ranges and cross-field rules (`config_check.check_config`); a `UserError` naming the field."""
        check_config(self)

    # ---- serialisation ------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        for k, v in d.items():  # tuples -> lists, so JSON and torch.load(weights_only) both accept it
            if isinstance(v, tuple):
                d[k] = [list(x) if isinstance(x, tuple) else x for x in v]
        return d

    @classmethod
    def from_dict(cls, d: Any) -> ModelConfig:
        """A config from a mapping (a checkpoint's, a JSON file's); anything else is a one-line `UserError`."""
        return cls(**config_kwargs(d, {f.name for f in dataclasses.fields(cls)}))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_json(cls, text: str) -> ModelConfig:
        try:
            data = json.loads(text)
        except (ValueError, RecursionError) as e:  # ValueError: also integers beyond Python's 4300 digits
            raise UserError(f"the model config is not valid JSON ({str(e)[:200]})") from None
        return cls.from_dict(data)

    def replace(self, **changes: Any) -> ModelConfig:
        return dataclasses.replace(self, **changes)


def _segmenter(name: str, dim: int, depth: int, heads: int, pause_after: tuple[int, ...]) -> ModelConfig:
    # Segmenter (Strudel et al. 2021): patch 16, 512x512 crops, mask transformer with 2 layers.
    return ModelConfig(
        name=name, image_size=(512, 512), patch_size=16, embed_dim=dim, depth=depth, num_heads=heads,
        pause_after=pause_after, decoder="mask_transformer", decoder_depth=2, norm_eps=1e-6,
    )


PRESETS: dict[str, ModelConfig] = {
    # Small enough for unit tests to train in seconds.
    "tiny": ModelConfig(
        name="tiny", image_size=(32, 64), patch_size=8, embed_dim=32, depth=4, num_heads=2,
        pause_after=(1, 2, 3), decoder="linear",
    ),
    # The bundled model: 512 tokens (16x32 grid) so pausing has room, encoder >99% of the compute.
    # Pausing after blocks 2, 5, 8 keeps stage 0 at 1/6 of the encoder, so budget 0.25 still has a choice.
    "sample": ModelConfig(
        name="sample", image_size=(128, 256), patch_size=8, embed_dim=128, depth=12, num_heads=4,
        pause_after=(2, 5, 8), decoder="linear",
    ),
    "vit-t": _segmenter("vit-t", 192, 12, 3, (3, 6, 9)),
    "vit-s": _segmenter("vit-s", 384, 12, 6, (3, 6, 9)),
    "vit-b": _segmenter("vit-b", 768, 12, 12, (3, 6, 9)),
    "vit-l": _segmenter("vit-l", 1024, 24, 16, (6, 12, 18)),
}


def preset(name: str) -> ModelConfig:
    """The named preset; a clear error lists the known names."""
    try:
        return PRESETS[name]
    except KeyError:
        raise UserError(f"unknown preset '{name}'; choose one of: {', '.join(PRESETS)}") from None
