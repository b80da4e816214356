"""Pausing through time: the rules of temporal reuse across video frames, torch-free.

A patch whose input changed less than a threshold since it was last computed keeps what it computed then
(its rows of the token buffer, its keys and values, the stage it reached, its entropies); the changed patches
run, attending to the cached keys and values of the others. These are the rules the runtime's per-stream state
(`paumer_edge.runtime.temporal`) follows, kept here beside the pausing policy so they have one source:

- `ReuseOptions`: the knobs (change threshold, refresh interval, scene-cut and accumulated-change limits, the
  attention context of the recomputed patches, how often unsure patches are recomputed though unchanged);
- `patch_signature` / `change` / `due_unsure`: a cheap per-patch signature of the model input, the change rule, and
  which unsure patches are recomputed anyway; `thumbnail` / `camera_shift`: how far the whole picture moved;
- `ReuseSelector`: the pausing policy on a frame that reuses the unchanged patches (a `TokenSelector`);
- `ReuseSchedule`: what kind of frame comes next (reuse, a full refresh that restarts the cache, or the plain
  per-frame graphs while the camera moves), the drift control.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from enum import Enum
from functools import lru_cache

import cv2
import numpy as np

from .errors import PolicyError
from .knobs import check_change_threshold, check_count, check_fraction, check_number, check_refresh_every
from .pausing import Pauser, TokenSelector, select_tokens, threshold_count

CONTEXTS = ("cached", "changed")
UNSURE = 0.3  # normalised entropy above which a patch counts as unsure for `ReuseOptions.unsure_every`
PAN_SCALE = 4  # `camera_shift` compares the model input shrunk up to this many times (short side >= 32): 0.05 ms
PAN_RESPONSE = 0.1  # under this phase-correlation peak the picture has no shift to read (flat, or changed throughout)


@dataclass(frozen=True)
class ReuseOptions:
    """The knobs of temporal reuse.

    threshold: a patch changed when some 4x4 quarter of it (at the model's input size) moved by more than this in
        mean intensity (0-1, per channel) since its last computation; sensor noise and codec flicker stay below.
    refresh_every: a full refresh every this many frames bounds the drift of the reused patches.
    scene_cut: when more than this fraction of the patches changed, the frame runs in full with the plain graphs
        and reuse waits for the camera to be still again (a moving camera, a scene cut). A still street camera sees
        at most about a fifth of its patches change, a driving one a fifth to a half from one frame to the next.
    accumulated: a full refresh once the patches recomputed since the last one cover this fraction of the frame
        (the context the reused patches were computed in has changed too much).
    context: what a recomputed patch attends to: "cached" (its fresh neighbours and the cached keys and values of
        every other patch still active at that stage, as Eventful Transformers do) or "changed" (only the other
        recomputed patches; cheaper, less accurate: see the README's measurements).
    pan: a camera that moved as a whole by more than this many pixels of the model input since the previous frame
        (phase correlation of the two pictures, as video stabilisers measure it) counts as moving, as a scene cut
        does: a slow pan or turn over a uniform floor, wall or road changes few patch signatures, yet every label
        moves with it. 0: off.
    halo: also recompute the patches within this many patches of a changed one.
    uncertain: an unsure patch (normalised entropy h at the last pausing point it reached) counts as changed from
        threshold x (1 - uncertain x h): a patch that did not change *and* was confident needs no work at all,
        an unsure one is recomputed on smaller changes (it is where labels flip).
    unsure_every: an unsure patch (h above `UNSURE`) is also recomputed once it is this many frames old (0: never),
        between refreshes. Where per-frame processing and reuse disagree is mostly such patches (about a sixth of a
        still street, three quarters of the differing pixels), by about as much as per-frame processing's own labels
        there moved since the patch was computed (noise and the light's drift, below the change threshold:
        benchmarks/reuse_disagreement.py); recomputing them more often follows that (README: what it costs).
    agreement: a target share of pixels labelled as per-frame processing would (None: off). Each refresh reads how
        far reuse had drifted: the share of the frame's pixels, in patches whose input did not change, whose label
        the fresh frame changed (the end of the interval: the worst of it). Per stream, the change threshold and the
        unsure and refresh intervals tighten while that misses the target and ease back toward these settings while
        it is met (`AgreementControl`): on content whose labels move under small changes, reuse recomputes more
        instead of drifting from per-frame processing. Two frames processed in full in a row (a
        stream's start, a moving camera) give the same reading for free: how far the labels of the patches that did
        not change moved between them. Where even the strictest settings miss the target (labels that flicker on
        their own), the stream runs per-frame for a while and then tries again. Scene cuts and accumulated change
        are still judged by `threshold` itself.
    """

    threshold: float = 0.03
    refresh_every: int = 20
    scene_cut: float = 0.3
    accumulated: float = 0.6
    pan: float = 2.0
    context: str = "cached"
    halo: int = 0
    uncertain: float = 0.5
    unsure_every: int = 6
    agreement: float | None = 0.98

    def __post_init__(self) -> None:
        object.__setattr__(self, "threshold", check_change_threshold(self.threshold))
        object.__setattr__(self, "refresh_every", check_refresh_every(self.refresh_every))
        check_fraction(self.scene_cut, "scene-cut fraction")
        check_fraction(self.accumulated, "accumulated-change fraction")
        object.__setattr__(self, "pan", check_number(self.pan, "camera-motion limit",
                                                     "pixels of the model input from 0 (off) to 1000, e.g. 2", 0, 1000))
        if self.context not in CONTEXTS:
            raise PolicyError(f"attention context '{self.context}' is not one of {', '.join(CONTEXTS)}")
        check_fraction(self.uncertain, "uncertainty scaling")
        check_count(self.halo, "halo", 0, 8, what="a whole number of patches from 0 to 8")
        object.__setattr__(self, "unsure_every", check_count(
            self.unsure_every, "unsure-patch interval", 0, 100_000, what="a whole number of frames (0: off)"))
        if self.agreement is not None:
            object.__setattr__(self, "agreement", check_fraction(self.agreement, "target agreement"))


@dataclass
class AgreementControl:
    """Holds a stream's labels near per-frame processing's (`ReuseOptions.agreement`): a strictness in
    [`FLOOR`, 1] scales the change threshold and the unsure and refresh intervals down from the options' values.

    `measured(disagreement)` takes a reading (the share of the frame's pixels, in patches that were kept, whose label
    fresh processing changed: at a refresh, or between two frames processed in full) and returns the options the
    stream runs with until the next one: the strictness moves by the square root of the allowed disagreement over
    the measured one (a miss 4x too large: twice as strict), by at most `BIGGEST_STEP` down and `1 / STEP` up, and
    never looser than the options themselves. No dead band: a stream that recovered does not stay strict.

    A miss at the floor means reuse cannot hold the target on this content (labels that flicker on their own, as an
    unsure model's do on footage unlike its training data): `hold` then asks for frames of per-frame processing,
    `refresh_every` x 1, 2, 4, ... up to `HOLD_MAX` times that while the misses go on; a met target starts again at 1.
    """

    options: ReuseOptions
    strictness: float = 1.0
    hold: int = 0  # frames of per-frame processing the last reading asked for (taken by `take_hold`)
    holds: int = 0  # holds since the target was last met

    FLOOR = 0.2  # at most 5x stricter: threshold 0.006, refresh every 4 frames (of 20), unsure every 1 (of 6)
    STEP = 0.7  # easing: at most 1 / STEP looser per reading
    BIGGEST_STEP = 0.25  # at most 4x stricter per reading
    HOLD_MAX = 16

    def measured(self, disagreement: float) -> ReuseOptions:
        target = self.options.agreement
        if target is None:
            return self.options
        allowed = 1.0 - target
        if disagreement > allowed and self.strictness <= self.FLOOR + 1e-9:
            self.hold = self.options.refresh_every * min(self.HOLD_MAX, 2 ** self.holds)
            self.holds += 1
        elif disagreement <= allowed:
            self.holds = 0
        step = (allowed / disagreement) ** 0.5 if disagreement > 0 else np.inf
        step = min(1 / self.STEP, max(self.BIGGEST_STEP, step))
        self.strictness = min(1.0, max(self.FLOOR, self.strictness * step))
        return self.current

    def take_hold(self) -> int:
        """The frames of per-frame processing the last reading asked for (0: none); asked once."""
        hold, self.hold = self.hold, 0
        return hold

    @property
    def current(self) -> ReuseOptions:
        """The options scaled by the strictness."""
        o, s = self.options, self.strictness
        if s >= 1.0:
            return o
        refresh = min(o.refresh_every, max(2, round(o.refresh_every * s)))  # never looser than the options
        return replace(o, threshold=o.threshold * s, refresh_every=refresh,
                       unsure_every=max(1, round(o.unsure_every * s)) if o.unsure_every else 0)


# ---------------------------------------------------------------------------------------------
# What changed
# ---------------------------------------------------------------------------------------------
def patch_signature(image: np.ndarray, patch: int, std: Sequence[float]) -> np.ndarray:
    """A normalised model input [3, H, W] -> per patch the mean intensity of each channel in each quarter of the
    patch (halves of its sides; the whole patch when its side is odd), in [0, 1] units: [N, 3 * 4] float32.

    Quarters keep a small object moving inside a patch visible; means average sensor noise away.
    """
    c, h, w = image.shape
    s = 2 if patch % 2 == 0 else 1
    rows, cols = h // patch, w // patch
    out = np.empty((rows, cols, c, s, s), np.float32)
    for ch in range(c):  # area resizing by a whole factor: the exact block means, 6x faster than numpy's
        crop = image[ch, : rows * patch, : cols * patch]
        means = cv2.resize(crop, (cols * s, rows * s), interpolation=cv2.INTER_AREA)
        out[:, :, ch] = (means * np.float32(std[ch])).reshape(rows, s, cols, s).transpose(0, 2, 1, 3)  # intensity
    return out.reshape(rows * cols, c * s * s)


def pan_scale(height: int, width: int) -> int:
    """How many times `thumbnail` shrinks a model input of this size: `PAN_SCALE`, less where that would leave
    its short side under 32 pixels (too little texture to follow)."""
    return max(1, min(PAN_SCALE, min(height, width) // 32))


def thumbnail(image: np.ndarray, std: Sequence[float]) -> np.ndarray:
    """A normalised model input [3, H, W] -> its grey level in [0, 1] units shrunk `pan_scale` times: what
    `camera_shift` compares."""
    c, h, w = image.shape
    scale = pan_scale(h, w)
    size = (max(1, w // scale), max(1, h // scale))
    out = np.zeros((size[1], size[0]), np.float32)
    for ch in range(c):
        out += cv2.resize(image[ch], size, interpolation=cv2.INTER_AREA) * np.float32(std[ch] / c)
    return out


@lru_cache(maxsize=8)
def _hanning(shape: tuple[int, int]) -> np.ndarray:
    window = cv2.createHanningWindow((shape[1], shape[0]), cv2.CV_32F)
    window.flags.writeable = False
    return window


def camera_shift(before: np.ndarray, after: np.ndarray, scale: int) -> float:
    """How far the picture moved as a whole between two `thumbnail`s shrunk `scale` times (`pan_scale`), in
    pixels of the model input (phase correlation); 0 where the correlation shows no clear peak, where shifting the
    first picture by it does not bring it closer to the second (something new in a still picture, not a camera that
    moved: a bright car entering a plain one reads as a shift, and is turned down here), or where the pictures are
    too small to tell. On a textured scene the background anchors it: the synthetic still street reads at most 1.5
    pixels over 600 frames."""
    if before.shape != after.shape or min(before.shape) < 8:
        return 0.0
    (dx, dy), response = cv2.phaseCorrelate(before, after, _hanning(before.shape))
    h, w = before.shape
    bx, by = int(np.ceil(abs(dx))) + 1, int(np.ceil(abs(dy))) + 1
    if response < PAN_RESPONSE or 2 * bx >= w or 2 * by >= h:
        return 0.0
    shift = np.array([[1, 0, dx], [0, 1, dy]], np.float32)
    moved = cv2.warpAffine(before, shift, (w, h), borderMode=cv2.BORDER_REPLICATE)
    inner = (slice(by, h - by), slice(bx, w - bx))
    if cv2.absdiff(moved, after)[inner].mean() >= cv2.absdiff(before, after)[inner].mean():
        return 0.0
    return float(np.hypot(dx, dy)) * scale


def change(signature: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """How much each patch changed: the largest difference of its signature's entries, [N]."""
    return np.abs(signature - reference).max(axis=1)


def dilate(mask: np.ndarray, grid: tuple[int, int], steps: int) -> np.ndarray:
    """A patch mask [N] grown by `steps` patches in every direction (8-neighbourhood) on the grid."""
    if steps <= 0 or not mask.any():
        return mask
    m = mask.reshape(grid)
    out = m.copy()
    for _ in range(steps):
        grown = out.copy()
        grown[1:] |= out[:-1]
        grown[:-1] |= out[1:]
        grown[:, 1:] |= grown[:, :-1].copy()
        grown[:, :-1] |= grown[:, 1:].copy()
        out = grown
    return out.reshape(-1)


def unsure_levels(entropy: np.ndarray, stage: np.ndarray) -> np.ndarray:
    """Each patch's normalised entropy [N] at the last pausing point it reached: `entropy` [S-1, N] per pausing point
    (NaN where not reached), `stage` [N] the last stage each patch ran in; 0 where nothing was recorded."""
    points = np.minimum(stage, len(entropy) - 1).astype(np.int64)
    h = entropy[points, np.arange(len(points))]
    return np.where(np.isnan(h), np.float32(0.0), h)


def due_unsure(age: np.ndarray, unsure: np.ndarray, every: int) -> np.ndarray:
    """[N] bool: the patches `ReuseOptions.unsure_every` recomputes though unchanged: unsure (level above `UNSURE`)
    and `every` frames old on the coming frame (`age`: frames since each was computed); none with every 0."""
    return (age + 1 >= every) & (unsure > UNSURE) if every else np.zeros(len(age), bool)


# ---------------------------------------------------------------------------------------------
# Pausing on a frame that reuses
# ---------------------------------------------------------------------------------------------
def fresh_in_top(fresh: np.ndarray, cached: np.ndarray, quota: int) -> int:
    """How many of the `fresh` entropies [B, n] rank among the `quota` highest of cached [B, m] and fresh together
    (the most of any image; ties go to the cached, NaN counts as the most uncertain)."""
    fresh = np.asarray(fresh, np.float32)
    fresh = np.where(np.isnan(fresh), np.float32(np.inf), fresh)  # runs between stages: fewer calls than nan_to_num
    b, n = fresh.shape
    if quota >= cached.shape[1] + n or cached.shape[1] == 0:
        return max(0, min(n, quota))
    both = np.concatenate([np.broadcast_to(cached, (b, cached.shape[1])), fresh], axis=1)
    order = np.argsort(-both, axis=1, kind="stable")[:, :quota]
    return int((order >= cached.shape[1]).sum(axis=1).max(initial=0))


class ReuseSelector(TokenSelector):
    """The pausing policy on a frame that recomputes only some patches.

    At each pausing point the recomputed patches are ranked against the entropies that the reused patches still
    active there had at the same point in their last computation: the budget's count is for the whole frame, so a
    recomputed patch pauses where it would have in a frame computed in full. A threshold applies as always. Unlike
    the per-frame policy, no recomputed patch needs to go on: `select` then gives an empty selection [B, 0] and the
    remaining stages are skipped.
    """

    def __init__(self, base: Pauser, cached: Sequence[np.ndarray]):
        self.base, self.cached = base, list(cached)  # cached[k]: [B, m_k] entropies at point k of the reused patches
        self.cost, self.budget, self.threshold = base.cost, base.budget, base.threshold

    @property
    def needs_entropy(self) -> bool:
        return self.base.needs_entropy

    def count(self, point: int, entropy: np.ndarray) -> int:
        n = int(np.shape(entropy)[-1])
        keep = n
        if self.base.plan.pauses:
            keep = fresh_in_top(entropy, self.cached[point], self.base.plan.counts[point + 1])
        if self.threshold is not None:
            keep = min(keep, threshold_count(entropy, self.threshold, minimum=0))
        return keep

    def select(self, point: int, entropy: np.ndarray) -> np.ndarray | None:
        keep = self.count(point, entropy)
        if keep >= np.shape(entropy)[-1]:
            return None
        if keep <= 0:
            return np.zeros((np.shape(entropy)[0], 0), np.int64)
        return select_tokens(entropy, keep)  # the count once: ranking against the cache is this policy's cost


# ---------------------------------------------------------------------------------------------
# Which kind of frame: drift control
# ---------------------------------------------------------------------------------------------
class FrameKind(Enum):
    REUSE = "reuse"  # the changed patches run; the rest keep what they computed
    REFRESH = "refresh"  # every patch runs through the reuse graphs: the cache starts afresh
    FULL = "full"  # the plain per-frame graphs, no cache (a moving camera, a scene cut)
    HELD = "held"  # the plain per-frame graphs: reuse could not hold the target agreement here (`AgreementControl`)


CALM_FRAMES = 2  # frames in a row that changed little before a stream without a cache starts one


@dataclass
class ReuseSchedule:
    """Decides each frame's kind for one stream (drift control), from how much of it changed.

    - no valid cache (a new stream, or after the camera moved): the plain per-frame graphs, until CALM_FRAMES frames
      in a row changed by at most half the scene-cut fraction since the frame before; then a refresh fills the cache.
      So a moving camera never pays for refreshes, and reuse waits until the camera is still;
    - more than `scene_cut` of the patches changed since they were computed, or the picture moved as a whole by
      more than `pan` pixels since the previous frame: the plain graphs, and the cache is dropped (a moving camera
      turns reuse off by itself: it is never slower than per-frame processing);
    - every `refresh_every` frames (half that for the first interval of a cache: a stream's first reading of the
      agreement comes sooner), or once the patches that changed since the last refresh cover `accumulated` of
      the frame: a refresh (unsure patches recomputed by `unsure_every` alone do not count: their input did not
      change);
    - while held (`hold`: reuse could not hold a target agreement): the plain graphs, then as a new stream;
    - otherwise: reuse.
    """

    options: ReuseOptions
    valid: bool = False  # the cache holds a complete frame
    since_refresh: int = 0  # frames since the last refresh
    settled: bool = False  # the cache outlived a refresh interval (the first after a start is half as long)
    calm: int = 0  # frames in a row that changed little, while there is no cache
    covered: np.ndarray | None = field(default=None, repr=False)  # patches that changed since the last refresh
    held: int = 0  # frames still to run per-frame (`hold`)

    @property
    def interval(self) -> int:
        """Frames from one refresh to the next: `refresh_every`; half that (at least 2) for a cache's first."""
        every = self.options.refresh_every
        return every if self.settled else min(every, max(2, every // 2))

    def hold(self, frames: int) -> None:
        """Run the next `frames` frames per-frame, without a cache; then start again as a new stream does."""
        self.held, self.valid, self.covered, self.calm = frames, False, None, 0

    def next(self, changed_fraction: float | None, shift: float = 0.0) -> FrameKind:
        """The kind of the next frame. `changed_fraction`: of the patches, against the cache when it is valid, else
        against the previous frame (None for a stream's first frame); `shift`: how far the picture moved as a whole
        since the previous frame (`camera_shift`), compared with `ReuseOptions.pan`."""
        o = self.options
        if self.held > 0:
            self.held -= 1
            return FrameKind.HELD
        moving = 0 < o.pan < shift
        if not self.valid:
            still = changed_fraction is not None and changed_fraction <= o.scene_cut / 2 and not moving
            self.calm = self.calm + 1 if still else 0
            return FrameKind.REFRESH if self.calm >= CALM_FRAMES else FrameKind.FULL
        assert changed_fraction is not None
        if changed_fraction > o.scene_cut or moving:
            return FrameKind.FULL
        if self.since_refresh + 1 >= self.interval:
            return FrameKind.REFRESH
        if self.covered is not None and self.covered.mean() > o.accumulated:
            return FrameKind.REFRESH
        return FrameKind.REUSE

    def done(self, kind: FrameKind, changed: np.ndarray | None = None) -> None:
        """Record the frame that ran: `changed` [N] bool, the patches of a reuse frame whose input changed."""
        if kind in (FrameKind.FULL, FrameKind.HELD):
            self.valid, self.covered = False, None
        elif kind is FrameKind.REFRESH:
            self.settled = self.valid  # a refresh that starts a cache: the next interval is half as long
            self.valid, self.since_refresh, self.covered, self.calm = True, 0, None, 0
        else:
            self.since_refresh += 1
            if changed is not None:
                self.covered = changed.copy() if self.covered is None else self.covered | changed
