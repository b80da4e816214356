"""Reading an image file without the decoders' own console output (torch-free).

OpenCV's image codecs talk on the process's stderr: OpenCV's log (`[ERROR:0@1.7] ... readHeader ...`) and
libpng / libjpeg / libtiff through their default handlers (`libpng error: IHDR: CRC error`), which no
log level reaches. For a corrupt file the toolkit's own message (a skip count, or one line naming the file)
is what the user should see, so `imread` runs the decode with file descriptor 2 pointed at a scratch file.
What other threads wrote to stderr meanwhile is passed on; only the decoders' lines are dropped.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

from .knobs import MAX_FRAME_PIXELS

# OpenCV refuses, before decoding, an image larger than the runtime takes (a small file can hold a huge one)
os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(MAX_FRAME_PIXELS))

import cv2  # noqa: E402  (after its pixel limit is set)
import numpy as np  # noqa: E402

# OpenCV's log lines, and the image libraries' messages: nothing else is held back
DECODER_NOISE = re.compile(
    rb"^(\[\s*(?:ERROR|WARN|INFO|DEBUG|FATAL|VERBOSE)\s*:|libpng (?:error|warning)|libtiff|TIFF\w*:|"
    rb"Corrupt JPEG|Premature end of JPEG|Invalid SOS|Bogus (?:marker|DQT|Huffman|input)|Unsupported marker|"
    rb"Not a JPEG file|Wrong JPEG library)")

_lock = threading.Lock()
_scratch: Any = None

__all__ = ["imread", "quiet_native_stderr"]


class quiet_native_stderr:  # noqa: N801  (used as a context manager, like contextlib's)
    """Within the block, native code's writes to stderr (fd 2) are held; decoder noise is dropped and the
    rest written out after. Serialised by a lock: fd 2 is one per process."""

    def __enter__(self) -> None:
        global _scratch
        _lock.acquire()
        try:
            if _scratch is None:
                _scratch = tempfile.TemporaryFile()
            _scratch.seek(0)
            _scratch.truncate()
            sys.stderr.flush()
            self.saved = os.dup(2)
            os.dup2(_scratch.fileno(), 2)
        except BaseException:
            _lock.release()
            raise

    def __exit__(self, *exc: object) -> None:
        try:
            try:
                sys.stderr.flush()
            except (OSError, ValueError):
                pass
            os.dup2(self.saved, 2)
            os.close(self.saved)
            _scratch.seek(0)
            held = _scratch.read(1 << 20)
        finally:
            _lock.release()
        kept = b"".join(line for line in held.splitlines(keepends=True) if not DECODER_NOISE.match(line))
        if kept:
            os.write(2, kept)


def imread(path: str | Path, flags: int = cv2.IMREAD_UNCHANGED) -> np.ndarray | None:
    """cv2.imread, quietly: None for a missing, unreadable, corrupt or (beyond OpenCV's pixel limit) huge file."""
    with quiet_native_stderr():
        try:
            img = cv2.imread(str(path), flags)
        except cv2.error:
            img = None
    return None if img is None or img.size == 0 else img
