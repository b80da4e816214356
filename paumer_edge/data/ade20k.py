"""The ADE20K scene-parsing layout (ADEChallengeData2016) and its label mapping.

    DIR/images/{training,validation}/<name>.jpg
    DIR/annotations/{training,validation}/<name>.png

Annotations hold 0 for "other" and 1..150 for the classes; 0 becomes IGNORE_INDEX and class c
becomes c - 1 (mmsegmentation's reduce_zero_label, which Segmenter uses).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import UserError
from .classes import IGNORE_INDEX

NUM_CLASSES = 150
FOLDER = "ADEChallengeData2016"
SPLITS = {"train": "training", "val": "validation", "training": "training", "validation": "validation"}
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")


def label_lut() -> np.ndarray:
    """uint8 lookup table [256]: 0 and anything above 150 -> IGNORE_INDEX, c -> c - 1."""
    lut = np.full(256, IGNORE_INDEX, np.uint8)
    lut[1 : NUM_CLASSES + 1] = np.arange(NUM_CLASSES, dtype=np.uint8)
    return lut


def ade20k_root(root: Path) -> Path:
    """The folder holding images/ and annotations/: DIR itself or DIR/ADEChallengeData2016."""
    return root / FOLDER if not (root / "images").is_dir() and (root / FOLDER).is_dir() else root


def ade20k_pairs(root: Path, split: str) -> list[tuple[Path, Path]]:
    """(image, label) paths of a split, sorted by name; clear errors for a wrong layout."""
    if split not in SPLITS:
        raise UserError(f"ADE20K has no labelled split '{split}'; use train or val")
    base = ade20k_root(root)
    images_dir, labels_dir = base / "images" / SPLITS[split], base / "annotations" / SPLITS[split]
    for folder in (images_dir, labels_dir):
        if not folder.is_dir():
            raise UserError(f"'{root}' has no {folder.relative_to(base)} folder: give the {FOLDER} folder that "
                            "holds images/ and annotations/")
    images = sorted(p for p in images_dir.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
    if not images:
        raise UserError(f"no images found in {images_dir}: expected <name>.jpg")
    pairs = []
    for image in images:
        label = labels_dir / f"{image.stem}.png"
        if not label.is_file():
            raise UserError(f"image {image} has no label: expected {label}")
        pairs.append((image, label))
    return pairs
