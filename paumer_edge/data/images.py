"""Torch datasets over labelled image files (Cityscapes, ADE20K, ...): reading, label mapping, augmentation.

`LabelledImages` gives whole images at their own resolution (times an optional scale), for
evaluation by resizing or by sliding windows. `TrainCrops` gives random scale / crop views at the
model's input size for training (the trainer adds the horizontal flip); its randomness comes from
the key it is indexed with, so a resumed run draws the same crops.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from .. import UserError
from ..core.imread import imread
from .classes import IGNORE_INDEX


def read_image(path: Path) -> np.ndarray:
    """An image file -> RGB uint8 [H, W, 3]."""
    img = imread(path, cv2.IMREAD_COLOR)
    if img is None:
        raise UserError(f"cannot read image {path} (missing, unreadable or not an image)")
    return np.ascontiguousarray(img[..., ::-1])


def read_label(path: Path, lut: np.ndarray) -> np.ndarray:
    """A label PNG of raw ids -> uint8 [H, W] class indices through `lut` (IGNORE_INDEX where unmapped)."""
    raw = imread(path)
    if raw is None:
        raise UserError(f"cannot read label {path} (missing, unreadable or not an image)")
    if raw.ndim != 2 or raw.dtype != np.uint8:
        raise UserError(f"label {path} must be a single-channel 8-bit PNG of ids; it is {raw.dtype} {raw.shape}")
    return lut[raw]


def to_tensors(rgb: np.ndarray, labels: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """RGB uint8 [H, W, 3] and labels [H, W] -> float [3, H, W] in [0, 1] and int64 [H, W]."""
    image = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).float().div_(255.0)
    return image, torch.from_numpy(labels.astype(np.int64))


def spread(total: int, length: int | None) -> list[int]:
    """`length` indices spread evenly over 0..total-1 (all of them for None or length >= total)."""
    if length is None or length >= total:
        return list(range(total))
    if length < 1:
        raise UserError(f"dataset length must be positive, got {length}")
    return sorted({int(round(i)) for i in np.linspace(0, total - 1, length)})


class LabelledImages(Dataset):
    """(image, label file) pairs -> (image float32 [3, H, W] in [0, 1], labels int64 [H, W]) at the file's size.

    `scale` resizes both (image bilinear/area, labels nearest), e.g. 0.5 for half-resolution work.
    """

    def __init__(self, pairs: Sequence[tuple[Path, Path]], lut: np.ndarray, scale: float = 1.0):
        if not pairs:
            raise UserError("the dataset has no images")
        if not scale > 0:
            raise UserError(f"data scale must be positive, got {scale}")
        self.pairs, self.lut, self.scale = list(pairs), lut, float(scale)

    def __len__(self) -> int:
        return len(self.pairs)

    def numpy_item(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        image_path, label_path = self.pairs[i]
        rgb, labels = read_image(image_path), read_label(label_path, self.lut)
        if rgb.shape[:2] != labels.shape:
            raise UserError(f"label {label_path} is {labels.shape[0]}x{labels.shape[1]} but its image "
                            f"{image_path} is {rgb.shape[0]}x{rgb.shape[1]}")
        if self.scale != 1.0:
            h, w = labels.shape
            size = (max(1, round(w * self.scale)), max(1, round(h * self.scale)))
            rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA if self.scale < 1 else cv2.INTER_LINEAR)
            labels = cv2.resize(labels, size, interpolation=cv2.INTER_NEAREST)
        return rgb, labels

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return to_tensors(*self.numpy_item(i))


def random_scale_crop(rgb: np.ndarray, labels: np.ndarray, size: tuple[int, int], scale: float,
                      rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Scale by `scale`, then take a random `size` crop (padding with black / IGNORE_INDEX where too small).

    One affine warp does scale, crop and pad together, so the cost follows the crop, not the image.
    """
    h, w = labels.shape
    ch, cw = size
    sh, sw = max(1, round(h * scale)), max(1, round(w * scale))
    y0 = int(rng.integers(min(0, sh - ch), max(0, sh - ch) + 1))
    x0 = int(rng.integers(min(0, sw - cw), max(0, sw - cw) + 1))
    fy, fx = h / sh, w / sw
    # output pixel (x, y) is pixel (x + x0, y + y0) of the scaled image, whose centre maps back to the source
    m = np.array([[fx, 0.0, (x0 + 0.5) * fx - 0.5], [0.0, fy, (y0 + 0.5) * fy - 0.5]], np.float64)
    flags = cv2.WARP_INVERSE_MAP
    img = cv2.warpAffine(rgb, m, (cw, ch), flags=cv2.INTER_LINEAR | flags, borderMode=cv2.BORDER_CONSTANT,
                         borderValue=(0, 0, 0))
    # nearest neighbour: the same centre mapping, rounded
    ys = np.clip(np.floor((np.arange(ch) + y0 + 0.5) * fy), -1, h).astype(np.int64)
    xs = np.clip(np.floor((np.arange(cw) + x0 + 0.5) * fx), -1, w).astype(np.int64)
    inside = ((ys >= 0) & (ys < h))[:, None] & ((xs >= 0) & (xs < w))[None, :]
    lab = labels[np.clip(ys, 0, h - 1)][:, np.clip(xs, 0, w - 1)]
    lab = np.where(inside, lab, IGNORE_INDEX).astype(np.uint8)
    return img, lab


class TrainCrops(Dataset):
    """Random scale and crop views of `images` at `size`, indexed by (image index, draw number).

    The scale is drawn uniformly from `scale_range` (Segmenter: 0.5 to 2 of the base resolution).
    Index with a `DrawKeys` sampler; the same key always gives the same view.
    """

    keyed = True

    def __init__(self, images: LabelledImages, size: tuple[int, int], scale_range: tuple[float, float] = (0.5, 2.0),
                 seed: int = 0):
        lo, hi = scale_range
        if not 0 < lo <= hi:
            raise UserError(f"scale range {lo},{hi} must satisfy 0 < MIN <= MAX")
        self.images, self.size, self.scale_range, self.seed = images, (int(size[0]), int(size[1])), (lo, hi), seed

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        i, draw = key
        rng = np.random.default_rng((self.seed, int(i), int(draw)))
        rgb, labels = self.images.numpy_item(int(i))
        scale = float(rng.uniform(*self.scale_range))
        return to_tensors(*random_scale_crop(rgb, labels, self.size, scale, rng))


class DrawKeys(Sampler[list[tuple[int, int]]]):
    """Turns a batch sampler's index lists into (index, draw) keys: draw = position in the whole run.

    `start` is the step the wrapped sampler starts at, so a resumed run numbers its draws as the
    first run did and gets the same crops.
    """

    def __init__(self, batches: Sampler[list[int]], start: int = 0):
        self.batches, self.start = batches, start

    def __len__(self) -> int:
        return len(self.batches)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for step, batch in enumerate(self.batches, start=self.start):
            yield [(i, step * len(batch) + j) for j, i in enumerate(batch)]
