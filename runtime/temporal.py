"""Temporal reuse in the runtime: each stream's state, and the tiler that runs a frame with it. numpy only.

Per stream (a camera, a video: any hashable id) the state keeps what the last frames computed for every patch:
its row of the token buffer and its keys and values at every block (where the backend keeps them), the stage it
reached and its entropies at the pausing points, and the signature of its input when it was computed. A frame
runs the pipeline's one template:

1. prepare (caller's thread): the frame resized as always, its patch signatures and a shrunk copy (camera motion);
2. infer (under the pipeline's lock): the stream's schedule (`paumer_edge.core.temporal`) picks the frame's kind
   from how much changed. Reuse: the changed patches (and unsure ones past `unsure_every` frames) run through the
   reuse graphs, attending to the cached keys and values of the others, and pause by the budget as in a full
   frame; an unchanged patch that is sure costs nothing, and a frame where nothing ran runs no graph at all. Refresh:
   every patch, the cache starts afresh. Full: the plain per-frame graphs while the camera moves; held: the same,
   for a while, on a stream where reuse could not hold a target agreement;
3. finish (caller's thread): labels back to the frame, and the map of the patches that were reused.

States are kept for the `max_streams` most recently used streams (the oldest is dropped and starts again with a
refresh); they are only touched under the pipeline's lock, and the store's own lock guards its table.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

import numpy as np

from paumer_edge.core.contract import ModelInfo
from paumer_edge.core.pausing import Pauser, TokenSelector
from paumer_edge.core.temporal import (
    AgreementControl,
    FrameKind,
    ReuseOptions,
    ReuseSchedule,
    ReuseSelector,
    camera_shift,
    change,
    dilate,
    due_unsure,
    pan_scale,
    patch_signature,
    thumbnail,
    unsure_levels,
)

from .preprocess import Placement
from .staged import ReuseInput, ReuseOutput, StagedRunner, StageStats
from .tiling import Tiled, WholeFrame

DEFAULT_STREAM: Hashable = 0


@dataclass
class StreamState:
    """What one stream's frames have computed, per patch; `valid` (in the schedule) once a refresh filled it."""

    schedule: ReuseSchedule  # its options are the stream's own: the pipeline's, as `control` has scaled them
    control: AgreementControl
    previous: np.ndarray | None = None  # the last frame's signatures [N, D]: the change while there is no cache
    thumb: np.ndarray | None = None  # the last frame's `thumbnail`: how far the camera moved since
    reference: np.ndarray | None = None  # each patch's signature when it was last computed
    tokens: Any = None  # [1, L, C] the token buffer after the last frame (a backend handle)
    caches: list[np.ndarray] | None = None  # per stage [1, 2 x blocks, heads, L, head_dim]: every row's keys, values
    stage: np.ndarray | None = None  # [N] uint8: the last stage each patch ran in
    entropy: np.ndarray | None = None  # [S-1, N] float32: its entropy at each pausing point (NaN: not reached)
    labels: np.ndarray | None = None  # [1, H, W] the last frame's labels at the model's input size
    scores: np.ndarray | None = None
    age: np.ndarray | None = None  # [N] int32: frames since each patch was last computed

    def drop(self) -> None:
        """Forget the cache (the camera moved): its memory goes, the last signatures and labels stay (the next
        frame's reading of the agreement compares with them)."""
        self.tokens, self.caches, self.scores, self.age = None, None, None, None


@dataclass(frozen=True)
class PrivateStream:
    """A stream id of the runtime's own (warm-up frames): kept apart from the users' streams, it neither counts toward
    `max_streams` nor pushes one of them out, and `streams` does not list it."""

    name: Hashable


class StreamStore:
    """The states of the most recently used streams, by stream id; the least recently used beyond `max_streams`
    is dropped (it starts again with a refresh). Thread-safe."""

    def __init__(self, options: ReuseOptions, max_streams: int = 16):
        if max_streams < 1:
            raise ValueError("max_streams must be at least 1")
        self.options, self.max_streams = options, max_streams
        self._states: OrderedDict[Hashable, StreamState] = OrderedDict()
        self._private: dict[PrivateStream, StreamState] = {}
        self._lock = threading.Lock()

    def get(self, stream: Hashable) -> StreamState:
        with self._lock:
            if isinstance(stream, PrivateStream):
                return self._private.setdefault(stream, self._new())
            state = self._states.pop(stream, None) or self._new()
            self._states[stream] = state
            while len(self._states) > self.max_streams:
                self._states.popitem(last=False)
            return state

    def _new(self) -> StreamState:
        return StreamState(ReuseSchedule(self.options), AgreementControl(self.options))

    def reset(self, stream: Hashable | None = None) -> None:
        """Forget one stream (the next frame starts it afresh), or every stream."""
        with self._lock:
            if stream is None:
                self._states.clear()
                self._private.clear()
            elif isinstance(stream, PrivateStream):
                self._private.pop(stream, None)
            else:
                self._states.pop(stream, None)

    def held(self, stream: Hashable) -> int:
        """The frames the stream is still held to per-frame processing (0 for one not kept); touches nothing."""
        with self._lock:
            state = self._private.get(stream) if isinstance(stream, PrivateStream) else self._states.get(stream)
            return 0 if state is None else state.schedule.held

    @property
    def streams(self) -> list[Hashable]:
        with self._lock:
            return list(self._states)


