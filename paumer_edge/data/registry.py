"""The one parser of `--data` specs: spec string -> label set and torch Dataset.

    synthetic            the procedural street scenes (rendered once, cached)
    cityscapes:DIR       DIR/leftImg8bit/<split>/<city>/*_leftImg8bit.png + DIR/gtFine/... (19 classes)
    ade20k:DIR           DIR (or DIR/ADEChallengeData2016)/images/<split>/*.jpg + annotations/ (150 classes)

Every dataset yields (image float32 [3, H, W] in [0, 1], labels int64 [H, W]) with IGNORE_INDEX (255)
for pixels that count for nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from .. import UserError
from . import ade20k, cityscapes
from .classes import STREET_CLASSES, STREET_PALETTE
from .dataset import StreetScenes
from .images import LabelledImages, TrainCrops, spread
from .labelsets import ADE20K_CLASSES, ADE20K_PALETTE, CITYSCAPES_CLASSES, CITYSCAPES_PALETTE

KINDS = ("synthetic", "cityscapes", "ade20k")
SYNTHETIC_LENGTHS = {"train": 16000, "val": 256, "test": 1000}  # when no length is given


@dataclass(frozen=True)
class LabelSet:
    """Class names and colours of a dataset, index = class id."""

    name: str
    classes: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...]

    @property
    def num_classes(self) -> int:
        return len(self.classes)


LABEL_SETS = {
    "synthetic": LabelSet("synthetic streets", STREET_CLASSES, STREET_PALETTE),
    "cityscapes": LabelSet("Cityscapes", CITYSCAPES_CLASSES, CITYSCAPES_PALETTE),
    "ade20k": LabelSet("ADE20K", ADE20K_CLASSES, ADE20K_PALETTE),
}


@dataclass(frozen=True)
class DataSpec:
    """A parsed `--data` value."""

    kind: str
    root: Path | None = None

    @property
    def labels(self) -> LabelSet:
        return LABEL_SETS[self.kind]

    @property
    def synthetic(self) -> bool:
        return self.kind == "synthetic"

    @property
    def default_eval_split(self) -> str:
        """The held-out split with labels: synthetic has a test split, the real benchmarks label only val."""
        return "test" if self.synthetic else "val"

    def __str__(self) -> str:
        return self.kind if self.root is None else f"{self.kind}:{self.root}"


def parse_data_spec(text: str | DataSpec) -> DataSpec:
    """'synthetic', 'cityscapes:DIR' or 'ade20k:DIR' -> DataSpec; one clear line for anything else."""
    if isinstance(text, DataSpec):
        return text
    kind, sep, rest = str(text).partition(":")
    kind = kind.strip().lower()
    if kind not in KINDS:
        raise UserError(f"unknown dataset '{text}'; use synthetic, cityscapes:DIR or ade20k:DIR")
    if kind == "synthetic":
        if rest:
            raise UserError(f"'{text}': the synthetic dataset takes no folder; write just synthetic")
        return DataSpec(kind)
    if not rest:
        raise UserError(f"'{text}' needs the dataset folder: write {kind}:DIR")
    root = Path(rest).expanduser()
    if not root.is_dir():
        raise UserError(f"{kind} folder '{root}' does not exist")
    return DataSpec(kind, root)


def build_dataset(spec: str | DataSpec, split: str, size: tuple[int, int], length: int | None = None,
                  progress: bool = True, cache: bool = True, *, train: bool = False, seed: int = 0,
                  scale: float = 1.0, scale_range: tuple[float, float] = (0.5, 2.0)) -> Dataset[Any]:
    """The dataset of a spec and split.

    `length` caps the number of images (spread evenly over the split; None: all, or the synthetic
    default). `train=True` gives random scale/crop views at `size` for real data; synthetic scenes
    are rendered at `size` either way. `scale` resizes real images before anything else.
    """
    ds = parse_data_spec(spec)
    if ds.synthetic:
        if scale != 1.0:
            raise UserError("--data-scale applies to image datasets; synthetic scenes are rendered at the model size")
        n = SYNTHETIC_LENGTHS.get(split, 1000) if length is None else length
        return StreetScenes(size, n, split, cache=cache, progress=progress)
    assert ds.root is not None
    if ds.kind == "cityscapes":
        pairs, lut = cityscapes.cityscapes_pairs(ds.root, split), cityscapes.label_lut()
    else:
        pairs, lut = ade20k.ade20k_pairs(ds.root, split), ade20k.label_lut()
    images = LabelledImages([pairs[i] for i in spread(len(pairs), length)], lut, scale)
    return TrainCrops(images, size, scale_range, seed) if train else images


def check_classes(num_classes: int, spec: str | DataSpec, model_name: str = "the model") -> None:
    """A model must predict exactly the dataset's classes; say so clearly when it does not."""
    ds = parse_data_spec(spec)
    if num_classes != ds.labels.num_classes:
        raise UserError(f"{model_name} predicts {num_classes} classes but {ds.labels.name} has "
                        f"{ds.labels.num_classes}: use a model trained or imported for {ds.labels.name}, "
                        "or train one from a preset on this data")
