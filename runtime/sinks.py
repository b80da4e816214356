"""Where results go: an overlay video (written atomically), label PNGs, a window."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from paumer_edge import UserError

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv")


class VideoSink:
    """Frames -> a video file that appears only once it is complete (mp4v codec)."""

    def __init__(self, path: str | Path, fps: float):
        self.path = Path(path)
        if self.path.suffix.lower() not in VIDEO_SUFFIXES:
            raise UserError(f"output video '{self.path}' needs an .mp4, .avi or .mkv extension")
        if self.path.parent and not self.path.parent.exists():
            raise UserError(f"output folder '{self.path.parent}' does not exist")
        self.fps = fps
        self.tmp = self.path.with_name(f".{self.path.stem}.partial{self.path.suffix}")
        self.writer: cv2.VideoWriter | None = None
        self.frames = 0

    def write(self, rgb: np.ndarray) -> None:
        if self.writer is None:
            h, w = rgb.shape[:2]
            self.writer = cv2.VideoWriter(str(self.tmp), cv2.VideoWriter.fourcc(*"mp4v"), self.fps, (w, h))
            if not self.writer.isOpened():
                raise UserError(f"cannot write '{self.path}': OpenCV has no mp4v encoder here")
        self.writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        self.frames += 1

    def close(self, keep: bool = True) -> None:
        if self.writer is not None:
            self.writer.release()
            self.writer = None
        if keep and self.frames and self.tmp.exists():
            os.replace(self.tmp, self.path)
        elif self.tmp.exists():
            self.tmp.unlink()


class LabelSink:
    """One PNG of class indices per frame (and optionally its colour version), named after the frame."""

    def __init__(self, folder: str | Path, palette: np.ndarray | None = None):
        self.folder = Path(folder)
        if self.folder.exists() and not self.folder.is_dir():
            raise UserError(f"'{self.folder}' exists and is not a folder")
        self.folder.mkdir(parents=True, exist_ok=True)
        self.palette = palette

    def write(self, name: str, labels: np.ndarray) -> None:
        path = self.folder / f"{name}.png"
        tmp = self.folder / f".{name}.partial.png"
        image = labels.astype(np.uint8) if labels.max(initial=0) < 256 else labels.astype(np.uint16)
        if not cv2.imwrite(str(tmp), image):
            raise UserError(f"cannot write '{path}' (disk full or not writable?)")
        os.replace(tmp, path)


class WindowSink:
    """An OpenCV window; `q` or Esc stops the run."""

    def __init__(self, title: str = "paumer-edge"):
        self.title = title
        try:
            cv2.namedWindow(self.title, cv2.WINDOW_NORMAL)
        except cv2.error:
            raise UserError("--show needs OpenCV with GUI support and a display: pip install opencv-python "
                            "(instead of opencv-python-headless)") from None

    def write(self, rgb: np.ndarray) -> bool:
        """Show a frame; False when the user asked to stop."""
        cv2.imshow(self.title, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        return (cv2.waitKey(1) & 0xFF) not in (ord("q"), 27)

    def close(self) -> None:
        cv2.destroyWindow(self.title)
