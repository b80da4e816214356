"""Test helpers for the live view: a robot-like loop that feeds a pipeline and its view, and stream readers."""

from __future__ import annotations

import http.client
import json
import threading
import time
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from paumer_edge.data.streets import street_frames


def clip(count: int = 6, size: tuple[int, int] = (72, 128)) -> list[np.ndarray]:
    """A few different street frames (RGB) to cycle through."""
    return [img for img, _ in street_frames(5, size, seconds=count / 10, fps=10)]


class Feeder:
    """Segments `frames` in a loop on its own thread, publishing each result, at about `fps` (None: flat out)."""

    def __init__(self, pipe: Any, view: Any, frames: list[np.ndarray], fps: float | None = 15.0):
        self.pipe, self.view, self.frames, self.fps = pipe, view, frames, fps
        self.stop = threading.Event()
        self.count = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            t0 = time.monotonic()
            frame = self.frames[self.count % len(self.frames)]
            self.view.publish(frame, self.pipe(frame))
            self.count += 1
            if self.fps:
                self.stop.wait(max(0.0, 1 / self.fps - (time.monotonic() - t0)))

    def __enter__(self) -> Feeder:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=30)


def request(url: str, data: dict | bytes | None = None, headers: dict[str, str] | None = None,
            method: str | None = None) -> tuple[int, dict[str, str], bytes]:
    """(status, headers, body) of one request; HTTP errors are answers too. dict data is sent as JSON."""
    body = json.dumps(data).encode() if isinstance(data, dict) else data
    h = {"Content-Type": "application/json"} if isinstance(data, dict) else {}
    h.update(headers or {})
    req = urllib.request.Request(url, data=body, headers=h, method=method)

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    try:
        with urllib.request.build_opener(NoRedirect).open(req, timeout=30) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def mjpeg_parts(url: str, count: int, headers: dict[str, str] | None = None,
                timeout: float = 30.0) -> list[tuple[int, bytes]]:
    """The first `count` pictures of an MJPEG stream: (frame number, JPEG bytes)."""
    u = urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    conn.request("GET", "/stream.mjpg", headers=headers or {})
    r = conn.getresponse()
    assert r.status == 200 and r.getheader("Content-Type", "").startswith("multipart/x-mixed-replace")
    parts = []
    try:
        while len(parts) < count:
            line = r.fp.readline()
            if not line:
                break
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
                number = -1
                while (line := r.fp.readline()) not in (b"\r\n", b""):
                    if line.lower().startswith(b"x-frame:"):
                        number = int(line.split(b":")[1])
                parts.append((number, r.fp.read(length)))
    finally:
        conn.close()
    return parts


def wait_until(condition: Any, timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)
