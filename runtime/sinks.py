"""Where results go: an overlay video, label PNGs with an index, a window.

Nothing half-written is ever left: the video is written to a temporary file and renamed into place
only when complete (a failed or interrupted run removes it and leaves any previous video as it was);
each label PNG is written whole and renamed; the label folder's `index.csv` is rewritten atomically
as it grows. A full or read-only disk is an `OutputError` naming the file.
"""

from __future__ import annotations

import csv
import errno
import io
import shutil
from pathlib import Path

import cv2
import numpy as np

from paumer_edge.atomic import atomic_path, output_error, replace_atomic, temp_path, write_text_atomic
from paumer_edge.errors import OutputError

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv")
MIN_FREE_BYTES = 16 << 20  # stop writing before the disk is completely full
FREE_CHECK_EVERY = 25  # frames between free-space checks (os.statvfs: a few microseconds)


def check_free_space(folder: Path, path: Path) -> None:
    """An `OutputError` (ENOSPC) when the disk holding `folder` is (nearly) full."""
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return
    if free < MIN_FREE_BYTES:
        raise output_error(OSError(errno.ENOSPC, "No space left on device"), path)


def write_image_atomic(path: str | Path, image: np.ndarray, durable: bool = True) -> None:
    """cv2.imwrite (format from the suffix) to a temporary file renamed into place; `OutputError` on failure."""
    path = Path(path)
    with atomic_path(path, durable) as tmp:
        try:
            ok = cv2.imwrite(str(tmp), image)
        except cv2.error:
            ok = False
        if not ok:
            check_free_space(path.parent, path)
            raise OutputError(f"cannot write '{path}': OpenCV could not write the image (disk full or not "
                              "writable?)")


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


class LabelSink:
    """One PNG of class indices per frame, named after the frame, and `index.csv` listing them in order
    (`index,source,file`: the frame's position in the source, the image it came from if any, the PNG).

    The index lists what this run wrote; it is rewritten atomically every so often (the intervals grow
    with the run, so the total rewriting stays linear) and when the sink is closed.
    """

    INDEX = "index.csv"

    def __init__(self, folder: str | Path, first_flush: int = 100):
        self.folder = Path(folder)
        if self.folder.exists() and not self.folder.is_dir():
            raise OutputError(f"'{self.folder}' exists and is not a folder")
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise output_error(e, self.folder) from None
        self.rows: list[tuple[int, str, str]] = []
        self._next_flush = first_flush

    def write(self, name: str, labels: np.ndarray, index: int = -1, source: str = "") -> None:
        path = self.folder / f"{name}.png"
        image = labels.astype(np.uint8) if labels.max(initial=0) < 256 else labels.astype(np.uint16)
        if len(self.rows) % FREE_CHECK_EVERY == 0:
            check_free_space(self.folder, path)
        write_image_atomic(path, image, durable=False)
        self.rows.append((index, source, path.name))
        if len(self.rows) >= self._next_flush:
            self.write_index()
            self._next_flush = max(len(self.rows) + 100, int(len(self.rows) * 1.25))

    def write_index(self) -> None:
        text = io.StringIO()
        out = csv.writer(text, lineterminator="\n")
        out.writerow(["index", "source", "file"])
        out.writerows(self.rows)
        write_text_atomic(self.folder / self.INDEX, text.getvalue())

    def close(self, strict: bool = True) -> None:
        """Write the final index (also after a failed run: it lists the PNGs that are complete).

        `strict=False` (cleaning up after another error) keeps a failure here from hiding that error."""
        if not self.rows:
            return
        try:
            self.write_index()
        except OutputError:
            if strict:
                raise


class WindowSink:
    """An OpenCV window; `q` or Esc stops the run."""

    def __init__(self, title: str = "paumer-edge"):
        self.title = title
        try:
            cv2.namedWindow(self.title, cv2.WINDOW_NORMAL)
        except cv2.error:
            raise OutputError("--show needs OpenCV with GUI support and a display: pip install opencv-python "
                              "(instead of opencv-python-headless)") from None

    def write(self, rgb: np.ndarray) -> bool:
        """Show a frame; False when the user asked to stop."""
        cv2.imshow(self.title, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        return (cv2.waitKey(1) & 0xFF) not in (ord("q"), 27)

    def close(self) -> None:
        cv2.destroyWindow(self.title)
