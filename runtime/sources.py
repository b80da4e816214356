"""Where frames come from: a video file, a camera index, an RTSP/HTTP stream, an image folder or glob.

Every source yields `Frame`s with pixels (RGB, any depth), the frame's position in the source and a
name (for label files), and says what it is. Sources that cannot be opened fail at once with a
`SourceError`. While running:
- a frame that cannot be decoded (a corrupt packet, an unreadable image) is skipped and counted in
  `skipped`; the run goes on;
- a live source (camera, stream) that drops is reopened with exponential back-off, a bounded number of
  times; if it does not come back, a `SourceError` says so (with `after_frames`, the good frames before).
"""

from __future__ import annotations

import glob as globlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from paumer_edge.core.errors import SourceError
from paumer_edge.core.imread import imread

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
STREAM_PREFIXES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://")


@dataclass
class Frame:
    image: np.ndarray  # [H, W, 3] RGB (or gray / RGBA, uint8 / uint16 / float, as decoded)
    index: int  # position in the source (skipped frames keep their numbers)
    name: str  # unique within the source: label files are named after it
    source: str = ""  # the image file it came from, if any


class Source:
    kind = "source"
    fps: float | None = None
    length: int | None = None
    description = ""
    skipped = 0  # undecodable frames passed over
    reconnections = 0  # times a live source dropped and was reopened

    def __iter__(self) -> Iterator[Frame]:
        raise NotImplementedError

    def close(self) -> None:
        pass


def _to_rgb(img: np.ndarray) -> np.ndarray:
    """OpenCV's BGR / BGRA -> RGB / RGBA; gray stays gray."""
    if img.ndim == 3 and img.shape[2] == 3:
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    if img.ndim == 3 and img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2RGBA)
    return img


def unique_names(files: list[Path]) -> list[str]:
    """File stems, made unique (a/x.png and b/x.png -> x, x_2) so label files never overwrite each other."""
    taken: set[str] = set()
    names = []
    for f in files:
        name, n = f.stem, 1
        while name in taken:  # a/x, b/x and b/x_2 -> x, x_2, x_2_2
            n += 1
            name = f"{f.stem}_{n}"
        taken.add(name)
        names.append(name)
    return names


class ImageSource(Source):
    """Images from a folder, a glob pattern, or a single file, in name order."""

    kind = "images"

    def __init__(self, files: list[Path], description: str):
        if not files:
            raise SourceError(f"no images ({', '.join(IMAGE_SUFFIXES)}) found in {description}")
        self.files = files
        self.names = unique_names(files)
        self.length = len(files)
        self.description = f"{len(files)} images from {description}"

    def __iter__(self) -> Iterator[Frame]:
        for i, (path, name) in enumerate(zip(self.files, self.names)):
            img = imread(path)  # None for unreadable / corrupt files; the decoders' console lines held back
            if img is None:
                self.skipped += 1
                continue
            yield Frame(_to_rgb(img), i, name, str(path))


