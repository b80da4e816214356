"""Where a benchmark figure came from: the command, the code (git commit, dirty or not), the machine, its load, when.

Every benchmark JSON carries this block, so a number in the README can be traced to what produced it.
"""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path
from typing import Any

from paumer_edge.core.provenance import Provenance


def provenance(argv: list[str] | None = None) -> Provenance:
    """Start the record of a measurement (paumer_edge.core.provenance, the one helper): call it at the start,
    store `.finish()` under "provenance" in the results JSON (that adds the load average at the end)."""
    return Provenance.start(argv=None if argv is None else [sys.executable, sys.argv[0], *argv])


CPU_FEATURES = ("avx2", "avx512f", "avx512_vnni", "avx512vnni", "avx_vnni", "amx_int8", "asimddp", "i8mm")


def cpu() -> dict[str, Any]:
    """Processor model, cores and the vector / integer dot-product features INT8 kernels care about."""
    model, flags = platform.processor(), set[str]()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip().lower()
            if key in ("model name", "hardware"):
                model = value.strip()
            elif key in ("flags", "features") and not flags:
                flags = set(value.split())
    except OSError:
        pass
    return {"model": model, "cores": os.cpu_count(), "arch": platform.machine(),
            "int8_features": sorted(f for f in CPU_FEATURES if f in flags)}


def rss_mib(pid: int | str = "self") -> float:
    """Resident memory of a process, in MiB (Linux /proc)."""
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def cpu_seconds(pid: int | str = "self") -> float:
    """User + system CPU time a process has used (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
