"""Frames -> a video file that appears only once it is complete (torch-free; `run` and `synth` write with it).

The video is written to a temporary file and renamed into place only when complete: a failed or
interrupted run removes it and leaves any previous video as it was. A full or read-only disk is an
`OutputError` naming the file.
"""

from __future__ import annotations

import errno
import shutil
import sys
from fractions import Fraction
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


class _AvEncoder:
    """H.264 (libx264, yuv420p) through PyAV: plays in browsers, phones and IDE previews."""

    codec = "h264"

    def __init__(self, path: Path, container: str, fps: float, w: int, h: int, crf: int):
        import av  # only here: a runtime without PyAV falls back to OpenCV

        self.out = av.open(str(path), "w", format=container)
        rate = Fraction(fps).limit_denominator(1001)
        self.stream = self.out.add_stream("libx264", rate=rate)
        self.stream.width, self.stream.height = w + w % 2, h + h % 2  # yuv420p needs even sides
        self.stream.pix_fmt = "yuv420p"
        self.stream.options = {"crf": str(crf), "preset": "veryfast"}
        self._frame = av.VideoFrame

    def write(self, rgb: np.ndarray) -> None:
        h, w = rgb.shape[:2]
        if (w, h) != (self.stream.width, self.stream.height):
            rgb = np.pad(rgb, ((0, self.stream.height - h), (0, self.stream.width - w), (0, 0)), mode="edge")
        for packet in self.stream.encode(self._frame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")):
            self.out.mux(packet)

    def close(self) -> None:
        try:
            for packet in self.stream.encode():
                self.out.mux(packet)
        finally:
            self.out.close()


class _CvEncoder:
    """MPEG-4 part 2 (mp4v) through OpenCV: the fallback where PyAV is missing (browsers do not play it)."""

    codec = "mp4v"

    def __init__(self, path: Path, fps: float, w: int, h: int):
        self.writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), fps, (w, h))
        if not self.writer.isOpened():
            raise OSError(errno.EIO, "OpenCV has no mp4v encoder here, or the folder is not writable")

    def write(self, rgb: np.ndarray) -> None:
        self.writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))

    def close(self) -> None:
        self.writer.release()


def have_pyav() -> bool:
    try:
        import av  # noqa: F401
    except ImportError:
        return False
    return True


class VideoSink:
    """Frames -> a video file that appears only once it is complete: H.264 in MP4 (or MKV / AVI) through PyAV,
    or OpenCV's mp4v where PyAV is missing (with a one-line note on stderr).

    Frames of another size than the first are resized to it (an image folder of mixed sizes).
    """

    CONTAINERS = {".mp4": "mp4", ".mkv": "matroska", ".avi": "avi"}

    def __init__(self, path: str | Path, fps: float, crf: int = 20):
        self.path = Path(path)
        if self.path.suffix.lower() not in VIDEO_SUFFIXES:
            raise OutputError(f"output video '{self.path}' needs an .mp4, .avi or .mkv extension")
        folder = self.path.parent
        if not folder.is_dir():
            raise OutputError(f"output folder '{folder}' does not exist")
        if self.path.is_dir():
            raise OutputError(f"output video '{self.path}' is a folder")
        self.fps = fps if fps and 0 < fps < 1000 else 30.0
        self.crf = crf
        self.tmp = temp_path(self.path)
        self.writer: _AvEncoder | _CvEncoder | None = None
        self.size: tuple[int, int] | None = None  # (w, h)
        self.frames = 0

    @property
    def codec(self) -> str:
        """The codec the file is written with ("h264", or "mp4v" without PyAV); known once a frame is written."""
        return self.writer.codec if self.writer is not None else ("h264" if have_pyav() else "mp4v")

    def _open(self, w: int, h: int) -> _AvEncoder | _CvEncoder:
        try:
            if have_pyav():
                return _AvEncoder(self.tmp, self.CONTAINERS[self.path.suffix.lower()], self.fps, w, h, self.crf)
            print("note: PyAV is not installed, so the video is MPEG-4 part 2 (mp4v), which browsers do not play; "
                  "pip install av for H.264", file=sys.stderr)
            return _CvEncoder(self.tmp, self.fps, w, h)
        except OSError:
            self.tmp.unlink(missing_ok=True)
            check_free_space(self.path.parent, self.path)
            raise

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
            self.writer.write(rgb)
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
                writer.close()
            if keep and self.frames and self.tmp.exists():
                if self.tmp.stat().st_size == 0:
                    check_free_space(self.path.parent, self.path)
                    raise OutputError(f"cannot write '{self.path}': the encoder wrote nothing")
                replace_atomic(self.tmp, self.path)
        except OSError as e:
            raise e if isinstance(e, OutputError) else output_error(e, self.path) from None
        finally:
            self.tmp.unlink(missing_ok=True)
