"""Per-camera state for served streams: one slot per camera id, frames of one camera never concurrent.

Every served frame may name its camera (`camera_id`). The registry keeps a `CameraState` per id:
counters now, and the place where temporal reuse (when it lands) keeps what the last frame computed
(`state.reuse`). `claim(ids)` holds the named cameras' locks for the span of a batch, so two model
instances never run frames of the same camera at once and each sees the state the previous frame
left. Idle cameras are dropped after `idle_s`, the least recently seen beyond `max_cameras`.

Routing with several instances: under `paumer-edge serve` (PyTriton) every instance runs in the one
server process and shares this registry, so any instance can take any camera's next frame. In a
generated Triton repository each Python-backend instance is its own process with its own registry:
there, per-camera state needs Triton's sequence batcher (camera id as the correlation id, the
`oldest` strategy), which sends every request of one sequence to the same instance while still
batching across cameras.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any


@dataclass
class CameraState:
    camera_id: str
    frames: int = 0
    first_seen: float = field(default_factory=time.monotonic)
    last_seen: float = field(default_factory=time.monotonic)
    reuse: dict[str, Any] = field(default_factory=dict)  # what temporal reuse carries from frame to frame
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


class CameraRegistry:
    """Camera id -> CameraState, bounded in count and idle time; thread-safe."""

    def __init__(self, max_cameras: int = 1024, idle_s: float = 600.0):
        self.max_cameras, self.idle_s = max_cameras, idle_s
        self._cameras: OrderedDict[str, CameraState] = OrderedDict()
        self._lock = threading.Lock()
        self.frames = 0

    def __len__(self) -> int:
        return len(self._cameras)

    def get(self, camera_id: str) -> CameraState | None:
        with self._lock:
            return self._cameras.get(camera_id)

    def _slot(self, camera_id: str, now: float) -> CameraState:
        state = self._cameras.get(camera_id)
        if state is None or now - state.last_seen > self.idle_s:
            state = CameraState(camera_id)  # new, or idle so long that its state is stale
            self._cameras[camera_id] = state
        self._cameras.move_to_end(camera_id)
        return state

    def _evict(self, now: float, keep: set[str]) -> None:
        for cid in [c for c, s in self._cameras.items() if now - s.last_seen > self.idle_s and c not in keep]:
            del self._cameras[cid]
        while len(self._cameras) > self.max_cameras:
            oldest = next(c for c in self._cameras if c not in keep)
            del self._cameras[oldest]

    @contextmanager
    def claim(self, camera_ids: Iterable[str]) -> Iterator[dict[str, CameraState]]:
        """Hold the states of these cameras ("" = no camera) for one batch; counts one frame per id given."""
        ids = [c for c in camera_ids if c]
        now = time.monotonic()
        with self._lock:
            states = {c: self._slot(c, now) for c in dict.fromkeys(ids)}
            self._evict(now, set(states))
        held = [states[c] for c in sorted(states)]  # one global order: no two batches wait on each other
        for s in held:
            s.lock.acquire()
        try:
            yield states
        finally:
            done = time.monotonic()
            with self._lock:
                for c in ids:
                    states[c].frames += 1
                    states[c].last_seen = done
                self.frames += len(ids)
            for s in reversed(held):
                s.lock.release()
