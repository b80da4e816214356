"""Bundles with plans: the network at several input sizes and the measured joint front of size and pausing.

`export --plans` exports the extra sizes, then measures every size at a grid of pausing budgets on held-out
labelled frames through the runtime (`runtime.plan_calibration`) and writes the front into the manifest
before the bundle is swapped into place. Then one budget knob picks, at every cost, the best mix of input
resolution and pausing found (`core.plans`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from . import UserError
from .data.registry import build_dataset, parse_data_spec
from .runtime.bundle import load_bundle
from .runtime.plan_calibration import PAUSING_GRID, calibrate, write_plans

PLAN_SIZE_FRACTIONS = (7 / 8, 3 / 4, 5 / 8, 1 / 2)  # of the model's input size, for the default plan sizes
PLAN_IMAGES = 100


def default_plan_sizes(input_size: tuple[int, int], patch: int) -> tuple[tuple[int, int], ...]:
    """Smaller input sizes to plan over: 7/8, 3/4, 5/8 and 1/2 of the input, on whole patches."""
    out: list[tuple[int, int]] = []
    for f in PLAN_SIZE_FRACTIONS:
        size = (max(patch, round(input_size[0] * f / patch) * patch),
                max(patch, round(input_size[1] * f / patch) * patch))
        if size != tuple(input_size) and size not in out:
            out.append(size)
    return tuple(out)


def labelled_frames(data: str, split: str, count: int, frame_size: tuple[int, int],
                    progress: bool = True) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """`count` frames (RGB uint8) with their labels from a dataset split: synthetic scenes are rendered at
    `frame_size`, real images come at their own size (spread evenly over the split)."""
    if count < 1:
        raise UserError(f"give at least one image to measure on, not {count}")
    spec = parse_data_spec(data)
    ds = build_dataset(spec, split, frame_size, count, progress=progress)
    frames, labels = [], []
    for i in range(len(ds)):  # type: ignore[arg-type]
        image, label = ds[i]
        frames.append(np.ascontiguousarray((image.permute(1, 2, 0).numpy() * 255.0 + 0.5).astype(np.uint8)))
        labels.append(label.numpy().astype(np.uint8 if int(label.max()) < 256 else np.int32))
    return frames, labels


class PlanMeasurement:
    """`export_bundle(..., finalize=...)` (or a call on a finished bundle folder): measure its plans on held-out
    labelled frames and write them into its manifest.

    Synthetic frames default to twice the model's input size (the runtime resizes them, as it does a camera's).
    The split is `val` for synthetic data (`compare` scores `test`, so plans are never chosen on what they are
    judged on) and `train` for real data, whose only labelled held-out split is what `compare` scores."""

    def __init__(self, data: str = "synthetic", images: int = PLAN_IMAGES, frame_size: tuple[int, int] | None = None,
                 grid: Sequence[float] = PAUSING_GRID, backend: str = "auto", threads: int = 0, progress: bool = True):
        self.spec = parse_data_spec(data)
        self.split = "val" if self.spec.synthetic else "train"
        self.images, self.frame_size, self.grid = images, frame_size, tuple(grid)
        self.backend, self.threads, self.progress = backend, threads, progress

    def size_for(self, input_size: tuple[int, int]) -> tuple[int, int]:
        return self.frame_size or (2 * input_size[0], 2 * input_size[1])

    def describe(self, input_size: tuple[int, int]) -> str:
        """What the plans are measured on, as `Plans.data` records it."""
        size = self.size_for(input_size)
        return f"{self.spec} {self.split}" + (f", {size[0]}x{size[1]} frames" if self.spec.synthetic else "")

    def __call__(self, folder: Path) -> None:
        bundle = load_bundle(folder, check_hashes=False)
        if bundle.model.num_classes != self.spec.labels.num_classes:
            raise UserError(f"the model predicts {bundle.model.num_classes} classes but {self.spec.labels.name} has "
                            f"{self.spec.labels.num_classes}: measure plans on the data the model was trained for")
        frames, labels = labelled_frames(str(self.spec), self.split, self.images,
                                         self.size_for(bundle.model.input_size), self.progress)
        plans, _ = calibrate(bundle, frames, labels, self.describe(bundle.model.input_size), self.grid, self.backend,
                             self.threads, self.progress)
        write_plans(folder, plans)


def plan_finalizer(data: str = "synthetic", images: int = PLAN_IMAGES, frame_size: tuple[int, int] | None = None,
                   grid: Sequence[float] = PAUSING_GRID, backend: str = "auto", threads: int = 0,
                   progress: bool = True) -> Callable[[Path], None]:
    """The plan measurement as an `export_bundle` finalizer (see `PlanMeasurement`)."""
    return PlanMeasurement(data, images, frame_size, grid, backend, threads, progress)
