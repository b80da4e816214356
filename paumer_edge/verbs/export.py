"""`paumer-edge export`: checkpoint -> verified deployment bundle (+ TensorRT engines with --trt)."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import click

from .. import UserError
from ..core.knobs import check_count, check_size
from ..core.paths import Input, Output, guard_paths
from .build import calib_option_decorators, engine_option_decorators
from .bundles import needs_torch
from .params import FLOATS, SIZE, memory_limit_option, quiet

if TYPE_CHECKING:
    from ..export.verify import VerifyReport

SAMPLE_BUNDLE = Path("sample.paumer")
MAX_BATCH = 4096  # engine profiles' largest batch


@click.command("export", help="Turn CKPT (a paumer-edge checkpoint; default: the bundled sample model) into a "
               "deployment bundle: staged ONNX graphs split at the pausing points, the unsplit full graph and a "
               "manifest, verified against PyTorch before it is written (atomically); beyond tolerance nothing is "
               "written and the exit code is 1.")
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
@click.option("--plans", is_flag=True, help="Also export smaller input sizes and measure the joint front of size and "
              "pausing on held-out images, so one budget knob picks the best of both (run and bench use it).")
@click.option("--plan-sizes", metavar="HxW,...", help="The smaller input sizes for --plans "
              "[default: 7/8, 3/4, 5/8 and 1/2 of the input].")
@click.option("--plan-data", default="synthetic", help="Dataset the plans are measured on: synthetic (its held-out "
              "val split), cityscapes:DIR or ade20k:DIR (their train split).")
@click.option("--plan-images", type=int, default=100, help="Images the plans are measured on.")
@click.option("--peers", metavar="LIST", help="Also export peer methods' graphs: dtop, coarse, tome:R, proscale:K "
              "(comma-separated; `paumer-edge compare` exports them all).")
@engine_option_decorators
@calib_option_decorators("Also write INT8 graphs (Q/DQ, calibrated on --calib frames) beside the fp32 ones, for "
                         "`run --precision int8` on CPUs and, with --trt, INT8 TensorRT engines.")
@memory_limit_option
@quiet
def command(**options: Any) -> int:
    needs_torch("export")
    return run(SimpleNamespace(**options))


def default_bundle_path(ckpt: Path, sample: Path) -> Path:
    """Next to the checkpoint; for the bundled sample (inside the package), in the working directory."""
    return SAMPLE_BUNDLE if ckpt == sample else ckpt.with_suffix(".paumer")


def extra_sizes(text: str | None, option: str = "--extra-sizes") -> tuple[tuple[int, int], ...]:
    from .params import parse_size

    try:
        return tuple(check_size(parse_size(t), option) for t in (text or "").split(",") if t.strip())
    except ValueError as e:
        raise UserError(f"{option}: {e}") from None


def run(a: SimpleNamespace) -> int:
    from ..checkpoint import SAMPLE_CHECKPOINT, load_checkpoint, model_from_checkpoint, resolve_checkpoint
    from ..core.atomic import write_json_atomic
    from ..export.exporter import ExportOptions, export_bundle
    from ..export.peer_graphs import parse_peers
    from ..export.quantize import VARIANT
    from ..export.verify import VerificationFailed, verify_bundle
    from ..runtime.gpu import cuda_runtime, gpu_info, tensorrt_module
    from .build import build_and_report, check_calib_flags, engine_options, quant_options

    check_calib_flags(a)
    quant = quant_options(a) if a.int8 else None
    engines = engine_options(a, quantize=False) if a.trt else None  # the INT8 graphs come from this export
    if a.trt:  # fail before spending a minute on ONNX when engines cannot be built here
        tensorrt_module()
        gpu_info(cuda_runtime())
    ckpt = resolve_checkpoint(a.ckpt)
    out = Path(a.out) if a.out else default_bundle_path(ckpt, SAMPLE_CHECKPOINT)
    image_size = None if a.image_size is None else check_size(a.image_size, "--image-size")
    sizes = extra_sizes(a.extra_sizes)
    if a.plan_sizes is not None and not a.plans:
        raise UserError("--plan-sizes are the input sizes --plans measures: give --plans too")
    plan_images = check_count(a.plan_images, "--plan-images")
    opts = ExportOptions(image_size=image_size, opset=a.opset, batch=check_batch(a.batch), scores=a.scores,
                         extra_sizes=sizes, int8=quant, peers=parse_peers(a.peers), reuse=not a.no_reuse)
    guard_paths([*Input.of("checkpoint", ckpt), *Input.of("--calib", a.calib, "folder")],
                [*Output.of("the bundle", out, "tree"), *Output.of("--report", a.report)])
    model = model_from_checkpoint(load_checkpoint(ckpt)).eval()
    measure_plans = None
    if a.plans:  # the network at smaller sizes too, and the measured front of size and pausing as its plans
        from ..planning import default_plan_sizes, plan_finalizer

        planned = extra_sizes(a.plan_sizes, "--plan-sizes") or default_plan_sizes(image_size or model.cfg.image_size,
                                                                                  model.cfg.patch_size)
        opts = dataclasses.replace(opts, extra_sizes=tuple(dict.fromkeys((*sizes, *planned))))
        measure_plans = plan_finalizer(a.plan_data, plan_images, progress=not a.quiet)
    verified: dict[str, Any] = {}

    def finalize(path: Path) -> None:  # the finished bundle, before it takes the place of `out`
        if not a.no_verify:
            verify(path)
        if measure_plans is not None:
            measure_plans(path)

    def verify(path: Path) -> None:
        t1 = time.perf_counter()
        report = verify_bundle(path, model)
        verified.update(report=report, seconds=time.perf_counter() - t1)
        if not report.ok:
            raise VerificationFailed(report)

    t0 = time.perf_counter()
    try:
        export_bundle(model, out, opts, source=str(ckpt), progress=not a.quiet, finalize=finalize)
        ok = True
    except VerificationFailed:
        ok = False
    export_s = time.perf_counter() - t0 - verified.get("seconds", 0.0)
    verdict = "not verified (--no-verify)"
    if "report" in verified:
        report = verified["report"]
        print(report.summary())
        if a.report:
            write_json_atomic(Path(a.report), report.to_json())
        fp32 = [c for c in report.checks if not c.graph.startswith("int8")]
        worst = max((c.value for c in fp32 if c.kind == "max_abs_err"), default=0.0)
        agree = min((c.value for c in fp32 if c.kind == "agreement"), default=1.0)
        verdict = (f"verified in {verified['seconds']:.1f} s: max error {worst:.1e}, "
                   f"min label agreement {100 * agree:.2f}%" + int8_verdict(report)
                   + ("" if ok else " -- BEYOND TOLERANCE"))
    if not ok:  # nothing written: a bundle that disagrees with its checkpoint never takes a bundle's place
        print(f"not exported: the graphs disagree with the checkpoint ({verdict}); nothing was written to {out}")
        return 1
    if engines is not None:
        build_and_report(out, engines, quiet=a.quiet)
    size_mb = sum(p.stat().st_size for p in out.rglob("*.onnx")) / 1e6
    int8 = f", {len(list((out / VARIANT).glob('*.onnx')))} of them INT8" if a.int8 else ""
    print(f"exported {out} ({len(list(out.rglob('*.onnx')))} graphs{int8}, {size_mb:.1f} MB) in {export_s:.1f} s; "
          f"{verdict}")
    return 0


def int8_verdict(report: VerifyReport) -> str:
    """The INT8 graphs' worst end-to-end figures against fp32 ('' when the bundle has none)."""
    pipe = [c for c in report.checks if c.graph == "int8 pipeline"]
    if not pipe:
        return ""
    agree = min(c.value for c in pipe if c.kind == "agreement")
    kept = min((c.value for c in pipe if c.kind == "kept"), default=1.0)
    return f"; INT8 vs fp32: min label agreement {100 * agree:.2f}%, kept tokens {100 * kept:.2f}%"


def check_batch(values: list[float]) -> tuple[int, int, int]:
    if len(values) not in (1, 3):
        raise UserError("--batch takes N or MIN,OPT,MAX (whole numbers)")
    ints = [check_count(v, "--batch", 1, MAX_BATCH) for v in values]
    return (1, ints[0], ints[0]) if len(ints) == 1 else (ints[0], ints[1], ints[2])
