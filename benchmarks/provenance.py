"""Where a benchmark figure came from: the command, the code (git commit, dirty or not), the machine, its load, when.

Every benchmark JSON carries this block, so a number in the README can be traced to what produced it.
"""

from __future__ import annotations

import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def provenance(argv: list[str] | None = None) -> dict[str, Any]:
    """The block to store under "provenance" in a results JSON (load average read now: call it at the start)."""
    args = sys.argv if argv is None else [sys.argv[0], *argv]
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = []
    return {"command": "python " + shlex.join([os.path.relpath(args[0], ROOT), *args[1:]]),
            "git_commit": _git("rev-parse", "HEAD") or None, "git_dirty": bool(_git("status", "--porcelain")),
            "machine": f"{platform.machine()} {platform.processor()}".strip(), "cpus": os.cpu_count(),
            "system": platform.platform(), "python": platform.python_version(), "load_average_1_5_15": load,
            "date": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def rss_mib(pid: int | str = "self") -> float:
    """Resident memory of a process, in MiB (Linux /proc)."""
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def cpu_seconds(pid: int | str = "self") -> float:
    """User + system CPU time a process has used (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
