"""Test helpers that bound what code under test may take (address space, via resource.setrlimit) and run the CLI
in-process up to the point where a verb would start its work."""

from __future__ import annotations

import resource
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest


def address_space() -> int:
    """This process's virtual memory size in bytes (Linux: /proc/self/status VmSize)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    raise OSError("no VmSize in /proc/self/status")


@contextmanager
def memory_cap(extra: int) -> Iterator[None]:
    """Within the block, this process may map at most `extra` bytes more than it has now: an allocation beyond
    fails (MemoryError) instead of exhausting the machine. The soft limit is restored after."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    cap = address_space() + extra
    if hard != resource.RLIM_INFINITY:
        cap = min(cap, hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


class Reached(Exception):
    """A command got past every check to the work it would now do."""


def main_until(argv: list[str], seams: list[tuple[Any, str]], extra: int = 2 << 30) -> tuple[int | None, float]:
    """`paumer_edge.cli.main(argv)` in-process under a memory cap of `extra` more bytes, with each (module, name) in
    `seams` replaced by a stop: (None, seconds) when the command reached one, else (exit code, seconds) (as the
    process would exit: a SystemExit included)."""
    from paumer_edge import cli

    def stop(*args: Any, **kwargs: Any) -> Any:
        raise Reached

    with pytest.MonkeyPatch.context() as mp:
        for module, name in seams:
            mp.setattr(module, name, stop)
        t0 = time.perf_counter()
        try:
            with memory_cap(extra):
                code: int | None = cli.main(argv)
        except Reached:
            code = None
        except SystemExit as e:  # a command line library may end the process itself
            code = e.code if isinstance(e.code, int) else 1
    return code, time.perf_counter() - t0
