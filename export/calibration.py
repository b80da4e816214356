"""INT8 calibration data: what every graph of a bundle really sees, for the Q/DQ quantizer.

Stage k > 0 is calibrated on what it meets in deployment: the token buffers and active indices that the
staged pipeline (the runtime's `StagedRunner`, fp32 graphs on the CPU) produces from the calibration frames
at the budgets the bundle is tuned for, so activation ranges match what runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from paumer_edge import UserError
from paumer_edge.core.imread import imread
from paumer_edge.core.knobs import check_budget
from paumer_edge.core.names import stage_name
from paumer_edge.core.pausing import Pauser, PausingPolicy
from paumer_edge.runtime.backends import OrtBackend
from paumer_edge.runtime.bundle import Bundle
from paumer_edge.runtime.preprocess import resize_normalise, to_rgb_uint8
from paumer_edge.runtime.staged import StagedRunner

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
SYNTHETIC_SEED = 4242  # calibration scenes: never the seeds of the synthetic test or training sets
SYNTHETIC_NOTE = ("calibrating INT8 on synthetic street frames; frames from your own camera calibrate better "
                  "(--calib DIR)")


def folder_frames(folder: str | Path, count: int) -> list[np.ndarray]:
    """Up to `count` images of a folder (sorted by name) as RGB uint8 frames."""
    path = Path(folder)
    if not path.is_dir():
        raise UserError(f"calibration folder '{folder}' does not exist")
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)[:count]
    if not files:
        raise UserError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in calibration folder '{folder}'")
    frames = []
    for f in files:
        frame = imread(f)
        if frame is None:
            raise UserError(f"calibration image '{f}' cannot be read")
        frames.append(to_rgb_uint8(frame, bgr=frame.ndim == 3))
    return frames


def synthetic_frames(count: int, size: tuple[int, int], seed: int = SYNTHETIC_SEED) -> list[np.ndarray]:
    """`count` rendered street scenes at `size` (H, W), RGB uint8: calibration frames when the user has none."""
    from paumer_edge.data.streets import derive_seed, street_scene

    return [street_scene(derive_seed(seed, i), size)[0] for i in range(count)]


class CalibrationData:
    """The feeds of every graph of `bundle` (stages and decoder), recorded while its fp32 graphs run the frames at
    each budget with the shared pausing policy (MAC budgets: the same tokens on every device)."""

    def __init__(self, bundle: Bundle, frames: Sequence[np.ndarray], budgets: Sequence[float] = (1.0,),
                 progress: bool = False):
        if not frames:
            raise UserError("INT8 calibration needs at least one frame")
        self.budgets = tuple(sorted({check_budget(b) for b in budgets}, reverse=True))
        m = bundle.model
        self.inputs: dict[str, list[dict[str, np.ndarray]]] = {}
        runner = StagedRunner(bundle, OrtBackend())  # host copies of what each graph sees
        bar = tqdm(total=len(frames) * len(self.budgets), desc="recording calibration feeds", unit="run",
                   disable=not progress, leave=False)
        for frame in frames:
            x = resize_normalise(to_rgb_uint8(frame), m.input_size, m.mean, m.std)[None]
            for i, budget in enumerate(self.budgets):
                self._first = i == 0  # stage 0 sees the same image at every budget: record it once
                runner.forward(x, Pauser(bundle.cost, PausingPolicy(budget)), observe=self._add)
                bar.update()
        bar.close()

    def _add(self, graph: str, feeds: dict[str, Any], outputs: list[Any]) -> None:
        if graph == stage_name(0) and not self._first:
            return
        self.inputs.setdefault(graph, []).append({k: np.array(v, copy=True) for k, v in feeds.items()})
