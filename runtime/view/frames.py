"""What viewers see, made off the inference thread: the newest frame as one JPEG, and per-frame stats.

`publish(frame, result)` runs on the inference thread and only keeps references: a stats record (a few
numbers) and, when someone is watching and a picture is due, a copy of the frame in a single slot.
An encoder thread turns the newest slot into a JPEG (overlay, and the pause map beside it) once,
whatever the number of viewers; a frame that arrives while it is busy replaces the waiting one. So
inference never waits for viewers, and memory holds one frame and one JPEG, not a queue. Pictures are
due at most `max_fps` times a second, and no sooner than the cost of the last one allows within
`max_share` of one core: a slow machine gets fewer pictures, not slower inference.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from ..bundle import ModelInfo
from ..pipeline import Result
from ..preprocess import grid_to_frame, to_rgb_uint8
from ..visualize import compose


@dataclass
class ViewConfig:
    """How the view renders: the frame rate and size of the picture, and how much history the plot keeps."""

    max_fps: float = 25.0  # pictures encoded per second at most (inference may run faster)
    max_share: float = 0.05  # of one CPU core the drawing and encoding may use: fewer pictures on a slow machine
    max_width: int = 800  # each panel (overlay, pause map) is scaled down to at most this width
    quality: int = 80  # JPEG quality
    history: int = 600  # per-frame stats records kept for the rolling plot
    pause_map: bool = True  # show the pause map beside the overlay (a knob on the page)
    send_timeout_s: float = 10.0  # a viewer that takes longer to accept one picture is dropped


def stats_record(n: int, result: Result, t: float) -> dict[str, Any]:
    """One frame's numbers for the page: time, stages, tokens, the budget it ran at, the compute spent."""
    st = result.stats
    return {"frame": n, "t": round(t, 4), "ms": round(result.total_ms, 3),
            "stage_ms": [round(v, 3) for v in st.stage_ms], "decoder_ms": round(st.decoder_ms, 3),
            "policy_ms": round(st.policy_ms, 3), "counts": [int(c) for c in st.counts],
            "budget": round(float(st.budget), 4), "threshold": st.threshold,
            "compute": round(float(st.cost_fraction), 4)}


def render(frame: np.ndarray, result: Result, info: ModelInfo, bgr: bool, pause_map: bool,
           max_width: int) -> np.ndarray:
    """The viewers' picture (RGB): the class overlay, and the pause map beside it, at most `max_width` per panel."""
    rgb = to_rgb_uint8(frame, bgr=bgr)
    smap = grid_to_frame(result.stage_map, result.placement) if pause_map and result.stage_map is not None else None
    labels = result.labels
    h, w = rgb.shape[:2]
    if w > max_width:
        size = (max_width, max(1, round(h * max_width / w)))
        rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
        labels = cv2.resize(labels.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST)
        smap = None if smap is None else cv2.resize(smap, size, interpolation=cv2.INTER_NEAREST)
    return compose(rgb, labels, info.palette, smap, info.num_stages, "beside")


class FrameHub:
    """The newest picture as JPEG bytes (`jpeg`, numbered `jpeg_frame`) and the last frames' stats records."""

    def __init__(self, info: ModelInfo, bgr: bool = False, config: ViewConfig | None = None):
        self.info, self.bgr = info, bgr
        self.config = config or ViewConfig()
        self.pause_map = self.config.pause_map
        self.watchers = 0  # picture streams open now: with none, nothing is encoded
        self.frames = 0  # frames published so far
        self.encoded = 0  # pictures encoded so far
        self.encode_s = 0.0  # time spent drawing and encoding them (on the encoder thread)
        self.jpeg: bytes | None = None
        self.jpeg_frame = -1
        self.on_picture: Callable[[], None] | None = None  # called on the encoder thread after each picture
        self._records: deque[dict[str, Any]] = deque(maxlen=self.config.history)
        self._lock = threading.Lock()
        self._slot: tuple[int, np.ndarray, Result] | None = None
        self._due = 0.0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._t0 = time.monotonic()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._encode_loop, name="paumer-view-encode", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with self._lock:
            self._slot = None

    def publish(self, frame: np.ndarray, result: Result) -> None:
        """Record a frame's stats; keep a copy of it for the encoder when a picture is due."""
        now = time.monotonic()
        with self._lock:
            n = self.frames
            self.frames += 1
            self._records.append(stats_record(n, result, now - self._t0))
            if self.watchers <= 0 or now < self._due:
                return
            self._due = now + 1.0 / self.config.max_fps
            self._slot = (n, np.array(frame, copy=True), result)  # the caller may reuse its frame buffer
        self._wake.set()

    def records(self, after: int = -1, limit: int | None = None) -> list[dict[str, Any]]:
        """Stats records of frames numbered above `after` (the newest `limit` of them)."""
        with self._lock:
            new = [r for r in self._records if r["frame"] > after] if after >= 0 else list(self._records)
        return new[-limit:] if limit else new

    def fps(self, window_s: float = 1.0) -> float:
        """Frames per second over the last `window_s` seconds of records."""
        with self._lock:
            if len(self._records) < 2:
                return 0.0
            last = self._records[-1]
            first = next((r for r in self._records if r["t"] >= last["t"] - window_s), last)
            if first is last:
                first = self._records[-2]
        dt = last["t"] - first["t"]
        return (last["frame"] - first["frame"]) / dt if dt > 0 else 0.0

    def _encode_loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(timeout=0.5)
            self._wake.clear()
            with self._lock:
                item, self._slot = self._slot, None
            if item is None:
                continue
            n, frame, result = item
            t0 = time.perf_counter()
            picture = render(frame, result, self.info, self.bgr, self.pause_map, self.config.max_width)
            ok, buf = cv2.imencode(".jpg", cv2.cvtColor(picture, cv2.COLOR_RGB2BGR),
                                   [cv2.IMWRITE_JPEG_QUALITY, self.config.quality])
            if not ok:
                continue
            took = time.perf_counter() - t0
            with self._lock:
                self.jpeg, self.jpeg_frame = buf.tobytes(), n
                self.encoded += 1
                self.encode_s += took
                # keep the encoder to its share of a core: the next picture waits in proportion to this one's
                # cost, so a frame that came in meanwhile is too early (a later one will be taken)
                rest = took * (1 / self.config.max_share - 1)
                if rest > 0:
                    self._due = max(self._due, time.monotonic() + rest)
                    self._slot = None
            if self.on_picture is not None:
                self.on_picture()
