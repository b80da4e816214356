"""Where a benchmark figure came from: the command, the code (git commit, dirty or not), the machine, its load, when."""

from __future__ import annotations

import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def provenance(load_start: float | None = None) -> dict[str, Any]:
    """The record every benchmark JSON carries; `load_start`: the 1-minute load average when the run began."""
    import numpy as np
    import onnxruntime

    from paumer_edge import __version__

    changes = _git("status", "--porcelain", "--untracked-files=no")
    return {
        "command": "python " + " ".join(shlex.quote(a) for a in sys.argv),
        "git_commit": _git("rev-parse", "HEAD"), "git_dirty": bool(changes),
        "machine": f"{platform.machine()} {cpu_model()} x{os.cpu_count()}",
        "load_average": {"start": None if load_start is None else round(load_start, 2),
                         "end": round(os.getloadavg()[0], 2)},
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "versions": {"paumer_edge": __version__, "onnxruntime": onnxruntime.__version__, "numpy": np.__version__,
                     "python": platform.python_version()},
    }
