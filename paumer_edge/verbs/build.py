"""`paumer-edge build`: TensorRT engines for an existing bundle (INT8: from its Q/DQ graphs, made first if needed)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, TypeVar

import click

from .. import UserError
from ..core.knobs import (
    CALIB_METHODS,
    DEFAULT_CALIB_IMAGES,
    DEFAULT_CALIB_METHOD,
    check_calib_images,
    check_calib_method,
)
from .params import FLOATS, quiet

if TYPE_CHECKING:
    from ..export.quantize import QuantOptions
    from ..export.tensorrt_build import EngineOptions

F = TypeVar("F", bound=Callable[..., Any])


def calib_option_decorators(int8_help: str) -> Callable[[F], F]:
    """--int8 (with what it does for the verb) and the calibration options `export` and `build` share."""
    options = [
        click.option("--int8", is_flag=True, help=int8_help),
        click.option("--calib", metavar="DIR", help="Folder of typical frames to calibrate INT8 on [default: "
                     "rendered street scenes; your own camera's frames calibrate better]."),
        click.option("--calib-images", type=int, default=DEFAULT_CALIB_IMAGES, help="Calibration frames to use."),
        click.option("--calib-method", type=click.Choice(CALIB_METHODS),
                     help="How activation ranges are calibrated (ONNX Runtime's calibrators) [default: "
                          f"{DEFAULT_CALIB_METHOD}, the most accurate on the sample model]."),
    ]

    def apply(f: F) -> F:
        for option in reversed(options):
            f = option(f)
        return f

    return apply


def engine_option_decorators(f: F) -> F:
    """The engine options `build` and `export --trt` share (--int8 and calibration come with the verb)."""
    options = [
        click.option("--fp16", is_flag=True, help="Half-precision engines."),
        click.option("--engine-budgets", type=FLOATS, default="0.5",
                     help="Budgets the engines are tuned for: one optimisation profile each."),
        click.option("--dla", type=int, help="Build for this DLA core (Jetson), falling back to the GPU."),
        click.option("--workspace", type=float, default=2.0, help="Builder workspace in GiB."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


@click.command("build", help="Build TensorRT engines for BUNDLE on this GPU: one per graph, an optimisation profile "
               "per expected budget, keyed by graph, TensorRT version, GPU and precision, recorded in the manifest. "
               "INT8 engines are built from the bundle's INT8 Q/DQ graphs (explicit quantization, TensorRT 10 and "
               "11), which are made first when the bundle has none.")
@click.argument("bundle", type=click.Path(exists=True, file_okay=False))
@engine_option_decorators
@calib_option_decorators("INT8 engines from the bundle's INT8 Q/DQ graphs (made first, on --calib frames, when the "
                         "bundle has none or --calib / --calib-method is given).")
@quiet
def command(**options: Any) -> int:
    a = SimpleNamespace(**options)
    check_calib_flags(a)
    build_and_report(Path(a.bundle), engine_options(a), quiet=a.quiet)
    return 0


def check_calib_flags(a: SimpleNamespace) -> None:
    """Calibration options calibrate INT8 graphs: without --int8 they would be silently ignored."""
    given = [flag for flag, value in (("--calib", a.calib), ("--calib-method", a.calib_method)) if value is not None]
    if given and not a.int8:
        raise UserError(f"{' and '.join(given)} only apply to INT8 graphs: add --int8")


def quant_options(a: SimpleNamespace) -> QuantOptions:
    """How to make INT8 Q/DQ graphs, from the calibration options."""
    from ..export.quantize import QuantOptions

    method = QuantOptions.method if a.calib_method is None else check_calib_method(a.calib_method, "--calib-method")
    opts = QuantOptions(calib_dir=a.calib, calib_images=check_calib_images(a.calib_images, "--calib-images"),
                        method=method)
    opts.validate()
    return opts


def engine_options(a: SimpleNamespace, quantize: bool | None = None) -> EngineOptions:
    """`quantize`: (re)make the INT8 graphs first (default: when --calib or --calib-method asks for it; a bundle
    without INT8 graphs gets them in any case)."""
    from ..export.tensorrt_build import EngineOptions

    precision = "int8" if a.int8 else "fp16" if a.fp16 else "fp32"
    if quantize is None:
        quantize = a.calib is not None or a.calib_method is not None
    quant = quant_options(a) if precision == "int8" and quantize else None
    opts = EngineOptions(precision=precision, budgets=tuple(a.engine_budgets), quant=quant, dla_core=a.dla,
                         workspace_gib=a.workspace)
    opts.validate()
    return opts


def build_and_report(bundle: Path, opts: EngineOptions, quiet: bool = False) -> None:
    from ..export.tensorrt_build import build_engines

    t0 = time.perf_counter()
    entries = build_engines(bundle, opts, progress=not quiet)
    built = ", ".join(f"{e.graph} {e.build_s:.0f}s" for e in entries)
    print(f"built {len(entries)} {opts.precision} TensorRT engines in {time.perf_counter() - t0:.1f} s ({built})")
