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
from paumer_edge.core.names import (
    ACTIVE,
    BUFFERS,
    CACHE,
    CACHE_ROWS,
    CONTEXT,
    DECODER,
    DECODER_TILES,
    ENTROPY,
    EXIT_LOGP,
    EXITED,
    IMAGE,
    SCORES,
    TILES,
    TOKENS,
    TOKENS_OUT,
    reuse_stage_name,
)
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
    reused: list[int] = field(default_factory=list)  # temporal reuse: patches per stage kept from earlier frames
    frame_kind: str = ""  # temporal reuse: "reuse", "refresh", "full" or "held" (empty without reuse)

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


@dataclass
class ReuseInput:
    """What a temporal-reuse frame starts from (one image): the stream's token buffer and caches, the patches that
    run from stage 0, and the context each stage's active patches attend to (`context(k, active)` -> [1, m] int64
    patch positions, none of them active)."""

    tokens: Any  # [1, L, C] the buffer the last frame left (a backend handle)
    active: np.ndarray  # [1, n] int64 patches recomputed from stage 0, ascending
    caches: list[np.ndarray]  # per stage [1, 2 x blocks, heads, L, head_dim] float32 (`cache_shapes`): written in place
    context: Callable[[int, np.ndarray], np.ndarray]
    # the last frame's labels [1, H, W] and the patches [1, t] whose label tiles this frame redraws (`decodes_tiles`);
    # None: the whole decoder
    labels: np.ndarray | None = None
    tiles: np.ndarray | None = None


@dataclass
class ReuseOutput:
    out: StagedOutput
    tokens: Any  # the buffer after the last stage
    caches: list[np.ndarray]  # the input's caches, the rows that ran written in: what the next frame feeds back
    actives: list[np.ndarray]  # per stage that ran: its active patches [1, n_k]
    entropies: list[np.ndarray | None]  # per stage that ran: the entropies of its active patches (None: last stage)


