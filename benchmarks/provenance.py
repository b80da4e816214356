"""Where a benchmark figure came from: the command, the code (git commit, dirty or not), the machine and its load,
the date and the library versions. Every benchmark JSON carries it, so a number in the README can be traced."""

from __future__ import annotations

import datetime
import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CPU_FEATURES = ("avx2", "avx512f", "avx512_vnni", "avx512vnni", "avx_vnni", "amx_int8", "asimddp", "i8mm")


def _git(*args: str) -> str:
    try:
        out = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


def cpu() -> dict[str, Any]:
    """Processor model, cores and the vector / integer dot-product features INT8 kernels care about."""
    model, flags = platform.processor(), set[str]()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip().lower()
            if key in ("model name", "hardware") and not model:
                model = value.strip()
            elif key == "model name":
                model = value.strip()
            elif key in ("flags", "features") and not flags:
                flags = set(value.split())
    except OSError:
        pass
    return {"model": model, "cores": os.cpu_count(), "arch": platform.machine(),
            "int8_features": sorted(f for f in CPU_FEATURES if f in flags)}


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def provenance(argv: list[str] | None = None) -> dict[str, Any]:
    """The provenance block of a benchmark JSON (call at the start; add `load_average_end` at the end)."""
    import numpy
    import onnxruntime

    argv = sys.argv if argv is None else argv
    commit = _git("rev-parse", "HEAD")
    return {
        "command": " ".join(shlex.quote(a) for a in ["python", *argv]),
        "git_commit": commit,
        "git_dirty": bool(_git("status", "--porcelain", "--untracked-files=no")) if commit else None,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": {**cpu(), "platform": platform.platform()},
        "load_average_start": load_average(),
        "versions": {"python": platform.python_version(), "onnxruntime": onnxruntime.__version__,
                     "numpy": numpy.__version__},
    }
