"""Where frames come from: a video file, a camera index, an RTSP/HTTP stream, an image folder or glob.

Every source yields `Frame`s with RGB pixels, a running index and a name (for label files), and
says what it is. Sources that cannot be opened fail at once with a clear message.
"""

from __future__ import annotations

import glob as globlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from paumer_edge import UserError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
STREAM_PREFIXES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://")


@dataclass
class Frame:
    image: np.ndarray  # RGB uint8 [H, W, 3]
    index: int
    name: str


class Source:
    kind = "source"
    fps: float | None = None
    length: int | None = None
    description = ""
    skipped = 0  # unreadable frames passed over

    def __iter__(self) -> Iterator[Frame]:
        raise NotImplementedError

    def close(self) -> None:
        pass


class ImageSource(Source):
    """Images from a folder, a glob pattern, or a single file, in name order."""

    kind = "images"

    def __init__(self, files: list[Path], description: str):
        if not files:
            raise UserError(f"no images ({', '.join(IMAGE_SUFFIXES)}) found in {description}")
        self.files = files
        self.length = len(files)
        self.description = f"{len(files)} images from {description}"

    def __iter__(self) -> Iterator[Frame]:
        for i, path in enumerate(self.files):
            img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
            if img is None:
                self.skipped += 1
                continue
            if img.ndim == 3 and img.shape[2] >= 3:
                img = cv2.cvtColor(img, cv2.COLOR_BGRA2RGBA if img.shape[2] == 4 else cv2.COLOR_BGR2RGB)
            yield Frame(img, i, path.stem)


class VideoSource(Source):
    """A video file, a camera, or a network stream through OpenCV; live sources reconnect (bounded)."""

    def __init__(self, target: str | int, kind: str, reconnects: int = 5):
        self.target, self.kind, self.reconnects = target, kind, reconnects
        self.cap = self._open()
        fps = self.cap.get(cv2.CAP_PROP_FPS)
        self.fps = fps if fps and 0 < fps < 1000 else None
        count = int(self.cap.get(cv2.CAP_PROP_FRAME_COUNT)) if kind != "camera" else 0
        self.length = count if count > 0 else None  # a URL to a file has a length: its end is the end
        w, h = int(self.cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(self.cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        self.description = f"{kind} {target} ({w}x{h}" + (f", {self.fps:g} fps" if self.fps else "") + \
            (f", {self.length} frames)" if self.length else ")")

    def _open(self) -> cv2.VideoCapture:
        cap = cv2.VideoCapture(self.target)
        if not cap.isOpened():
            what = {"camera": f"camera {self.target} is not available (is it connected, and not in use?)",
                    "stream": f"cannot open the stream {self.target} (check the URL and the network)",
                    "video": f"'{self.target}' is not a video OpenCV can read"}[self.kind]
            raise UserError(what)
        return cap

    def __iter__(self) -> Iterator[Frame]:
        index, failures, last_reconnect = 0, 0, 0
        while True:
            ok, img = self.cap.read()
            if not ok or img is None:
                if self.kind == "video" or self.length is not None or failures >= self.reconnects:
                    if index == 0 and self.kind == "video":
                        raise UserError(f"'{self.target}' has no frames that can be decoded")
                    return
                failures += 1  # a live source dropped: reopen with back-off
                last_reconnect = index
                time.sleep(min(0.5 * 2 ** (failures - 1), 8.0))
                self.cap.release()
                try:
                    self.cap = self._open()
                except UserError:
                    continue
                continue
            if index - last_reconnect > 100:  # a good stretch since the last drop: the budget refills
                failures = 0
            yield Frame(cv2.cvtColor(img, cv2.COLOR_BGR2RGB), index, f"frame_{index:06d}")
            index += 1

    def close(self) -> None:
        self.cap.release()


def open_source(spec: str) -> Source:
    """Pick the source kind from the text: camera index, URL, folder, glob, image file or video file."""
    if spec.isdigit():
        return VideoSource(int(spec), "camera")
    if spec.lower().startswith(STREAM_PREFIXES):
        return VideoSource(spec, "stream")
    path = Path(spec)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        return ImageSource(files, f"folder {path}")
    if any(c in spec for c in "*?["):
        files = sorted(Path(p) for p in globlib.glob(spec) if Path(p).suffix.lower() in IMAGE_SUFFIXES)
        return ImageSource(files, f"pattern {spec}")
    if not path.exists():
        raise UserError(f"source '{spec}' does not exist: give a video file, an image folder or glob, "
                        "a camera index or a stream URL")
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return ImageSource([path], f"file {path}")
    return VideoSource(str(path), "video")