class StagedRunner:
    """Sessions for stage0..stageS-1 and the decoder of one bundle on one backend, run with a token selector."""

    def __init__(self, bundle: Bundle, backend: Backend):
        self.bundle = bundle
        self.backend = backend
        self.stages: list[GraphSession] = [checked(backend.open(bundle, n), bundle, n) for n in bundle.stage_names]
        self.decoder = checked(backend.open(bundle, DECODER), bundle, DECODER)  # outputs checked every run
        self.reuse_stages: list[GraphSession] | None = None  # the temporal-reuse graphs, opened when first needed
        self.tile_decoder: GraphSession | None = None  # `decoder_tiles`, opened when first needed
        # whether a reuse frame can redraw only some label tiles: the bundle has `decoder_tiles` (a linear decoder)
        # and its decoder gives labels only (the tiles have no scores)
        self.decodes_tiles = DECODER_TILES in bundle.graphs and SCORES not in bundle.graphs[DECODER].output_names
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
        labels, scores = self._decode(tokens, stats, observe, self._exit_feeds(selector, b) if self.exits else None)
        stats.cost_fraction = selector.spent(stats.counts)
        return StagedOutput(labels, scores, None if smap is None else smap.reshape(b, rows, cols), stats)

    def _decode(self, tokens: Any, stats: StageStats, observe: Observer | None,
                exits: dict[str, Any] | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """The decoder on the final token buffer (and, for early-exit graphs, the exits): labels and (when the
        bundle has them) scores."""
        feeds = {TOKENS: tokens, **(exits or {})}
        t0 = time.perf_counter()
        result = self.decoder.run(feeds)
        stats.decoder_ms = (time.perf_counter() - t0) * 1000
        if observe is not None:
            observe(DECODER, feeds, result)
        return result[0], result[1] if len(result) > 1 else None

    @property
    def cache_shapes(self) -> list[tuple[int, ...]]:
        """Per stage, the shape of one image's temporal-reuse cache, [2 x blocks, heads, L, head_dim] (from the reuse
        graphs)."""
        return [tuple(int(d) for d in t.shape[1:]) for k in range(len(self.stages))
                for t in self.bundle.graphs[reuse_stage_name(k)].inputs if t.name == CACHE]

    def forward_reuse(self, images: np.ndarray, selector: TokenSelector, start: ReuseInput,
                      observe: Observer | None = None) -> ReuseOutput:
        """One frame through the temporal-reuse graphs (`stage<k>_reuse`): only `start.active` runs from stage 0, the
        selector pauses among them between stages (an empty selection skips the remaining stages), the rest of the
        buffer is kept. Each stage's graph returns the fresh keys and values of the rows that ran, written here into
        the caches (in place: a graph never copies a cache; `observe` sees a stage's cache before its rows are
        written, and must copy it to keep it). Returns the labels, the buffer and caches for the next frame, and what
        ran where."""
        check_model_input(images, self.bundle.model.input_size)
        if images.shape[0] != 1:
            raise PolicyError(f"temporal reuse runs one stream's frame at a time, not a batch of {images.shape[0]}")
        if self.reuse_stages is None:  # opened on first use: bundles and pipelines without reuse never pay for them
            self.reuse_stages = [checked(self.backend.open(self.bundle, n), self.bundle, n)
                                 for n in self.bundle.model.reuse_stage_names]
        stats = StageStats(budget=selector.budget, threshold=selector.threshold)
        tokens, active, caches = start.tokens, start.active, start.caches
        extra = np.arange(self.bundle.model.extra_tokens, dtype=np.int64)
        actives: list[np.ndarray] = []
        entropies: list[np.ndarray | None] = []
        entropy: np.ndarray | None = None
        for k, session in enumerate(self.reuse_stages):
            t0 = time.perf_counter()
            if k and entropy is not None and selector.needs_entropy:
                chosen = selector.select(k - 1, entropy)
                if chosen is not None:
                    active = np.take_along_axis(active, chosen, axis=1)
            if active.shape[1] == 0:  # nothing (left) to run: the remaining stages keep the buffer as it is
                stats.counts.append(0)
                stats.stage_ms.append(0.0)
                continue
            feeds = {TOKENS: tokens, ACTIVE: active, CONTEXT: start.context(k, active), CACHE: caches[k]}
            if k == 0:
                feeds[IMAGE] = images
            t1 = time.perf_counter()
            outs = session.run(feeds, (TOKENS_OUT,))
            t2 = time.perf_counter()
            if observe is not None:
                observe(self.bundle.model.reuse_stage_names[k], feeds, outs)
            named = dict(zip(session.output_names, outs))
            tokens, entropy = named[TOKENS_OUT], named.get(ENTROPY)
            if active.shape[1] == self.bundle.model.num_patches:  # every row ran (a refresh's first stage)
                caches[k][0] = named[CACHE_ROWS][0]
            else:
                caches[k][0][:, :, np.concatenate([extra, active[0] + extra.size])] = named[CACHE_ROWS][0]
            stats.policy_ms += (t1 - t0 + time.perf_counter() - t2) * 1000
            stats.stage_ms.append((t2 - t1) * 1000)
            stats.counts.append(active.shape[1])
            actives.append(active)
            entropies.append(entropy)
        if start.tiles is not None and start.labels is not None and self.decodes_tiles:
            labels, scores = self._decode_tiles(tokens, start.tiles, start.labels, stats, observe), None
        else:
            labels, scores = self._decode(tokens, stats, observe)
        stats.cost_fraction = selector.spent(stats.counts)
        return ReuseOutput(StagedOutput(labels, scores, None, stats), tokens, caches, actives, entropies)

    def _decode_tiles(self, tokens: Any, tiles: np.ndarray, labels: np.ndarray, stats: StageStats,
                      observe: Observer | None) -> np.ndarray:
        """The last frame's labels [1, H, W] with the tiles of the patches `tiles` [1, t] redrawn from the buffer."""
        if self.tile_decoder is None:
            self.tile_decoder = checked(self.backend.open(self.bundle, DECODER_TILES), self.bundle, DECODER_TILES)
        feeds = {TOKENS: tokens, TILES: tiles}
        t0 = time.perf_counter()
        result = self.tile_decoder.run(feeds)
        if observe is not None:
            observe(DECODER_TILES, feeds, result)
        rows, cols = self.bundle.model.grid
        p = self.bundle.model.patch_size
        out = labels.copy()
        out.reshape(rows, p, cols, p)[tiles[0] // cols, :, tiles[0] % cols, :] = result[0][0]
        stats.decoder_ms = (time.perf_counter() - t0) * 1000
        return out

    def _exit_feeds(self, selector: TokenSelector, b: int) -> dict[str, Any]:
        """The decoder's exit inputs: the selector's, or none exited (a pausing policy on early-exit graphs)."""
        exits = selector.exit_predictions()
        if exits is None:
            m = self.bundle.model
            exits = (np.zeros((b, m.num_patches, m.num_classes), np.float32), np.zeros((b, m.num_patches), np.float32))
        return {EXIT_LOGP: exits[0], EXITED: exits[1]}
