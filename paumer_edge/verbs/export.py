"""`paumer-edge export`: checkpoint -> verified deployment bundle (+ TensorRT engines with --trt)."""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import click

from .. import UserError
from ..core.knobs import check_count, check_size
from ..core.paths import Input, Output, guard_paths
from .build import engine_option_decorators
from .bundles import needs_torch
from .params import FLOATS, SIZE, memory_limit_option, quiet

SAMPLE_BUNDLE = Path("sample.paumer")
MAX_BATCH = 4096  # engine profiles' largest batch


@click.command("export", help="Turn CKPT (a paumer-edge checkpoint; default: the bundled sample model) into a "
               "deployment bundle: staged ONNX graphs split at the pausing points, the unsplit full graph and a "
               "manifest, written atomically, then verified against PyTorch (exit 1 beyond tolerance).")
@click.argument("ckpt", required=False)
@click.option("-o", "--out", metavar="DIR", help="Bundle directory [default: beside the checkpoint, CKPT.paumer; "
              "./sample.paumer for the sample].")
@click.option("--image-size", type=SIZE, help="HxW the graphs take [default: the checkpoint's].")
@click.option("--extra-sizes", type=str, metavar="HxW,...",
              help="Also the staged graphs at these input sizes, as variants of the bundle (e.g. 96x192,64x128).")
@click.option("--opset", type=int, default=18, help="ONNX opset, 17 or 18.")
@click.option("--batch", type=FLOATS, default="1,1,8", help="Batch sizes of the engine profiles: N or MIN,OPT,MAX.")
@click.option("--scores", is_flag=True, help="The decoder also outputs class probabilities (for sliding windows).")
@click.option("--no-reuse", is_flag=True, help="Leave out the temporal-reuse graphs (stage<k>_reuse): a smaller bundle "
              "and a faster export; `run` then processes every video frame in full.")
@click.option("--no-verify", is_flag=True, help="Skip the parity check against PyTorch.")
@click.option("--report", metavar="FILE", help="Write the verify report as JSON here.")
@click.option("--trt", is_flag=True, help="Also build TensorRT engines (needs a GPU and TensorRT).")
@engine_option_decorators
@memory_limit_option
@quiet
def command(**options: Any) -> int:
    needs_torch("export")
    return run(SimpleNamespace(**options))


def default_bundle_path(ckpt: Path, sample: Path) -> Path:
    """Next to the checkpoint; for the bundled sample (inside the package), in the working directory."""
    return SAMPLE_BUNDLE if ckpt == sample else ckpt.with_suffix(".paumer")


def extra_sizes(text: str | None) -> tuple[tuple[int, int], ...]:
    from .params import parse_size

    try:
        return tuple(check_size(parse_size(t), "--extra-sizes") for t in (text or "").split(",") if t.strip())
    except ValueError as e:
        raise UserError(f"--extra-sizes: {e}") from None


def run(a: SimpleNamespace) -> int:
    from ..checkpoint import SAMPLE_CHECKPOINT, load_checkpoint, model_from_checkpoint, resolve_checkpoint
    from ..core.atomic import write_json_atomic
    from ..export.exporter import ExportOptions, export_bundle
    from ..export.verify import verify_bundle
    from ..runtime.gpu import cuda_runtime, gpu_info, tensorrt_module
    from .build import build_and_report, engine_options

    engines = engine_options(a) if a.trt else None
    if a.trt:  # fail before spending a minute on ONNX when engines cannot be built here
        tensorrt_module()
        gpu_info(cuda_runtime())
    ckpt = resolve_checkpoint(a.ckpt)
    out = Path(a.out) if a.out else default_bundle_path(ckpt, SAMPLE_CHECKPOINT)
    image_size = None if a.image_size is None else check_size(a.image_size, "--image-size")
    opts = ExportOptions(image_size=image_size, opset=a.opset, batch=check_batch(a.batch), scores=a.scores,
                         extra_sizes=extra_sizes(a.extra_sizes), reuse=not a.no_reuse)
    guard_paths([*Input.of("checkpoint", ckpt), *Input.of("--calib", getattr(a, "calib", None), "folder")],
                [*Output.of("the bundle", out, "tree"), *Output.of("--report", a.report)])
    model = model_from_checkpoint(load_checkpoint(ckpt)).eval()
    t0 = time.perf_counter()
    export_bundle(model, out, opts, source=str(ckpt), progress=not a.quiet)
    export_s = time.perf_counter() - t0
    size_mb = sum(p.stat().st_size for p in out.rglob("*.onnx")) / 1e6
    ok = True
    verdict = "not verified (--no-verify)"
    if not a.no_verify:
        t1 = time.perf_counter()
        report = verify_bundle(out, model)
        print(report.summary())
        if a.report:
            write_json_atomic(Path(a.report), report.to_json())
        ok = report.ok
        worst = max((c.value for c in report.checks if c.kind == "max_abs_err"), default=0.0)
        agree = min((c.value for c in report.checks if c.kind == "agreement"), default=1.0)
        verdict = (f"verified in {time.perf_counter() - t1:.1f} s: max error {worst:.1e}, "
                   f"min label agreement {100 * agree:.2f}%" + ("" if ok else " -- BEYOND TOLERANCE"))
    if engines is not None and ok:
        build_and_report(out, engines, quiet=a.quiet)
    print(f"exported {out} ({len(list(out.rglob('*.onnx')))} graphs, {size_mb:.1f} MB) in {export_s:.1f} s; "
          f"{verdict}")
    return 0 if ok else 1


def check_batch(values: list[float]) -> tuple[int, int, int]:
    if len(values) not in (1, 3):
        raise UserError("--batch takes N or MIN,OPT,MAX (whole numbers)")
    ints = [check_count(v, "--batch", 1, MAX_BATCH) for v in values]
    return (1, ints[0], ints[0]) if len(ints) == 1 else (ints[0], ints[1], ints[2])
