"""Atomic file writes: readers see the old file or the new one, never half of one (no torch here).

Everything the toolkit writes goes through here (or `replace_atomic` for files written in pieces):
the bytes go to a temporary file beside the target, are flushed to disk, and are renamed over the
target in one step. A crash, Ctrl-C or full disk leaves the previous file as it was and no temporary
behind; a failed write is an `OutputError` saying which file and why, in one line.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .errors import OutputError

_ADVICE = {
    errno.ENOSPC: "the disk is full: free some space or write elsewhere",
    errno.EDQUOT: "the disk quota is used up: free some space or write elsewhere",
    errno.EROFS: "the file system is read-only: write elsewhere",
    errno.EACCES: "permission denied: write elsewhere or fix the folder's permissions",
    errno.EPERM: "not permitted: write elsewhere or fix the folder's permissions",
    errno.EFBIG: "the file is too large for this file system",
    errno.ENAMETOOLONG: "the name is too long",
}


def output_error(e: OSError, path: str | Path) -> OutputError:
    """A one-line error for a failed write of `path` (the previous file, if any, is untouched)."""
    why = _ADVICE.get(e.errno or 0) or (e.strerror or str(e) or type(e).__name__)
    err = OutputError(f"cannot write '{path}': {why}; nothing was changed there")
    err.errno, err.filename = e.errno, str(path)
    return err


def temp_path(path: Path) -> Path:
    """A hidden temporary name beside `path`, unique per process and thread, with the same suffix
    (OpenCV and matplotlib pick the format from it)."""
    return path.with_name(f".{path.stem}.partial-{os.getpid()}-{threading.get_ident()}{path.suffix}")


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # some platforms cannot open folders; the rename is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def replace_atomic(tmp: str | Path, path: str | Path, durable: bool = True) -> None:
    """Move a finished temporary file over `path` in one step (fsynced first when `durable`)."""
    tmp, path = Path(tmp), Path(path)
    try:
        if durable:
            _fsync_file(tmp)
        os.replace(tmp, path)
        if durable:
            _fsync_dir(path.parent)
    except OSError as e:
        raise output_error(e, path) from None


def replace_dir_atomic(tmp: Path, out: Path, ours: Callable[[Path], bool], what: str) -> None:
    """Swap a finished directory into place; an existing one at `out` survives until the swap.

    An existing non-empty `out` that `ours` does not recognise (as a `what`) is refused, never replaced."""
    old = None
    if out.exists():
        if not ours(out) and any(out.iterdir()):
            raise OutputError(f"'{out}' exists and is not a {what}; refusing to replace it")
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, old)
    try:
        os.replace(tmp, out)
    except BaseException:
        if old is not None:
            os.replace(old, out)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@contextmanager
def atomic_path(path: str | Path, durable: bool = True) -> Iterator[Path]:
    """Write to the yielded temporary path; on success it replaces `path`, on any error it is removed.

    `durable=False` skips the fsyncs: still atomic against crashes of this process, not against power loss
    (for many small files written in a stream, such as per-frame label images).
    """
    path = Path(path)
    tmp = temp_path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        yield tmp
        replace_atomic(tmp, path, durable)
    except OutputError:
        raise
    except OSError as e:
        raise output_error(e, path) from None
    finally:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass


def write_bytes_atomic(path: str | Path, data: bytes, durable: bool = True) -> None:
    with atomic_path(path, durable) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(path: str | Path, text: str, durable: bool = True) -> None:
    with atomic_path(path, durable) as tmp:
        tmp.write_text(text)


def write_json_atomic(path: str | Path, payload: object) -> None:
    text = json.dumps(payload, indent=2)  # before touching the disk: an unserialisable payload changes nothing
    write_text_atomic(path, text)


def save_figure_atomic(fig: Any, path: str | Path, dpi: int = 120) -> None:
    """A matplotlib figure saved atomically (the format follows the suffix, which the temporary keeps)."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi)
