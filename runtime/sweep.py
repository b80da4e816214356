"""Accuracy and speed of many settings on the same labelled frames, through the runtime, in one interleaved run.

Every frame runs every setting once (batch 1), in an order that rotates from frame to frame, so a slow stretch
of a shared machine hits all settings alike; a setting's speed-up is the median over frames of the reference
setting's time on that frame over its own (the paired ratio). Accuracy is the mean IoU over all frames of
the labels each setting returns at the frame's size. Plan calibration (`runtime.plan_calibration`) and
`paumer-edge compare` both measure through here. numpy only.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from tqdm import tqdm

from paumer_edge.core.metrics import confusion_counts, scores

from .staged import StageStats

Run = Callable[[np.ndarray], tuple[np.ndarray, StageStats | None]]  # frame -> labels at its size, stats


@dataclass
class Setting:
    """One way to segment a frame: a method at one value of its knob."""

    name: str  # e.g. "pausing 0.5", "96x192", "ToMe r16"
    method: str  # the curve it belongs to
    knob: float  # the method's own knob (budget, input height, r, confidence, coarse blocks)
    run: Run


@dataclass
class SettingResult:
    name: str
    method: str
    knob: float
    miou: float
    pixel_acc: float
    iou: list[float | None]
    ms_p50: float
    ms_mean: float
    speedup: float  # paired: median over frames of reference ms / this setting's ms
    frames: int
    counts: list[float] = field(default_factory=list)  # mean active patch tokens per stage (staged settings)
    plans: dict[str, int] = field(default_factory=dict)  # plan label -> frames (settings on bundles with plans)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def sweep(settings: Sequence[Setting], frames: Sequence[np.ndarray], labels: Sequence[np.ndarray], num_classes: int,
          reference: int = 0, warmup: int = 2, progress: bool = True, desc: str = "measuring") -> list[SettingResult]:
    """Run every setting on every frame (interleaved, batch 1); accuracy and paired speed-up against
    `settings[reference]`."""
    if not settings or not frames or len(frames) != len(labels):
        raise ValueError("sweep needs settings and as many label maps as frames")
    n = len(settings)
    for i in range(min(warmup, len(frames))):
        for setting in settings:
            setting.run(frames[i])
    conf = np.zeros((n, num_classes, num_classes), np.int64)
    ms = np.zeros((len(frames), n))
    counts: list[list[list[int]]] = [[] for _ in settings]
    plans: list[Counter[str]] = [Counter() for _ in settings]
    bar = tqdm(total=len(frames), desc=desc, unit="frame", disable=not progress, leave=False)
    for f, (frame, truth) in enumerate(zip(frames, labels)):
        for j in range(n):
            s = (f + j) % n  # rotate the order from frame to frame
            t0 = time.perf_counter()
            pred, stats = settings[s].run(frame)
            ms[f, s] = (time.perf_counter() - t0) * 1000
            conf[s] += confusion_counts(pred, truth, num_classes)
            if stats is not None:
                counts[s].append(list(stats.counts))
                if stats.plan:
                    plans[s][stats.plan] += 1
        bar.update()
    bar.close()
    out = []
    for s, setting in enumerate(settings):
        iou, miou, acc = scores(conf[s])
        out.append(SettingResult(setting.name, setting.method, setting.knob, miou, acc,
                                 [None if np.isnan(v) else float(v) for v in iou], float(np.median(ms[:, s])),
                                 float(ms[:, s].mean()), float(np.median(ms[:, reference] / ms[:, s])), len(frames),
                                 np.mean(counts[s], axis=0).tolist() if counts[s] else [], dict(plans[s])))
    return out
