"""The path guard: an output must never be an input, and must be writable, before any work starts (torch-free).

Every verb states what it reads and what it writes and calls `guard_paths` once, before it loads a model
or decodes a frame. It refuses, each with one line naming both paths:
- an output file that is an input: the same path, a hard link to it (the same inode), a symbolic link to it
  (or a path through a linked folder that resolves to it), or an input folder;
- an output folder that files are written into (label PNGs) which is a folder inputs are read from;
- an output inside an input read as a whole (a bundle folder);
- an output that is replaced whole (a bundle folder) and holds an input;
- two outputs that are the same file;
- an output whose place cannot take a file: a read-only or virtual file system (/proc, /sys), a folder
  without write permission, a parent that is a file. A file is created there and removed again, so the
  message names what really happened instead of a failure after minutes of work.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from .atomic import output_error, temp_path
from .errors import OutputError, UserError

PathLike = str | os.PathLike[str]

__all__ = ["Input", "Output", "guard_paths", "probe_writable", "same_file", "virtual_fs_error"]


@dataclass(frozen=True)
class Input:
    """Something read: a `file`, a `folder` files are read from (an image folder, a dataset), or a `tree`: a
    folder read as a whole (a bundle), inside which nothing may be written."""

    label: str  # how the user gave it: "the source", "--model", "checkpoint"
    path: Path
    kind: str = "file"

    @classmethod
    def of(cls, label: str, path: PathLike | None, kind: str | None = None) -> list[Input]:
        """[] for a path not given; `kind` None: a folder is a tree (a bundle), anything else a file."""
        if path is None or str(path) == "":
            return []
        return [cls(label, Path(path), kind or ("tree" if _is_dir(Path(path)) else "file"))]


@dataclass(frozen=True)
class Output:
    """Something written: a `file` (written whole, renamed into place), a `folder` that files are written
    into (label PNGs), or a `tree`: a folder replaced whole (a bundle)."""

    label: str
    path: Path
    kind: str = "file"

    @classmethod
    def of(cls, label: str, path: PathLike | None, kind: str = "file") -> list[Output]:
        return [] if path is None or str(path) == "" else [cls(label, Path(path), kind)]


def _exists(p: PathLike) -> bool:
    try:
        os.stat(p)
        return True
    except (OSError, ValueError):
        return False


def same_file(a: PathLike, b: PathLike) -> bool:
    """The same file or folder: one inode (hard links, symbolic links) or, for paths not there yet, one path."""
    if _exists(a) and _exists(b):
        try:
            return os.path.samefile(a, b)
        except OSError:
            pass
    return os.path.abspath(a) == os.path.abspath(b)


def _how(out: Path, inp: Path) -> str:
    """How an output path comes to be the input: said plainly, so the user sees why."""
    if os.path.abspath(out) == os.path.abspath(inp):
        return "is"
    if os.path.islink(out):
        return "is a symbolic link to"
    if os.path.realpath(out) == os.path.realpath(inp):
        return "resolves (through a symbolic link) to"
    return "is a hard link to (the same file as)"


def _under(inner: Path, outer: Path) -> bool:
    """Whether `inner` is `outer` or lies inside it (links resolved)."""
    a, b = Path(os.path.realpath(inner)), Path(os.path.realpath(outer))
    return a == b or b in a.parents


def _is_dir(p: Path) -> bool:
    try:
        return p.is_dir()
    except (OSError, ValueError):
        return False


def _check_pair(out: Output, inp: Input) -> None:
    if inp.kind == "tree" and _under(out.path, inp.path) and not same_file(out.path, inp.path):
        raise UserError(f"{out.label} '{out.path}' is inside {inp.label} '{inp.path}', which is read as a whole: "
                        "writing there could overwrite its files; give a path outside it")
    if out.kind == "tree":
        if _under(inp.path, out.path) or same_file(out.path, inp.path):
            raise UserError(f"{out.label} '{out.path}' would be replaced as a whole, but it holds {inp.label} "
                            f"'{inp.path}', which would be lost; write to another folder")
        return
    if not same_file(out.path, inp.path):
        return
    if out.kind == "folder" and _is_dir(inp.path):
        raise UserError(f"{out.label} '{out.path}' {_how(out.path, inp.path)} the folder {inp.label} is read from: "
                        "files written there could overwrite the inputs; give another folder")
    raise UserError(f"{out.label} '{out.path}' {_how(out.path, inp.path)} {inp.label} '{inp.path}': writing it "
                    "would destroy the input; give another path")


def _nearest_existing(p: Path) -> Path:
    p = Path(os.path.abspath(p))
    while not _exists(p) and p.parent != p:
        p = p.parent
    return p


def virtual_fs_error(path: PathLike, base: PathLike, label: str = "output") -> OutputError:
    """The failure to name when a folder sits on a file system without storage (its size is 0 blocks)."""
    return OutputError(f"cannot write {label} '{path}': '{base}' is on a virtual file system (such as /proc or "
                       "/sys) that cannot hold files; write elsewhere")


def probe_writable(path: PathLike, label: str = "output", kind: str = "file") -> None:
    """Refuse, in one line, an output whose place cannot take a file (see the module docstring).

    Creates nothing that stays: a probe file is created and removed in the folder that will hold the output
    (where that folder does not exist yet, its nearest existing parent is checked instead)."""
    path = Path(path)
    if kind == "file" and _is_dir(path):
        raise OutputError(f"{label} '{path}' is a folder; give a file name")
    if kind == "file" and _exists(path) and not path.is_file():  # a rename over it would replace a device node
        raise OutputError(f"{label} '{path}' is not a regular file (a device, pipe or socket); give a file path")
    if kind != "file" and _exists(path) and not _is_dir(path):
        raise OutputError(f"{label} '{path}' exists and is not a folder")
    folder = path if kind == "folder" and _is_dir(path) else path.parent
    base = _nearest_existing(folder)
    if not _is_dir(base):
        raise OutputError(f"cannot write {label} '{path}': '{base}' is a file, not a folder")
    try:
        st = os.statvfs(base)
    except OSError as e:
        raise output_error(e, path) from None
    if st.f_blocks == 0:  # procfs, sysfs, ...: they take no files of ours
        raise virtual_fs_error(path, base, label)
    if st.f_flag & os.ST_RDONLY:
        raise output_error(OSError(errno.EROFS, "Read-only file system"), path)
    if base != Path(os.path.abspath(folder)):  # the folders will be made: the nearest existing one must let us
        if not os.access(base, os.W_OK | os.X_OK):
            raise output_error(OSError(errno.EACCES, "Permission denied"), path)
        return
    probe = temp_path(base / f".probe-{path.name or 'out'}")
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as e:
        raise output_error(e, path) from None
    os.close(fd)
    try:
        os.unlink(probe)
    except OSError:
        pass


def guard_paths(inputs: Iterable[Input] | Mapping[str, PathLike | None], outputs: Iterable[Output]) -> None:
    """The one check every verb makes before working: no output is an input, and every output can be written.

    `inputs` may be a mapping label -> path (None: not given)."""
    ins = [i for label, p in inputs.items() for i in Input.of(label, p)] if isinstance(inputs, Mapping) \
        else list(inputs)
    outs = list(outputs)
    for k, out in enumerate(outs):
        for inp in ins:
            _check_pair(out, inp)
        for other in outs[:k]:
            if out.kind == other.kind == "file" and same_file(out.path, other.path):
                raise UserError(f"{other.label} and {out.label} are the same file '{out.path}': one would overwrite "
                                "the other; give each its own path")
    for out in outs:
        probe_writable(out.path, out.label, out.kind)
