"""Where a benchmark figure came from: the command, the code (git commit, dirty or not), the machine, its load, when.

Every benchmark JSON carries this block, so a number in the README can be traced to what produced it.
"""

from __future__ import annotations

import os
import sys

from paumer_edge.core.provenance import Provenance


def provenance(argv: list[str] | None = None) -> Provenance:
    """Start the record of a measurement (paumer_edge.core.provenance, the one helper): call it at the start,
    store `.finish()` under "provenance" in the results JSON (that adds the load average at the end)."""
    return Provenance.start(argv=None if argv is None else [sys.executable, sys.argv[0], *argv])


def rss_mib(pid: int | str = "self") -> float:
    """Resident memory of a process, in MiB (Linux /proc)."""
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def cpu_seconds(pid: int | str = "self") -> float:
    """User + system CPU time a process has used (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
