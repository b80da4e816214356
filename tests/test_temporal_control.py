"""Temporal reuse's agreement control in the runtime: readings of the drift, a stream's strictness, holds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from temporal_frames import scene, start

from paumer_edge.core.temporal import AgreementControl, ReuseOptions, change, patch_signature
from paumer_edge.runtime import Pipeline
from paumer_edge.runtime.temporal import StreamState, TemporalFrames


def at_its_strictest(pipe: Pipeline, stream: int = 0) -> StreamState:
    """The stream's state, its control at the floor and the stream's options scaled to it, as after many misses."""
    assert isinstance(pipe.tiler, TemporalFrames)
    state = pipe.tiler.streams.get(stream)
    state.control.strictness = AgreementControl.FLOOR
    state.schedule.options = state.control.current
    return state


@pytest.mark.parametrize("target", [None, 0.99])
def test_a_target_agreement_tightens_a_stream_whose_labels_drift(tiny_bundle: Path, target: float | None) -> None:
    options = ReuseOptions(refresh_every=3, unsure_every=0, uncertain=0.0, agreement=target)
    pipe = Pipeline(tiny_bundle, cost="macs", reuse=options)
    base = scene()
    start(pipe, base)
    dim = np.clip(base.astype(int) + 4, 0, 255).astype(np.uint8)  # 1.6%: below the threshold, yet labels move
    kinds = [pipe(dim).stats.frame_kind for _ in range(2)]
    assert kinds == ["reuse", "refresh"]  # (a new cache's first interval: 2) the refresh sees the labels reuse kept
    # differ from fresh ones
    assert isinstance(pipe.tiler, TemporalFrames)
    stream = pipe.tiler.streams.get(0).schedule.options
    if target is None:
        assert stream == options
    else:  # stricter for this stream (by at most the biggest step), the pipeline's options untouched
        strictness = pipe.tiler.streams.get(0).control.strictness
        assert AgreementControl.BIGGEST_STEP <= strictness < 1
        assert stream.threshold == pytest.approx(strictness * options.threshold) and stream.refresh_every == 2
        assert pipe.tiler.options == options
        assert pipe(dim).stats.frame_kind == "reuse" and pipe(dim).stats.frame_kind == "refresh"  # every 2 now


def test_a_strict_stream_recomputes_more_but_never_takes_a_still_camera_for_a_moving_one(tiny_bundle: Path) -> None:
    pipe = Pipeline(tiny_bundle, cost="macs", reuse=ReuseOptions(unsure_every=0))
    base = scene()
    start(pipe, base)
    assert isinstance(pipe.tiler, TemporalFrames)
    at_its_strictest(pipe)  # as after many missed targets: threshold 0.03 -> 0.006
    brighter = np.clip(base.astype(int) + 3, 0, 255).astype(np.uint8)  # 1.2%: changed for it, not for the pipeline
    out = pipe(brighter)
    assert out.stats.frame_kind == "reuse" and out.stats.counts[0] == 32  # every patch runs; no scene cut


def test_drift_counts_kept_patches_inside_the_picture(tiny_bundle: Path) -> None:
    from paumer_edge.runtime.preprocess import Placement

    pipe = Pipeline(tiny_bundle, cost="macs", reuse=True)
    assert isinstance(pipe.tiler, TemporalFrames)
    shown = np.zeros((1, 32, 64), np.uint8)
    fresh = shown.copy()
    fresh[0, :8, :8] = 1  # patch 0 (kept) changed its labels
    fresh[0, :8, 8:16] = 1  # patch 1, recomputed: not reuse's drift
    fresh[0, 24:, :] = 1  # the letterbox's padding: not the picture
    kept = np.ones(32, bool)
    kept[1] = False
    placement = Placement((48, 128), (32, 64), (0, 0, 24, 64))
    assert pipe.tiler._drift(shown, fresh, kept, placement) == pytest.approx(64 / (24 * 64))
    assert pipe.tiler._drift(shown, fresh, np.zeros(32, bool), placement) is None  # nothing kept: no reading

def checkered(frame: np.ndarray, amount: int = 12) -> np.ndarray:
    """The frame with +-`amount` in a checkerboard of 2x2-pixel cells (one pixel of the tiny model's input each):
    every quarter of every patch keeps its mean, so the change rule sees nothing at any strictness, yet the model's
    input moved. `frame` must lie in [amount, 255 - amount]."""
    yy, xx = np.indices(frame.shape[:2]) // 2
    sign = np.where((yy + xx) % 2 == 0, 1, -1)[..., None]
    return (frame.astype(int) + amount * sign).astype(np.uint8)


def test_a_stream_whose_labels_flicker_on_their_own_runs_per_frame_for_a_while(tiny_bundle: Path) -> None:
    options = ReuseOptions(refresh_every=3, unsure_every=0, uncertain=0.0, agreement=0.99)
    per, pipe = Pipeline(tiny_bundle, cost="macs"), Pipeline(tiny_bundle, cost="macs", reuse=options)
    base = np.clip(scene(), 12, 243).astype(np.uint8)
    flicker = checkered(base)
    assert (per(base).labels != per(flicker).labels).mean() > 0.01  # labels move where the change rule sees nothing
    assert isinstance(pipe.tiler, TemporalFrames)
    signature = [patch_signature(pipe.tiler.base.prepare(f, pipe.info)[0], pipe.info.patch_size, pipe.info.std)
                 for f in (base, flicker)]
    assert change(signature[1], signature[0]).max() < options.threshold * AgreementControl.FLOOR
    state = at_its_strictest(pipe)  # as after many missed targets: threshold 0.03 -> 0.006
    frames = [base, flicker] * 5
    outs = [pipe(f) for f in frames]
    # the second frame's labels moved where nothing changed: a miss at the floor, so 3 frames per-frame; then a
    # first frame as a new stream's reads the same, and the next hold is twice as long
    assert [o.stats.frame_kind for o in outs] == ["full", "full"] + ["held"] * 3 + ["full"] + ["held"] * 4
    assert state.schedule.held == 2 and state.tokens is None and state.caches is None  # no cache is kept meanwhile
    assert pipe.tiler.prepare(base, pipe.info, 0).signature is None  # nor is change read, but on a hold's last frame
    state.schedule.held = 1
    assert pipe.tiler.prepare(base, pipe.info, 0).signature is not None
    state.schedule.held = 2
    for frame, out in zip(frames, outs):
        assert np.array_equal(out.labels, per(frame).labels)  # held frames are per-frame processing
    assert pipe.tiler.options == options  # the pipeline's own options stay


def test_a_strict_stream_is_not_held_for_changes_its_own_threshold_recomputes(tiny_bundle: Path) -> None:
    """A change under the pipeline's threshold but over the stream's (strict) own: reuse recomputes those patches, so
    their labels are no drift, and the readings (two frames in full, the refresh) must not count them as kept."""
    options = ReuseOptions(refresh_every=3, unsure_every=0, uncertain=0.0, agreement=0.99)
    per, pipe = Pipeline(tiny_bundle, cost="macs"), Pipeline(tiny_bundle, cost="macs", reuse=options)
    base = scene()
    dim = np.clip(base.astype(int) + 4, 0, 255).astype(np.uint8)  # under the pipeline's threshold, over the floor's
    assert (per(base).labels != per(dim).labels).mean() > 0.01
    assert isinstance(pipe.tiler, TemporalFrames)
    state = at_its_strictest(pipe)  # as after many missed targets: threshold 0.03 -> 0.006
    assert state.schedule.options.threshold < options.threshold
    frames = [base, dim] * 5
    outs = [pipe(f) for f in frames]
    kinds = [o.stats.frame_kind for o in outs]
    assert "held" not in kinds and "reuse" in kinds
    for frame, out in zip(frames, outs):
        assert np.array_equal(out.labels, per(frame).labels)  # every patch recomputed: per-frame labels


def test_a_frame_prepared_during_a_hold_that_ended_meanwhile_reads_its_change(tiny_bundle: Path) -> None:
    """Two threads on one stream: a frame prepared while the stream was held (no signature) may reach the graphs
    after the hold ended and a cache was filled; it reads its change then instead of failing."""
    options = ReuseOptions(refresh_every=3, unsure_every=0, uncertain=0.0)
    pipe = Pipeline(tiny_bundle, cost="macs", reuse=options)
    assert isinstance(pipe.tiler, TemporalFrames)
    frame = scene()
    pipe.tiler.streams.get(0).schedule.hold(2)
    late = pipe.tiler.prepare(frame, pipe.info, 0)
    assert late.signature is None
    assert [pipe(frame).stats.frame_kind for _ in range(4)] == ["held", "held", "full", "refresh"]
    out = pipe.tiler.infer(pipe.runner, late, pipe._select(pipe.runner, 1.0, None, None), False)
    assert out.stats.frame_kind == "reuse" and late.signature is not None
