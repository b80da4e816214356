"""How a frame becomes the model's input and the graphs' outputs become a frame's result: the part of the
per-frame work that differs between a whole frame resized to the model and sliding windows.

A tiler has three steps, so `Pipeline` can run the middle one alone under its lock:
`prepare` (pre-processing, in the caller's thread), `infer` (the staged graphs, serialised), `finish`
(post-processing, in the caller's thread).
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from paumer_edge.core.contract import ModelInfo
from paumer_edge.core.pausing import TokenSelector

from .preprocess import Placement, labels_to_frame, preprocess
from .staged import StagedRunner, StageStats


@dataclass
class Tiled:
    """A frame's outputs, back at the frame: what `Pipeline` turns into a `Result`."""

    labels: np.ndarray  # [H, W] at the frame's size
    stats: StageStats
    placement: Placement
    scores: np.ndarray | None  # [K, h, w] class probabilities at the size the model ran at
    stage_map: np.ndarray | None  # the last encoder stage each patch ran in (grid, or pixels for windows)
    reused: np.ndarray | None = None  # [rows, cols] bool: patches kept from earlier frames (temporal reuse)


class Tiler(Protocol):
    def prepare(self, frame: np.ndarray, info: ModelInfo, stream: Hashable = 0) -> Any:
        """Pre-processing: the frame -> whatever `infer` needs (runs in the caller's thread). `stream`: which of the
        caller's streams the frame belongs to (stateful tilers keep state per stream; the others ignore it)."""
        ...

    def infer(self, runner: StagedRunner, prepared: Any, selector: TokenSelector, stage_map: bool) -> Any:
        """The staged graphs on the prepared input (serialised by the pipeline's lock)."""
        ...

    def finish(self, prepared: Any, inferred: Any) -> Tiled:
        """Post-processing: the graphs' outputs -> the frame's result (runs in the caller's thread)."""
        ...


@dataclass(frozen=True)
class WholeFrame:
    """The frame resized (or letterboxed) to the model's input: one forward per frame."""

    letterbox: bool = False
    bgr: bool = False

    def prepare(self, frame: np.ndarray, info: ModelInfo, stream: Hashable = 0) -> tuple[np.ndarray, Placement]:
        return preprocess(frame, info.input_size, info.mean, info.std, self.letterbox, self.bgr)

    def infer(self, runner: StagedRunner, prepared: tuple[np.ndarray, Placement], selector: TokenSelector,
              stage_map: bool) -> Any:
        return runner.forward(prepared[0][None], selector, stage_map=stage_map)

    def finish(self, prepared: tuple[np.ndarray, Placement], inferred: Any) -> Tiled:
        placement = prepared[1]
        return Tiled(labels_to_frame(inferred.labels[0], placement), inferred.stats, placement,
                     None if inferred.scores is None else inferred.scores[0],
                     None if inferred.stage_map is None else inferred.stage_map[0])
