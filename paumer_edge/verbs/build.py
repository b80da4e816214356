"""`paumer-edge build`: TensorRT engines for an existing bundle (INT8: from its Q/DQ graphs, made first if needed)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ..export.quantize import QuantOptions
from ..export.tensorrt_build import EngineOptions, build_engines


def quant_options(a: argparse.Namespace) -> QuantOptions:
    """How to make INT8 Q/DQ graphs, from the --calib options."""
    opts = QuantOptions(calib_dir=a.calib, calib_images=a.calib_images, method=a.calib_method or QuantOptions.method)
    opts.validate()
    return opts


def engine_options(a: argparse.Namespace, quantize: bool | None = None) -> EngineOptions:
    """`quantize`: (re)make the INT8 graphs first (default: when --calib or --calib-method asks for it; a bundle
    without INT8 graphs gets them in any case)."""
    precision = "int8" if a.int8 else "fp16" if a.fp16 else getattr(a, "precision", None) or "fp32"
    if quantize is None:
        quantize = a.calib is not None or a.calib_method is not None
    quant = quant_options(a) if precision == "int8" and quantize else None
    opts = EngineOptions(precision=precision, budgets=tuple(a.engine_budgets), quant=quant, dla_core=a.dla,
                         workspace_gib=a.workspace)
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
