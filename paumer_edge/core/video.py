"""Frames -> a video file that appears only once it is complete (torch-free; `run` and `synth` write with it).

The video is written to a temporary file and renamed into place only when complete: a failed or
interrupted run removes it and leaves any previous video as it was. A full or read-only disk is an
`OutputError` naming the file.
"""

from __future__ import annotations

import errno
import shutil
from pathlib import Path

import cv2
import numpy as np

from .atomic import output_error, replace_atomic, temp_path
from .errors import OutputError
from .paths import virtual_fs_error

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv")
MIN_FREE_BYTES = 16 << 20  # stop writing before the disk is completely full
FREE_CHECK_EVERY = 25  # frames between free-space checks (os.statvfs: a few microseconds)


def check_free_space(folder: Path, path: Path) -> None:
    """An `OutputError` (ENOSPC) when the disk holding `folder` is (nearly) full, or when `folder` is on a
    virtual file system that holds no files."""
    try:
        usage = shutil.disk_usage(folder)
    except OSError:
        return
    if usage.total == 0:  # not a disk at all (/proc, /sys): "full" would be the wrong story
        raise virtual_fs_error(path, folder)
    if usage.free < MIN_FREE_BYTES:
        raise output_error(OSError(errno.ENOSPC, "No space left on device"), path)


class VideoSink:
    """Frames -> a video file (mp4v codec) that appears only once it is complete.

    Frames of another size than the first are resized to it (an image folder of mixed sizes).
    """

    def __init__(self, path: str | Path, fps: float):
        self.path = Path(path)
        if self.path.suffix.lower() not in VIDEO_SUFFIXES:
            raise OutputError(f"output video '{self.path}' needs an .mp4, .avi or .mkv extension")
        folder = self.path.parent
        if not folder.is_dir():
            raise OutputError(f"output folder '{folder}' does not exist")
        if self.path.is_dir():
            raise OutputError(f"output video '{self.path}' is a folder")
        self.fps = fps if fps and 0 < fps < 1000 else 30.0
        self.tmp = temp_path(self.path)
        self.writer: cv2.VideoWriter | None = None
        self.size: tuple[int, int] | None = None  # (w, h)
        self.frames = 0

    def _open(self, w: int, h: int) -> cv2.VideoWriter:
        writer = cv2.VideoWriter(str(self.tmp), cv2.VideoWriter.fourcc(*"mp4v"), self.fps, (w, h))
        if not writer.isOpened():
            self.tmp.unlink(missing_ok=True)
            check_free_space(self.path.parent, self.path)
            raise OutputError(f"cannot write '{self.path}': OpenCV has no mp4v encoder here, or the folder is "
                              "not writable")
        return writer

    def write(self, rgb: np.ndarray) -> None:
        """Append one RGB frame; on a failed write the partial file is removed and an `OutputError` raised."""
        try:
            if self.writer is None:
                h, w = rgb.shape[:2]
                self.size = (w, h)
                self.writer = self._open(w, h)
            if (rgb.shape[1], rgb.shape[0]) != self.size:
                rgb = cv2.resize(rgb, self.size, interpolation=cv2.INTER_AREA)
            if self.frames % FREE_CHECK_EVERY == 0:
                check_free_space(self.path.parent, self.path)
            self.writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
            self.frames += 1
        except OSError as e:
            self.close(keep=False)
            raise e if isinstance(e, OutputError) else output_error(e, self.path) from None
        except BaseException:
            self.close(keep=False)
            raise

    def close(self, keep: bool = True) -> None:
        """Finish the file and move it into place (`keep`), or throw the partial file away."""
        writer, self.writer = self.writer, None
        try:
            if writer is not None:
                writer.release()
            if keep and self.frames and self.tmp.exists():
                if self.tmp.stat().st_size == 0:
                    check_free_space(self.path.parent, self.path)
                    raise OutputError(f"cannot write '{self.path}': the encoder wrote nothing")
                replace_atomic(self.tmp, self.path)
        finally:
            self.tmp.unlink(missing_ok=True)