@dataclass
class TemporalInput:
    image: np.ndarray  # [3, H, W] normalised
    placement: Placement
    signature: np.ndarray | None  # [N, D] per-patch signature (`patch_signature`); None within a hold
    stream: Hashable
    thumb: np.ndarray | None = None  # the picture shrunk (`thumbnail`), where `ReuseOptions.pan` is on


@dataclass
class TemporalOutput:
    labels: np.ndarray  # [1, H, W]
    scores: np.ndarray | None
    stage_map: np.ndarray | None  # [1, rows, cols]
    reused: np.ndarray | None  # [rows, cols] bool: patches kept from earlier frames (reuse frames only)
    stats: StageStats


class TemporalFrames:
    """A whole frame (as `WholeFrame`), reusing what the stream's earlier frames computed for unchanged patches."""

    def __init__(self, base: WholeFrame, info: ModelInfo, options: ReuseOptions, max_streams: int = 16):
        self.base, self.info, self.options = base, info, options
        self.streams = StreamStore(options, max_streams)
        self._zero_tokens = np.zeros((1, info.tokens, info.embed_dim), np.float32)
        self._zero_tokens.flags.writeable = False
        self._all = np.arange(info.num_patches, dtype=np.int64)[None]
        self._nothing = np.zeros((1, 0), np.int64)  # no context: the active patches see only each other
        self._nothing.flags.writeable = False
        self._pan_scale = pan_scale(*info.input_size)

    # ---- the tiler's three steps -----------------------------------------------------------------
    def prepare(self, frame: np.ndarray, info: ModelInfo, stream: Hashable = DEFAULT_STREAM) -> TemporalInput:
        image, placement = self.base.prepare(frame, info)
        prepared = TemporalInput(image, placement, None, stream)
        if self.streams.held(stream) <= 1:  # within a hold, frames but its last have no change to read
            self._read_input(prepared)
        return prepared

    def _read_input(self, prepared: TemporalInput) -> None:
        """What a frame's change is read from: its patch signatures and (where `pan` is on) its thumbnail."""
        prepared.signature = patch_signature(prepared.image, self.info.patch_size, self.info.std)
        prepared.thumb = thumbnail(prepared.image, self.info.std) if self.options.pan else None

    def infer(self, runner: StagedRunner, prepared: TemporalInput, selector: TokenSelector,
              stage_map: bool) -> TemporalOutput:
        if not isinstance(selector, Pauser):
            raise TypeError("temporal reuse runs the pipeline's budget / threshold policy (a Pauser)")
        state = self.streams.get(prepared.stream)
        if prepared.signature is None and state.schedule.held <= 1:
            self._read_input(prepared)  # the hold ended while the frame waited (another thread ran the stream's frames)
        unsure = self._unsure(state) if state.schedule.valid else None  # once a frame: the change and the due rule
        masks = self._changed(state, prepared.signature, unsure)
        fraction = None if masks is None else float(masks[0].mean())
        shift = 0.0
        if prepared.thumb is not None and state.thumb is not None and fraction is not None \
                and fraction <= self.options.scene_cut:  # past the cut the camera moves anyway
            shift = camera_shift(state.thumb, prepared.thumb, self._pan_scale)
        kind = state.schedule.next(fraction, shift)
        state.previous, state.thumb = prepared.signature, prepared.thumb
        if kind in (FrameKind.FULL, FrameKind.HELD):
            out = runner.forward(prepared.image[None], selector, stage_map=stage_map)
            state.drop()
            state.schedule.done(kind)
            calm = fraction is not None and fraction <= self.options.scene_cut / 2 and (
                not self.options.pan or shift <= self.options.pan / 2)  # labels move with a moving camera too
            if kind is FrameKind.FULL and state.labels is not None and masks is not None and calm \
                    and self.options.agreement is not None:
                # two calm frames in full: how far the labels of the patches reuse would keep (at the stream's
                # strictness) moved is what reuse would drift by
                self._read(state, self._drift(state.labels, out.labels, ~masks[1], prepared.placement))
            state.labels = out.labels
            out.stats.frame_kind = kind.value
            return TemporalOutput(out.labels, out.scores, out.stage_map, None, out.stats)
        if kind is FrameKind.REFRESH:
            return self._refresh(runner, prepared, selector, state, stage_map, None if masks is None else masks[1])
        assert masks is not None  # a stream's first frame runs in full
        due = self._due(state, unsure)  # not part of the change: neither a scene cut nor accumulated change
        return self._reuse(runner, prepared, selector, state, masks, stage_map, due)

    def finish(self, prepared: TemporalInput, inferred: TemporalOutput) -> Tiled:
        tiled = self.base.finish((prepared.image, prepared.placement), inferred)
        tiled.reused = inferred.reused
        return tiled

    # ---- the kinds of frame ----------------------------------------------------------------------
    def _changed(self, state: StreamState, signature: np.ndarray | None,
                 unsure: np.ndarray | None) -> tuple[np.ndarray, np.ndarray] | None:
        """([N] bool, [N] bool): the patches that changed since they were computed (since the previous frame while
        there is no cache) by the pipeline's threshold, which decides scene cuts and accumulated change, and by the
        stream's own, which decides what runs and so which patches a reading of the drift counts as kept (tighter
        while it misses a target agreement: a stricter stream recomputes more, it never takes a still camera for a
        moving one). None for a stream's first frame."""
        against = state.reference if state.schedule.valid else state.previous
        if against is None or signature is None:
            return None
        moved = change(signature, against)
        scale: float | np.ndarray = 1.0
        if state.schedule.valid and self.options.uncertain and unsure is not None:
            scale = 1.0 - self.options.uncertain * unsure
        grid, halo = self.info.grid, self.options.halo
        base = dilate(moved > self.options.threshold * scale, grid, halo)
        own = state.schedule.options.threshold
        if own >= self.options.threshold:
            return base, base
        return base, dilate(moved > own * scale, grid, halo) | base

    def _due(self, state: StreamState, unsure: np.ndarray | None) -> np.ndarray | None:
        """[N] bool: the unsure patches old enough to be recomputed though unchanged (`ReuseOptions.unsure_every`);
        None when there are none to check."""
        every = state.schedule.options.unsure_every
        if not every or state.age is None or unsure is None:
            return None
        return due_unsure(state.age, unsure, every)

    @staticmethod
    def _unsure(state: StreamState) -> np.ndarray | None:
        """[N] each patch's normalised entropy at the last pausing point it reached (`unsure_levels`)."""
        return None if state.entropy is None or state.stage is None else unsure_levels(state.entropy, state.stage)

    def _refresh(self, runner: StagedRunner, prepared: TemporalInput, selector: Pauser, state: StreamState,
                 stage_map: bool, changed: np.ndarray | None = None) -> TemporalOutput:
        """Every patch through the reuse graphs with the per-frame policy: the stream's cache starts afresh (a row
        is read again only once a later frame computed it or this one did). With a target agreement, what the
        fresh labels say of the ones reuse was showing sets the stream's options until the next refresh."""
        caches = state.caches or [np.zeros((1, *shape), np.float32) for shape in runner.cache_shapes]
        run = runner.forward_reuse(prepared.image[None], selector, ReuseInput(
            self._zero_tokens, self._all, caches, lambda k, active: self._nothing))
        n, points = self.info.num_patches, self.info.num_stages - 1
        state.stage = np.zeros(n, np.uint8)
        state.entropy = np.full((points, n), np.nan, np.float32)
        assert prepared.signature is not None  # a refresh follows calm frames, whose change was read
        state.reference = prepared.signature.copy()  # updated in place by later frames
        drift = None
        if self.options.agreement is not None and state.labels is not None and changed is not None:
            # the patches whose input did not change since the last frame, those recomputed on it too: they were
            # computed among cached neighbours, and per-frame processing's own flicker is in the agreement as well
            drift = self._drift(state.labels, run.out.labels, ~changed, prepared.placement)
        state.age = np.zeros(n, np.int32)
        self._keep(state, run)
        state.schedule.done(FrameKind.REFRESH)
        self._read(state, drift)
        return self._output(run, state, FrameKind.REFRESH, None, [0] * self.info.num_stages, stage_map)

    @staticmethod
    def _read(state: StreamState, drift: float | None) -> None:
        """A reading of how far reuse drifts (None: none): the stream's options follow it (`AgreementControl`), and
        where reuse cannot hold the target even at its strictest, the stream runs per-frame for a while."""
        if drift is None:
            return
        state.schedule.options = state.control.measured(drift)
        hold = state.control.take_hold()
        if hold:
            state.schedule.hold(hold)
            state.drop()

    def _reuse(self, runner: StagedRunner, prepared: TemporalInput, selector: Pauser, state: StreamState,
               masks: tuple[np.ndarray, np.ndarray], stage_map: bool, due: np.ndarray | None = None) -> TemporalOutput:
        """The changed patches (by the stream's threshold, `masks[1]`; and the `due` unsure ones) run; the others keep
        their rows, keys and values, stage and entropies. The accumulated change counts `masks[0]`, the pipeline's."""
        assert state.stage is not None and state.entropy is not None and state.reference is not None
        assert state.caches is not None  # a reuse frame follows a refresh
        changed, run_now = masks[0], masks[1] if due is None else masks[1] | due
        kept = ~run_now
        reached = [kept & (state.stage >= k) for k in range(self.info.num_stages)]  # reused rows at each stage
        reused = [int(r.sum()) for r in reached]
        idx = np.flatnonzero(run_now)
        if idx.size == 0:  # nothing changed: the last frame's labels stand, no graph runs
            self._age(state, idx)
            stats = StageStats(budget=selector.budget, threshold=selector.threshold, stage_ms=[0.0] * len(reused),
                               counts=[0] * len(reused), cost_fraction=0.0, reused=reused,
                               frame_kind=FrameKind.REUSE.value)
            state.schedule.done(FrameKind.REUSE, changed)
            assert state.labels is not None
            smap = state.stage.reshape(1, *self.info.grid) if stage_map else None
            return TemporalOutput(state.labels, state.scores, smap, kept.reshape(self.info.grid), stats)
        cached = [state.entropy[k][reached[k]][None] for k in range(self.info.num_stages - 1)]
        contexts = [np.flatnonzero(r)[None] for r in reached] if self.options.context == "cached" else None

        def context(k: int, active: np.ndarray) -> np.ndarray:
            return self._nothing if contexts is None else contexts[k]

        tiles = None
        if runner.decodes_tiles:  # a tile's labels follow the buffer at its patch and the 8 around it
            tiles = np.flatnonzero(dilate(run_now, self.info.grid, 1)).astype(np.int64)[None]
        run = runner.forward_reuse(prepared.image[None], ReuseSelector(selector, cached),
                                   ReuseInput(state.tokens, idx[None].astype(np.int64), state.caches, context,
                                              state.labels, tiles))
        state.stage[idx] = 0
        state.entropy[:, idx] = np.nan
        assert prepared.signature is not None
        state.reference[idx] = prepared.signature[idx]
        self._age(state, idx)
        self._keep(state, run)
        state.schedule.done(FrameKind.REUSE, changed)
        return self._output(run, state, FrameKind.REUSE, kept.reshape(self.info.grid), reused, stage_map)

    def _drift(self, shown: np.ndarray, fresh: np.ndarray, kept: np.ndarray, placement: Placement) -> float | None:
        """The share of the frame's pixels (the letterbox's padding left out) in kept patches (`kept` [N] bool)
        whose label the fresh frame changed: how far reuse had drifted from per-frame processing by the end of the
        interval. Labels [1, H, W] at the model's input size. None when no patch was kept."""
        if not kept.any():
            return None
        p = self.info.patch_size
        pixels = np.repeat(np.repeat(kept.reshape(self.info.grid), p, axis=0), p, axis=1)
        h, w = pixels.shape
        y0, x0, y1, x1 = placement.content
        inside = np.zeros((h, w), bool)
        inside[y0:y1, x0:x1] = True
        differ = (shown[0, :h, :w] != fresh[0, :h, :w]) & pixels & inside
        return float(differ.sum() / max(1, int(inside.sum())))

    # ---- state bookkeeping -----------------------------------------------------------------------
    @staticmethod
    def _age(state: StreamState, computed: np.ndarray) -> None:
        """A frame went by: every patch is a frame older, the `computed` ones (indices) new (after their run)."""
        if state.age is not None:
            state.age += 1
            state.age[computed] = 0

    def _keep(self, state: StreamState, run: ReuseOutput) -> None:
        """What the run computed becomes the stream's state: buffer, caches, stages and entropies reached."""
        assert state.stage is not None and state.entropy is not None
        state.tokens, state.caches = run.tokens, run.caches
        for k, (active, entropy) in enumerate(zip(run.actives, run.entropies)):
            state.stage[active[0]] = k
            if entropy is not None:
                state.entropy[k, active[0]] = entropy[0]
        state.labels, state.scores = run.out.labels, run.out.scores

    def _output(self, run: ReuseOutput, state: StreamState, kind: FrameKind, reused_map: np.ndarray | None,
                reused: list[int], stage_map: bool) -> TemporalOutput:
        stats = run.out.stats
        stats.reused, stats.frame_kind = reused, kind.value
        smap = state.stage.reshape(1, *self.info.grid) if stage_map and state.stage is not None else None
        return TemporalOutput(run.out.labels, run.out.scores, smap, reused_map, stats)
