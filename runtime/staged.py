"""Run a bundle's staged graphs with the shared pausing policy between stages.

This is the orchestration at the heart of the runtime: stage 0 on every token, then at each pausing
point read the entropies, let the token selector (the shared policy) pick the active tokens, hand their
indices to the next stage, and finally decode. Every use of a bundle's staged graphs runs through here:
`Pipeline`, latency profiles, `verify`, INT8 calibration. The token buffer stays wherever the backend
keeps it (device memory on a GPU); the host touches only entropies (down) and indices (up).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from paumer_edge.core.errors import PolicyError
from paumer_edge.core.names import ACTIVE, BUFFERS, DECODER, EXIT_LOGP, EXITED, IMAGE, TOKENS
from paumer_edge.core.pausing import TokenSelector

from .backends.base import Backend, GraphSession
from .bundle import Bundle
from .output_check import checked
from .preprocess import check_model_input


@dataclass
class StageStats:
    """What one call cost: per-stage time and active patch tokens, the decoder, the policy."""

    stage_ms: list[float] = field(default_factory=list)
    counts: list[int] = field(default_factory=list)
    decoder_ms: float = 0.0
    policy_ms: float = 0.0
    budget: float = 1.0
    threshold: float | None = None
    cost_fraction: float = 1.0
    plan: str = ""  # the plan the budget picked (bundles with plans), e.g. "96x192 @0.55"

    @property
    def total_ms(self) -> float:
        return sum(self.stage_ms) + self.decoder_ms + self.policy_ms


@dataclass
class StagedOutput:
    labels: np.ndarray  # [B, H, W] at the model's input size
    scores: np.ndarray | None  # [B, K, H, W] when the decoder has them
    stage_map: np.ndarray | None  # [B, rows, cols] last stage each patch ran in (when asked for)
    stats: StageStats


Observer = Callable[[str, dict[str, Any], list[Any]], None]  # graph name, its feeds, its outputs


class StagedRunner:
    """Sessions for stage0..stageS-1 and the decoder of one bundle on one backend, run with a token selector."""

    def __init__(self, bundle: Bundle, backend: Backend):
        self.bundle = bundle
        self.backend = backend
        self.stages: list[GraphSession] = [checked(backend.open(bundle, n), bundle, n) for n in bundle.stage_names]
        self.decoder = checked(backend.open(bundle, DECODER), bundle, DECODER)  # outputs checked every run
        self._all = np.arange(bundle.model.num_patches, dtype=np.int64)[None]
        self._all.flags.writeable = False  # fed to every stage while nothing pauses
        # early-exit graph sets: the stages also emit their head's log-probabilities, the decoder takes the exits
        self.exits = EXITED in self.decoder.input_names

    def forward(self, images: np.ndarray, selector: TokenSelector, stage_map: bool = False,
                observe: Observer | None = None) -> StagedOutput:
        """Normalised images [B,3,H,W] float32 -> labels, optional scores and pause map, stats.

        `selector` chooses the active tokens between stages (a `Pauser` for a budget / threshold, with the
        cost model the budget is a fraction of). `observe(graph, feeds, outputs)` sees every graph run (INT8
        calibration records the feeds, `verify` compares the outputs); outputs kept on a device arrive as
        the backend's handles.
        """
        check_model_input(images, self.bundle.model.input_size)
        stats = StageStats(budget=selector.budget, threshold=selector.threshold)
        b = images.shape[0]
        rows, cols = self.bundle.model.grid
        smap = np.zeros((b, rows * cols), np.uint8) if stage_map else None
        feeds: dict[str, Any] = {IMAGE: images}
        t0 = time.perf_counter()
        outs = self.stages[0].run(feeds, BUFFERS)
        stats.stage_ms.append((time.perf_counter() - t0) * 1000)
        if observe is not None:
            observe(self.bundle.stage_names[0], feeds, outs)
        tokens, entropy = outs[0], (outs[1] if len(outs) > 1 else None)
        # the host work between stages runs on caches the stage just flushed: keep it to a few calls
        active = self._all if b == 1 else np.ascontiguousarray(np.broadcast_to(self._all, (b, self._all.shape[1])))
        stats.counts.append(active.shape[1])
        pausing = selector.needs_entropy
        if selector.wants_head_scores and not self.exits:
            raise PolicyError(f"{type(selector).__name__} needs graphs that emit their heads' predictions; this "
                              "graph set has none (export with `--peers dtop` and run its 'dtop' variant)")
        for k, session in enumerate(self.stages[1:], start=1):
            t0 = time.perf_counter()
            if pausing and entropy is not None:
                if self.exits:
                    selector.see_head(k - 1, active, outs[2])
                chosen = selector.select(k - 1, entropy)
                if chosen is not None:
                    active = np.take_along_axis(active, chosen, axis=1)
            if smap is not None:
                np.put_along_axis(smap, active, k, axis=1)
            feeds = {TOKENS: tokens, ACTIVE: active}
            t1 = time.perf_counter()
            outs = session.run(feeds, BUFFERS)
            t2 = time.perf_counter()
            stats.policy_ms += (t1 - t0) * 1000
            stats.stage_ms.append((t2 - t1) * 1000)
            stats.counts.append(active.shape[1])
            if observe is not None:
                observe(self.bundle.stage_names[k], feeds, outs)
            tokens, entropy = outs[0], (outs[1] if len(outs) > 1 else None)
        feeds = {TOKENS: tokens}
        if self.exits:
            feeds.update(self._exit_feeds(selector, b))
        t0 = time.perf_counter()
        result = self.decoder.run(feeds)
        stats.decoder_ms = (time.perf_counter() - t0) * 1000
        if observe is not None:
            observe(DECODER, feeds, result)
        stats.cost_fraction = selector.spent(stats.counts)
        return StagedOutput(result[0], result[1] if len(result) > 1 else None,
                            None if smap is None else smap.reshape(b, rows, cols), stats)

    def _exit_feeds(self, selector: TokenSelector, b: int) -> dict[str, Any]:
        """The decoder's exit inputs: the selector's, or none exited (a pausing policy on early-exit graphs)."""
        exits = selector.exit_predictions()
        if exits is None:
            m = self.bundle.model
            exits = (np.zeros((b, m.num_patches, m.num_classes), np.float32), np.zeros((b, m.num_patches), np.float32))
        return {EXIT_LOGP: exits[0], EXITED: exits[1]}