class VideoSource(Source):
    """A video file, a camera, or a network stream through OpenCV; live sources reconnect (bounded)."""

    open_timeout_ms = 10_000  # network streams: how long opening and each read may block
    read_timeout_ms = 10_000
    reconnects = 5  # live sources: reopen attempts after a drop (0.5 + 1 + 2 + 4 + 8 s of waiting)
    backoff_s = 0.5  # first wait; doubles with every attempt
    max_backoff_s = 8.0

    def __init__(self, target: str | int, kind: str, reconnects: int | None = None, backoff_s: float | None = None):
        self.target, self.kind = target, kind
        if reconnects is not None:
            self.reconnects = reconnects
        if backoff_s is not None:
            self.backoff_s = backoff_s
        self.cap = self._open()
        fps = self.cap.get(cv2.CAP_PROP_FPS)
        self.fps = fps if fps and 0 < fps < 1000 else None
        count = int(self.cap.get(cv2.CAP_PROP_FRAME_COUNT)) if kind != "camera" else 0
        self.length = count if count > 0 else None  # a URL to a file has a length: its end is the end
        w, h = int(self.cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(self.cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        self.description = f"{kind} {target} ({w}x{h}" + (f", {self.fps:g} fps" if self.fps else "") + \
            (f", {self.length} frames)" if self.length else ")")

    @property
    def live(self) -> bool:
        """Cameras and endless streams: a failed read means a drop (reconnect), not the end."""
        return self.kind != "video" and self.length is None

    def _capture(self) -> cv2.VideoCapture:
        if self.kind == "stream":
            return cv2.VideoCapture(str(self.target), cv2.CAP_FFMPEG,
                                    [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, self.open_timeout_ms,
                                     cv2.CAP_PROP_READ_TIMEOUT_MSEC, self.read_timeout_ms])
        return cv2.VideoCapture(self.target)

    def _open(self) -> cv2.VideoCapture:
        cap = self._capture()
        if not cap.isOpened():
            cap.release()
            what = {"camera": f"camera {self.target} is not available (is it connected, and not in use?)",
                    "stream": f"cannot open the stream {self.target} (check the URL and the network)",
                    "video": f"'{self.target}' cannot be decoded: it is not a video OpenCV can read, it is "
                             "corrupt, or it has no frames"}[self.kind]
            raise SourceError(what)
        return cap

    def _reconnect(self, attempts: int, frames: int) -> int:
        """Reopen a dropped live source with exponential back-off; the attempts used so far carry over
        until a good frame arrives. Returns the attempts used; raises when they run out."""
        self.cap.release()
        t0 = time.monotonic()
        while attempts < self.reconnects:
            time.sleep(min(self.backoff_s * 2 ** attempts, self.max_backoff_s))
            attempts += 1
            try:
                self.cap = self._open()
            except SourceError:
                continue
            self.reconnections += 1
            return attempts
        self.cap = cv2.VideoCapture()  # closed: close() and further reads stay harmless
        raise SourceError(f"{self.kind} {self.target} dropped after {frames} frames and did not come back "
                          f"({self.reconnects} reconnection attempts over {time.monotonic() - t0:.0f} s); "
                          "check the connection and run again", after_frames=frames)

    def __iter__(self) -> Iterator[Frame]:
        # A failed read is first taken as one bad frame (decoders skip a corrupt packet and go on); only a
        # run of them means the end (files, finite URLs) or a drop (live sources: reconnect).
        max_bad = 5 if self.live else 25
        position = bad = frames = attempts = 0
        while True:
            ok, img = self.cap.read()
            if ok and img is not None and img.size:
                self.skipped += bad
                position += bad
                bad, attempts = 0, 0
                yield Frame(_to_rgb(img), position, f"frame_{position:06d}")
                position += 1
                frames += 1
                continue
            bad += 1
            if bad < max_bad:
                continue
            bad = 0  # those reads were the end or a drop, not frames
            if not self.live:
                if frames == 0:
                    raise SourceError(f"'{self.target}' has no frames that can be decoded")
                return
            attempts = self._reconnect(attempts, frames)

    def close(self) -> None:
        self.cap.release()


def _readable(path: Path, what: str) -> None:
    if not os.access(path, os.R_OK):
        raise SourceError(f"cannot read {what} '{path}' (permission denied)")


def open_source(spec: str) -> Source:
    """Pick the source kind from the text: camera index, URL, folder, image file, glob or video file."""
    if not spec.strip():
        raise SourceError("no source given: give a video file, an image folder or glob, a camera index or a URL")
    if spec.isdigit():
        return VideoSource(int(spec), "camera")
    if spec.lower().startswith(STREAM_PREFIXES):
        return VideoSource(spec, "stream")
    path = Path(spec)
    try:
        if path.is_dir():
            _readable(path, "folder")
            files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
            return ImageSource(files, f"folder {path}")
        if not path.exists() and any(c in spec for c in "*?["):
            files = sorted(Path(p) for p in globlib.glob(spec) if Path(p).suffix.lower() in IMAGE_SUFFIXES)
            return ImageSource(files, f"pattern {spec}")
    except OSError as e:
        raise SourceError(f"cannot list '{spec}' ({e.strerror or e})") from None
    if not path.exists():
        raise SourceError(f"source '{spec}' does not exist: give a video file, an image folder or glob, "
                          "a camera index or a stream URL")
    if not path.is_file():
        raise SourceError(f"source '{spec}' is not a regular file, folder, camera index or URL")
    _readable(path, "file")
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return ImageSource([path], f"file {path}")
    return VideoSource(str(path), "video")
