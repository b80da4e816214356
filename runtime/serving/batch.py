"""Run the frames of a server batch on one Pipeline: grouped by plan, one staged forward per group.

Frames at the same budget (and no threshold) go through the stages together; the per-row token
selection of the shared pausing policy keeps every frame's tokens its own. A threshold is per frame
(in a batch every frame would keep what its most uncertain batch-mate needs), so those frames run
alone. At batch 1 this is exactly `Pipeline.__call__`'s path: the same pre-processing, forward and
label mapping, so served labels equal the in-process ones.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from paumer_edge.core.pausing import CostModel, Pauser, PausingPolicy

from ..bundle import ModelInfo
from ..preprocess import labels_to_frame, preprocess
from ..staged import StagedRunner
from .protocol import FrameJob, plan_key


class Segmenter(Protocol):
    """What a batch runs on: a `Pipeline`, or the BLS model's runner over Triton's graph models."""

    @property
    def info(self) -> ModelInfo: ...

    letterbox: bool
    runner: StagedRunner

    @property
    def cost(self) -> CostModel: ...


@dataclass
class FrameOutput:
    labels: np.ndarray  # uint8 [H, W] at the frame's size
    counts: list[int]  # active patch tokens per stage
    stage_ms: list[float]  # per encoder stage, for the whole group the frame ran in
    cost: float  # fraction of the full encoder's compute spent


def segment_group(pipe: Segmenter, frames: list[np.ndarray], policy: PausingPolicy) -> list[FrameOutput]:
    """RGB uint8 frames (any sizes) -> labels at each frame's size, through one batched staged forward."""
    m = pipe.info
    inputs, placements = [], []
    for frame in frames:
        x, placement = preprocess(frame, m.input_size, m.mean, m.std, pipe.letterbox)
        inputs.append(x)
        placements.append(placement)
    out = pipe.runner.forward(np.stack(inputs), Pauser(pipe.cost, policy))
    s = out.stats
    labels = out.labels.astype(np.uint8, copy=False)
    return [FrameOutput(labels_to_frame(labels[i], p), list(s.counts), list(s.stage_ms), s.cost_fraction)
            for i, p in enumerate(placements)]


def run_jobs(pipe: Segmenter, jobs: list[FrameJob], budget: float, threshold: float | None) -> list[FrameOutput]:
    """Every job's output, in order; `budget` / `threshold` are the server's defaults for jobs without their own."""
    groups: dict[tuple[float, float | None], list[int]] = defaultdict(list)
    for i, job in enumerate(jobs):
        groups[plan_key(job, budget, threshold)].append(i)
    outputs: list[FrameOutput | None] = [None] * len(jobs)
    for (b, thr), members in groups.items():
        chunks = [members] if thr is None else [[i] for i in members]
        for chunk in chunks:
            for i, out in zip(chunk, segment_group(pipe, [jobs[i].frame for i in chunk], PausingPolicy(b, thr))):
                outputs[i] = out
    return [o for o in outputs if o is not None]
