"""The rules of temporal reuse (paumer_edge.core.temporal): change detection, pausing on a reuse frame, the schedule."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from paumer_edge.core.cost import CostModel
from paumer_edge.core.errors import PolicyError
from paumer_edge.core.pausing import Pauser, PausingPolicy
from paumer_edge.core.temporal import (
    FrameKind,
    ReuseOptions,
    ReuseSchedule,
    ReuseSelector,
    change,
    dilate,
    fresh_in_top,
    patch_signature,
)

COST = CostModel(embed_dim=32, mlp_ratio=4.0, num_patches=32, extra_tokens=1, stage_blocks=(1, 1, 1, 1),
                 num_classes=10, patch_size=8)


def test_signature_is_quarter_means_in_intensity_units() -> None:
    std = (0.5, 0.25, 0.5)
    img = np.zeros((3, 16, 24), np.float32)  # a 2x3 grid of 8-pixel patches
    img[1, 0:4, 8:12] = 2.0  # the top-left quarter of patch 1, green channel, +2 normalised = +0.5 intensity
    sig = patch_signature(img, 8, std)
    assert sig.shape == (6, 12) and sig.dtype == np.float32
    assert np.flatnonzero(sig.any(axis=1)).tolist() == [1]
    assert sig[1].tolist() == [0, 0, 0, 0, 0.5, 0, 0, 0, 0, 0, 0, 0]  # channel-major: R quarters, G quarters, B
    noisy = img + np.random.default_rng(0).normal(0, 0.02, img.shape).astype(np.float32)
    assert change(patch_signature(noisy, 8, std), sig).max() < 0.02  # means average sensor noise away
    assert patch_signature(np.zeros((3, 14, 21), np.float32), 7, std).shape == (6, 3)  # odd patch: whole-patch means


def test_camera_shift_reads_how_far_the_whole_picture_moved() -> None:
    from paumer_edge.core.temporal import PAN_SCALE, camera_shift, pan_scale, thumbnail

    rng = np.random.default_rng(0)
    texture = cv2.GaussianBlur(rng.normal(0, 1, (3, 160, 288)).astype(np.float32), (0, 0), 3)  # a textured floor
    std = (0.25, 0.25, 0.25)
    before = thumbnail(texture[:, :128, :256], std)
    assert pan_scale(128, 256) == PAN_SCALE == 4 and pan_scale(32, 64) == 1 and pan_scale(100, 64) == 2
    assert before.shape == (128 // PAN_SCALE, 256 // PAN_SCALE) and before.dtype == np.float32
    for dx, dy in ((8, 0), (0, 12), (6, 8)):  # the camera pans: the picture slides by (dx, dy) model pixels
        after = thumbnail(texture[:, dy : dy + 128, dx : dx + 256], std)
        assert camera_shift(before, after, 4) == pytest.approx(np.hypot(dx, dy), abs=1.0)
    still = texture[:, :128, :256] + rng.normal(0, 0.05, (3, 128, 256)).astype(np.float32)  # sensor noise
    assert camera_shift(before, thumbnail(still, std), 4) < 0.5
    moving_car = still.copy()
    moving_car[:, 40:70, 30:90] += 2.0  # something bright moves in a still picture: not the camera
    assert camera_shift(before, thumbnail(moving_car, std), 4) < 2.0
    other = thumbnail(rng.normal(0, 1, (3, 128, 256)).astype(np.float32), std)  # another scene: no clear peak
    assert camera_shift(before, other, 4) == 0.0
    assert camera_shift(before, before[:4, :4], 4) == 0.0  # sizes differ: nothing to read


def test_a_camera_that_pans_is_a_moving_camera_even_where_few_patches_changed() -> None:
    s = ReuseSchedule(ReuseOptions(refresh_every=20, pan=2.0))
    kinds = [s.next(f, shift) for f, shift in ((None, 0.0), (0.0, 0.5), (0.0, 0.5))]
    for k in kinds:
        s.done(k)
    assert [k.value for k in kinds] == ["full", "full", "refresh"]
    assert s.next(0.05, 1.5).value == "reuse"  # within the limit: a still camera's jitter
    assert s.next(0.05, 3.0).value == "full"  # a pan: the cache goes, as at a scene cut
    s.done(FrameKind.FULL)
    assert not s.valid and s.next(0.0, 3.0).value == "full" and s.calm == 0  # still panning: not calm
    off = ReuseSchedule(ReuseOptions(pan=0.0), valid=True)
    assert off.next(0.05, 50.0).value == "reuse"  # 0: off


def test_dilate_grows_the_mask_on_the_grid() -> None:
    mask = np.zeros(20, bool)
    mask[7] = True  # row 1, col 2 of a 4x5 grid
    grown = dilate(mask, (4, 5), 1).reshape(4, 5)
    assert np.flatnonzero(grown).tolist() == [1, 2, 3, 6, 7, 8, 11, 12, 13]
    assert dilate(mask, (4, 5), 0) is mask and dilate(mask, (4, 5), 3).all()


def test_fresh_patches_rank_against_the_cached_ones() -> None:
    cached = np.array([[0.9, 0.8, 0.1, 0.05]], np.float32)
    fresh = np.array([[0.85, 0.2, 0.01]], np.float32)
    assert fresh_in_top(fresh, cached, 3) == 1  # top 3 of both: 0.9, 0.85 (fresh), 0.8
    assert fresh_in_top(fresh, cached, 5) == 2 and fresh_in_top(fresh, cached, 1) == 0
    assert fresh_in_top(fresh, cached, 7) == 3 and fresh_in_top(fresh, cached, 0) == 0
    assert fresh_in_top(fresh, np.zeros((1, 0), np.float32), 2) == 2  # nothing cached: the quota applies to them
    assert fresh_in_top(np.array([[np.nan, 0.0]]), cached, 1) == 1  # NaN never pauses


def test_reuse_selector_keeps_the_whole_frames_budget_and_may_keep_none() -> None:
    base = Pauser(COST, PausingPolicy(0.5))
    plan = base.plan
    cached = [np.linspace(1, 0, plan.counts[k] - 2, dtype=np.float32)[None] for k in range(3)]
    sel = ReuseSelector(base, cached)
    assert sel.needs_entropy and sel.budget == 0.5
    assert sel.count(0, np.array([[2.0, 2.0]], np.float32)) == 2  # more uncertain than anything cached: both go on
    chosen = sel.select(1, np.array([[-1.0, -1.0]], np.float32))  # less than everything: none go on
    assert chosen is not None and chosen.shape == (1, 0)
    assert sel.select(0, np.array([[2.0, -1.0, 2.0]], np.float32)).tolist() == [[0, 2]]
    strict = ReuseSelector(Pauser(COST, PausingPolicy(1.0, threshold=0.5)), [np.zeros((1, 0))] * 3)
    assert strict.select(0, np.array([[0.1, 0.2]], np.float32)).shape == (1, 0)  # the threshold may keep none too
    assert ReuseSelector(Pauser(COST, PausingPolicy(1.0)), cached).select(0, np.zeros((1, 3))) is None

    ranked: list[int] = []  # the ranking against the cache is the policy's cost on a reuse frame: once per point

    class Counting(ReuseSelector):
        def count(self, point: int, entropy: np.ndarray) -> int:
            ranked.append(point)
            return super().count(point, entropy)

    assert Counting(base, cached).select(0, np.array([[2.0, -1.0, 2.0]], np.float32)).tolist() == [[0, 2]]
    assert ranked == [0]


def test_schedule_reuses_refreshes_and_turns_itself_off() -> None:
    s = ReuseSchedule(ReuseOptions(refresh_every=4, scene_cut=0.3, accumulated=0.6))

    def frames(*fractions: float | None, recomputed: np.ndarray | None = None) -> list[str]:
        kinds = []
        for f in fractions:
            kinds.append(s.next(f))
            s.done(kinds[-1], np.zeros(10, bool) if recomputed is None else recomputed)
        return [k.value for k in kinds]

    # a new stream runs in full until two frames in a row changed by at most half the cut: then a refresh
    assert frames(None, 0.1, 0.2, 0.1, 0.15) == ["full", "full", "full", "full", "refresh"]
    # the first interval is half as long (the first reading of the agreement comes sooner), then every 4
    assert frames(*[0.1] * 10) == ["reuse", "refresh"] + ["reuse"] * 3 + ["refresh"] + ["reuse"] * 3 + ["refresh"]
    assert frames(0.4) == ["full"] and not s.valid  # most patches changed: the camera moves, the cache goes
    assert frames(0.2, 0.1, 0.1) == ["full", "full", "refresh"]  # still again: hysteresis, then afresh
    assert frames(0.1, 0.1) == ["reuse", "refresh"]  # a new cache: half an interval again
    covered = np.zeros(10, bool)
    for i in range(2):
        covered[3 * i : 3 * i + 4] = True  # different patches change: 4, then 7 of 10 recomputed since the refresh
        assert frames(0.1, recomputed=covered.copy()) == ["reuse"]
    assert frames(0.0) == ["refresh"]  # the accumulated change is past 0.6
    s.hold(3)  # reuse could not hold a target agreement: per-frame processing for 3 frames, then as a new stream
    assert frames(0.0, 0.0, 0.0, 0.0, 0.0, 0.0) == ["held"] * 3 + ["full", "refresh", "reuse"]  # two calm frames


@pytest.mark.parametrize("kwargs, message", [
    ({"threshold": -0.1}, "change threshold -0.1 is out of range"),
    ({"threshold": "x"}, "change threshold 'x' is not a number"),
    ({"refresh_every": 0}, "refresh interval 0 is out of range: give a whole number of frames >= 1"),
    ({"refresh_every": 2.5}, "refresh interval 2.5 is not a whole number"),
    ({"scene_cut": 1.5}, "scene-cut fraction 1.5 is out of range"),
    ({"accumulated": float("nan")}, "accumulated-change fraction nan is out of range"),
    ({"context": "all"}, "attention context 'all' is not one of cached, changed"),
    ({"refresh_every": True}, "refresh interval True is not a whole number"),
    ({"halo": -1}, "halo -1 is out of range: give a whole number of patches from 0 to 8"),
    ({"unsure_every": -2}, r"unsure-patch interval -2 is out of range: give a whole number of frames \(0: off\)"),
    ({"unsure_every": 1.5}, "unsure-patch interval 1.5 is not a whole number"),
    ({"pan": -1}, r"camera-motion limit -1 is out of range: give pixels of the model input from 0 \(off\) to 1000"),
    ({"pan": "far"}, "camera-motion limit 'far' is not a number"),
])
def test_bad_options_say_what_is_wrong(kwargs: dict, message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        ReuseOptions(**kwargs)


def test_agreement_control_tightens_on_a_miss_and_eases_back_to_the_options() -> None:
    from paumer_edge.core.temporal import AgreementControl

    base = ReuseOptions(threshold=0.03, refresh_every=20, unsure_every=6, agreement=0.97)
    control = AgreementControl(base)
    assert control.measured(0.02) is base  # within the target: the options themselves, never looser
    tight = control.measured(0.0675)  # a miss of 2.25x what is allowed: stricter by its square root, 1.5x
    assert control.strictness == pytest.approx(1 / 1.5)
    assert (tight.threshold, tight.refresh_every, tight.unsure_every) == (pytest.approx(0.02), 13, 4)
    control.measured(0.0301)  # a hair over: a hair stricter
    assert control.strictness == pytest.approx((1 / 1.5) * (0.03 / 0.0301) ** 0.5)
    control.measured(0.03 / 4)  # well within: eases by at most 1 / STEP
    assert control.strictness == pytest.approx(min(1.0, (1 / 1.5) * (0.03 / 0.0301) ** 0.5 / AgreementControl.STEP))
    control.measured(0.5)  # a miss 17 times too large: the biggest step, 4x ...
    assert control.strictness == pytest.approx(0.952 * 0.25, abs=1e-3) and control.take_hold() == 0
    control.measured(0.5)  # ... then the floor; no hold on the way down
    assert control.strictness == AgreementControl.FLOOR and control.take_hold() == 0
    floor = control.current
    assert floor.refresh_every == 4 and floor.unsure_every == 1
    holds = []
    for _ in range(7):  # misses at the floor: per-frame processing for 20, 40, ... frames, at most 16 x 20
        control.measured(0.5)
        holds.append(control.take_hold())
    assert holds == [20, 40, 80, 160, 320, 320, 320] and control.take_hold() == 0  # each asked for once
    control.measured(0.03)  # met ...
    control.measured(0.5)
    assert control.take_hold() == 20 and control.strictness == AgreementControl.FLOOR  # ... so the holds start again
    for _ in range(20):  # well within the target: back to the options, no further
        eased = control.measured(0.0)
    assert eased == base and control.strictness == 1.0
    off = AgreementControl(ReuseOptions(agreement=None))
    assert off.measured(0.9) == off.options and off.strictness == 1.0  # no target: nothing moves


@pytest.mark.parametrize("value", [1.5, -0.1, "high"])
def test_a_bad_target_agreement_says_what_is_wrong(value: object) -> None:
    with pytest.raises(PolicyError, match="target agreement"):
        ReuseOptions(agreement=value)  # type: ignore[arg-type]
