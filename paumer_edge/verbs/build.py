"""`paumer-edge build`: TensorRT engines for an existing bundle."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ..export.tensorrt_build import EngineOptions, build_engines


def engine_options(a: argparse.Namespace) -> EngineOptions:
    precision = "int8" if a.int8 else "fp16" if a.fp16 else getattr(a, "precision", None) or "fp32"
    opts = EngineOptions(precision=precision, budgets=tuple(a.engine_budgets), calib_dir=a.calib,
                         dla_core=a.dla, workspace_gib=a.workspace)
    opts.validate()
    return opts


def build_and_report(bundle: Path, opts: EngineOptions, quiet: bool = False) -> None:
    t0 = time.perf_counter()
    entries = build_engines(bundle, opts, progress=not quiet)
    built = ", ".join(f"{e.graph} {e.build_s:.0f}s" for e in entries)
    print(f"built {len(entries)} {opts.precision} TensorRT engines in {time.perf_counter() - t0:.1f} s ({built})")


def run(a: argparse.Namespace) -> int:
    build_and_report(Path(a.bundle), engine_options(a), quiet=a.quiet)
    return 0
