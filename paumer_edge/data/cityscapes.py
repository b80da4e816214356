"""The Cityscapes layout: where the images and fine labels are, and the official labelId -> trainId table.

    DIR/leftImg8bit/{train,val,test}/<city>/<name>_leftImg8bit.png
    DIR/gtFine/{train,val,test}/<city>/<name>_gtFine_labelIds.png

Only the 19 evaluation classes get a train id; every other label id (unlabeled, ego vehicle,
parking, rail track, guard rail, ...) becomes IGNORE_INDEX, as in the official cityscapesScripts.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import UserError
from .classes import IGNORE_INDEX

SPLITS = ("train", "val", "test")
IMAGE_SUFFIX = "_leftImg8bit.png"
LABEL_SUFFIX = "_gtFine_labelIds.png"

# cityscapesScripts' labels.py: label id -> train id, for the ids that have one.
ID_TO_TRAIN_ID: dict[int, int] = {
    7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11, 25: 12, 26: 13,
    27: 14, 28: 15, 31: 16, 32: 17, 33: 18,
}


def label_lut() -> np.ndarray:
    """uint8 lookup table [256]: label id -> train id, IGNORE_INDEX for everything else."""
    lut = np.full(256, IGNORE_INDEX, np.uint8)
    for label_id, train_id in ID_TO_TRAIN_ID.items():
        lut[label_id] = train_id
    return lut


def cityscapes_pairs(root: Path, split: str) -> list[tuple[Path, Path]]:
    """(image, label) paths of a split, sorted by city and name; clear errors for a wrong layout."""
    if split not in SPLITS:
        raise UserError(f"Cityscapes has no split '{split}'; use one of {', '.join(SPLITS)}")
    images_dir, labels_dir = root / "leftImg8bit" / split, root / "gtFine" / split
    for folder in (images_dir, labels_dir):
        if not folder.is_dir():
            raise UserError(f"'{root}' has no {folder.relative_to(root)} folder: give the Cityscapes root that "
                            "holds leftImg8bit/ and gtFine/")
    images = sorted(images_dir.glob(f"*/*{IMAGE_SUFFIX}"))
    if not images:
        raise UserError(f"no images found in {images_dir}: expected <city>/<name>{IMAGE_SUFFIX}")
    pairs = []
    for image in images:
        label = labels_dir / image.parent.name / (image.name[: -len(IMAGE_SUFFIX)] + LABEL_SUFFIX)
        if not label.is_file():
            raise UserError(f"image {image} has no label: expected {label}")
        pairs.append((image, label))
    return pairs
