"""Where results go: label PNGs with an index, a window (the overlay video: `paumer_edge.core.video`).

Nothing half-written is ever left: each label PNG is written whole and renamed; the label folder's
`index.csv` is rewritten atomically as it grows. A full or read-only disk is an `OutputError` naming the file.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import cv2
import numpy as np

from paumer_edge.core.atomic import atomic_path, output_error, write_text_atomic
from paumer_edge.core.errors import OutputError
from paumer_edge.core.video import FREE_CHECK_EVERY, check_free_space


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
