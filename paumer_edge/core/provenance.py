"""Where a measurement came from: the provenance every benchmark result records (torch-free).

A figure is only as good as what it can be traced to. `Provenance.start(...)` notes, when a measurement
begins, the exact command line, the git commit of the code (and whether its tracked files differed from
it), what was measured (a bundle: its graphs' hash and graph revision; a checkpoint: its sha256), the
machine, the load average (other work on a shared host skews times), the date and the versions of the
packages that do the work; `finish()` adds the load at the end and the wall time, as a dict for the JSON.
The README's figures test (tests/test_readme_figures.py) requires it in every JSON the README quotes.
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import os
import platform
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the CLI imports this module for every verb: standard library only at run time
    from .contract import Manifest

# the packages whose versions decide a result; those not installed are left out
PACKAGES = ("paumer-edge", "numpy", "onnxruntime", "onnxruntime-gpu", "onnx", "torch", "tensorrt",
            "opencv-python-headless")
# benchmark outputs are not inputs: a result written before another one does not make the code dirty
OUTPUTS = "benchmarks/results"


@functools.cache
def machine() -> str:
    """This machine in one line: architecture, processor model and cores ("x86_64 AMD EPYC 7B13 x2"). Where the model
    name does not say the generation (a cloud VM's "AMD EPYC"), the x86 family and model numbers follow it: two such
    hosts can differ threefold in speed, and latency profiles and benchmark records must tell them apart."""
    model = platform.processor() or ""
    numbers: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip().lower()
            if key in ("model name", "hardware") and "name" not in numbers:
                model, numbers["name"] = value.strip(), value.strip()
            elif key in ("cpu family", "model") and key not in numbers:
                numbers[key] = value.strip()
            elif not key and numbers:
                break  # the first processor's block is enough
    except OSError:
        pass
    if not any(ch.isdigit() for ch in model) and "cpu family" in numbers and "model" in numbers:
        model = f"{model} (family {numbers['cpu family']}, model {numbers['model']})"
    if "name" not in numbers:  # arm64 kernels name no processor: the board's name (a Jetson, a Raspberry Pi)
        try:
            board = Path("/proc/device-tree/model").read_text(errors="replace").strip("\x00 \n")
        except OSError:
            board = ""
        model = board or model
    return " ".join(part for part in (platform.machine(), model, f"x{os.cpu_count()}") if part)


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages (None where the system has none)."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (OSError, AttributeError):
        return None


_cli_args: ContextVar[tuple[str, ...] | None] = ContextVar("paumer_edge_cli_args", default=None)


@contextmanager
def cli_invocation(args: Sequence[str]) -> Iterator[None]:
    """Within this block, the command line is `paumer-edge ARGS` (the CLI's `main(argv)`, also when called
    in-process, e.g. from a script or a test, where the process's own command line says something else)."""
    token = _cli_args.set(tuple(args))
    try:
        yield
    finally:
        _cli_args.reset(token)


def command_line(argv: Sequence[str] | None = None) -> str:
    """The command as a user would type it again: `paumer-edge VERB ...` for the CLI, else `python SCRIPT ...`."""
    if argv is None and _cli_args.get() is not None:
        return shlex.join(["paumer-edge", *(_cli_args.get() or ())])
    args = list(argv if argv is not None else getattr(sys, "orig_argv", [sys.executable, *sys.argv]))
    if args and Path(args[0]).name.startswith("python"):
        args = ["python", *args[1:]]
        if args[1:3] == ["-m", "paumer_edge.cli"]:
            args = ["paumer-edge", *args[3:]]
        elif len(args) > 1 and Path(args[1]).name == "paumer-edge":
            args = ["paumer-edge", *args[2:]]
        elif len(args) > 1 and Path(args[1]).is_absolute():
            args[1] = _relative(args[1])
    elif args and Path(args[0]).name == "paumer-edge":
        args[0] = "paumer-edge"
    return shlex.join(args)


def _relative(path: str) -> str:
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return path


def git_state(where: str | Path | None = None) -> dict[str, Any]:
    """The commit of the git checkout holding `where` (default: this package) and whether its tracked files
    differ from it (benchmark outputs aside); {"commit": None} outside a checkout or without git."""
    root = Path(where) if where is not None else Path(__file__).resolve().parents[2]

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, check=True,
                              timeout=30).stdout

    try:
        commit = git("rev-parse", "HEAD").strip()
        changed = git("status", "--porcelain", "--untracked-files=no", "--", ".", f":(exclude){OUTPUTS}")
    except (OSError, subprocess.SubprocessError):
        return {"commit": None}
    files = [line[3:] for line in changed.splitlines() if line.strip()]  # "XY path"
    return {"commit": commit, "dirty": bool(files), **({"dirty_files": files[:20]} if files else {})}


def bundle_identity(manifest: Manifest, path: str | Path = "") -> dict[str, Any]:
    """What identifies a bundle's graphs: one hash over every graph's sha256 (variants included), the graph
    revision of the exporter that wrote them, and the checkpoint they came from."""
    graphs = sorted(manifest.graphs.items()) + sorted(
        (f"{v.name}/{n}", g) for v in manifest.variants for n, g in v.graphs.items())
    digest = hashlib.sha256("|".join(f"{n}={g.sha256}" for n, g in graphs).encode()).hexdigest()
    return {"path": str(path), "graphs_sha256": digest, "graphs_revision": manifest.exporter.graphs_revision,
            "format_version": manifest.format_version, "source": manifest.source, "created": manifest.created}


def file_identity(path: str | Path) -> dict[str, Any]:
    """A file (a checkpoint) by path and sha256."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return {"path": str(path), "sha256": h.hexdigest()}


def package_versions(names: Sequence[str] = PACKAGES) -> dict[str, str]:
    """Installed versions (read from package metadata: nothing is imported), plus Python's."""
    found = {"python": platform.python_version()}
    for name in names:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


@dataclass
class Provenance:
    """The provenance of one measurement; `start()` at its beginning, `finish()` into the result's JSON."""

    command: str
    git: dict[str, Any]
    machine: str
    cpus: int | None
    platform: str
    date: str  # ISO 8601, UTC, when the measurement started
    load_average_start: list[float] | None
    packages: dict[str, str]
    measured: dict[str, Any] = field(default_factory=dict)  # the bundle's identity, and the files' (checkpoint, ...)
    _t0: float = field(default=0.0, repr=False)

    @classmethod
    def start(cls, manifest: Manifest | None = None, bundle_path: str | Path = "",
              files: Mapping[str, str | Path | None] | None = None, argv: Sequence[str] | None = None) -> Provenance:
        """`manifest` (and its `bundle_path`): the bundle measured; `files`: other inputs by role, e.g.
        {"checkpoint": path}, recorded with their sha256 (None values are skipped)."""
        measured: dict[str, Any] = {}
        if manifest is not None:
            measured["bundle"] = bundle_identity(manifest, bundle_path)
        for role, path in (files or {}).items():
            if path is not None:
                measured[role] = file_identity(path)
        return cls(command=command_line(argv), git=git_state(), machine=machine(), cpus=os.cpu_count(),
                   platform=platform.platform(), date=now(), load_average_start=load_average(),
                   packages=package_versions(), measured=measured, _t0=time.monotonic())

    def finish(self) -> dict[str, Any]:
        """The record, with the load average at the end and the wall time since `start()`."""
        record = {k: v for k, v in asdict(self).items() if not k.startswith("_")}
        record.update(load_average_end=load_average(), wall_s=round(time.monotonic() - self._t0, 1))
        return record


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


REQUIRED = ("command", "git", "machine", "date", "load_average_start", "load_average_end", "packages")
# the flat records written before this module (results of issues 17 and 19 by benchmarks/provenance.py, of issue
# 14 by compare and its scripts): command, commit, machine, load and date, without package versions or the bundle's
# identity; keyed by the name each gave the commit
REQUIRED_FLAT = {"git_commit": ("command", "git_commit", "git_dirty", "machine", "date"),
                 "commit": ("command", "commit", "dirty", "machine", "date")}


def missing_fields(record: Any) -> list[str]:
    """What a JSON's provenance record lacks (all of it when there is none): for checks of committed results."""
    if not isinstance(record, dict):
        return list(REQUIRED)
    flat = next((fields for key, fields in REQUIRED_FLAT.items() if key in record), None)
    if flat is not None:
        gaps = [k for k in flat if not record.get(k) and record.get(k) is not False]
        loads = {"load_average_1_5_15", "load_average_start", "load_average"}
        return gaps + ([] if loads & set(record) else ["load_average"])
    gaps = [k for k in REQUIRED if k not in record]
    if isinstance(record.get("git"), dict) and not record["git"].get("commit"):
        gaps.append("git.commit")
    return gaps


def is_flat(record: Any) -> bool:
    """Whether a provenance record is the older flat one (no package versions, no bundle identity)."""
    return isinstance(record, dict) and any(key in record for key in REQUIRED_FLAT)
