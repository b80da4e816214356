"""Torch datasets over the street generator, with an on-disk cache so each picture is rendered once."""

from __future__ import annotations

import hashlib
import multiprocessing as mp
import os
import shutil

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from .. import UserError
from ..core.cache import cache_root
from .streets import derive_seed, street_scene

GENERATOR_VERSION = 1  # bump whenever rendering changes: old caches are then ignored
SPLIT_SEEDS = {"train": 0, "val": 1, "test": 2}


def _render_one(args: tuple[int, int, tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
    seed, i, size = args
    return street_scene(derive_seed(seed, i), size)


def render_split(seed: int, length: int, size: tuple[int, int], workers: int = 0,
                 progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Render items 0..length-1 of a split, cached on disk; returns memory-mapped (images, labels)."""
    key = hashlib.sha1(f"v{GENERATOR_VERSION}-{seed}-{length}-{size}".encode()).hexdigest()[:12]
    folder = cache_root() / "streets" / f"{size[0]}x{size[1]}-s{seed}-n{length}-{key}"
    if not (folder / "labels.npy").exists():
        tmp = folder.with_name(folder.name + f".partial-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        try:
            images = np.lib.format.open_memmap(tmp / "images.npy", "w+", np.uint8, (length, *size, 3))
            labels = np.lib.format.open_memmap(tmp / "labels.npy", "w+", np.uint8, (length, *size))
            jobs = [(seed, i, size) for i in range(length)]
            workers = workers or max(1, (os.cpu_count() or 1))
            bar = tqdm(total=length, desc=f"rendering streets {size[0]}x{size[1]} (seed {seed})",
                       disable=not progress, unit="img")
            if workers > 1 and length > 8:
                with mp.get_context("spawn").Pool(workers) as pool:
                    for i, (img, lab) in enumerate(pool.imap(_render_one, jobs, chunksize=8)):
                        images[i], labels[i] = img, lab
                        bar.update()
            else:
                for i, job in enumerate(jobs):
                    images[i], labels[i] = _render_one(job)
                    bar.update()
            bar.close()
            images.flush()
            labels.flush()
            del images, labels
            try:
                os.replace(tmp, folder)
            except OSError:  # another process finished the same cache first
                shutil.rmtree(tmp, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return np.load(folder / "images.npy", mmap_mode="r"), np.load(folder / "labels.npy", mmap_mode="r")


class StreetScenes(Dataset):
    """Synthetic labelled street scenes. Item i of a split is always the same picture.

    Returns (image float32 [3, H, W] in [0, 1], labels int64 [H, W]).
    """

    def __init__(self, size: tuple[int, int], length: int, split: str | int = "train", cache: bool = True,
                 workers: int = 0, progress: bool = True):
        if isinstance(split, str):
            if split not in SPLIT_SEEDS:
                raise UserError(f"unknown split '{split}'; use one of {', '.join(SPLIT_SEEDS)}")
            split = SPLIT_SEEDS[split]
        if length < 1:
            raise UserError(f"dataset length must be positive, got {length}")
        self.size: tuple[int, int] = (int(size[0]), int(size[1]))
        self.length, self.seed = int(length), int(split)
        self._arrays = render_split(self.seed, self.length, self.size, workers, progress) if cache else None

    def __len__(self) -> int:
        return self.length

    def numpy_item(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        if not 0 <= i < self.length:
            raise IndexError(i)
        if self._arrays is not None:
            return np.array(self._arrays[0][i]), np.array(self._arrays[1][i])
        return _render_one((self.seed, i, self.size))  # type: ignore[arg-type]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        img, lab = self.numpy_item(i)
        image = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).float().div_(255.0)
        return image, torch.from_numpy(lab.astype(np.int64))
