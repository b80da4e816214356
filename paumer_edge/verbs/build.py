"""`paumer-edge build`: TensorRT engines for an existing bundle."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, TypeVar

import click

from .params import FLOATS, quiet

if TYPE_CHECKING:
    from ..export.tensorrt_build import EngineOptions

F = TypeVar("F", bound=Callable[..., Any])


def engine_option_decorators(f: F) -> F:
    """The engine options `build` and `export --trt` share."""
    options = [
        click.option("--fp16", is_flag=True, help="Half-precision engines."),
        click.option("--int8", is_flag=True, help="INT8 engines, calibrated on --calib images (TensorRT 10)."),
        click.option("--calib", metavar="DIR", help="Folder of typical frames for INT8 calibration."),
        click.option("--engine-budgets", type=FLOATS, default="0.5",
                     help="Budgets the engines are tuned for: one optimisation profile each."),
        click.option("--dla", type=int, help="Build for this DLA core (Jetson), falling back to the GPU."),
        click.option("--workspace", type=float, default=2.0, help="Builder workspace in GiB."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


@click.command("build", help="Build TensorRT engines for BUNDLE on this GPU: one per graph, an optimisation profile "
               "per expected budget, keyed by graph, TensorRT version, GPU and precision, recorded in the manifest.")
@click.argument("bundle", type=click.Path(exists=True, file_okay=False))
@engine_option_decorators
@quiet
def command(**options: Any) -> int:
    a = SimpleNamespace(**options)
    build_and_report(Path(a.bundle), engine_options(a), quiet=a.quiet)
    return 0


def engine_options(a: SimpleNamespace) -> EngineOptions:
    from ..export.tensorrt_build import EngineOptions

    precision = "int8" if a.int8 else "fp16" if a.fp16 else "fp32"
    opts = EngineOptions(precision=precision, budgets=tuple(a.engine_budgets), calib_dir=a.calib,
                         dla_core=a.dla, workspace_gib=a.workspace)
    opts.validate()
    return opts


def build_and_report(bundle: Path, opts: EngineOptions, quiet: bool = False) -> None:
    from ..export.tensorrt_build import build_engines

    t0 = time.perf_counter()
    entries = build_engines(bundle, opts, progress=not quiet)
    built = ", ".join(f"{e.graph} {e.build_s:.0f}s" for e in entries)
    print(f"built {len(entries)} {opts.precision} TensorRT engines in {time.perf_counter() - t0:.1f} s ({built})")
