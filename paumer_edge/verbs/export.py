"""`paumer-edge export`: checkpoint -> verified deployment bundle (+ TensorRT engines with --trt)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from .. import UserError
from ..checkpoint import SAMPLE_CHECKPOINT, load_checkpoint, model_from_checkpoint, resolve_checkpoint
from ..core.atomic import write_json_atomic
from ..export.exporter import ExportOptions, export_bundle
from ..export.verify import verify_bundle
from ..runtime.gpu import cuda_runtime, gpu_info, tensorrt_module
from .build import build_and_report, engine_options


def default_bundle_path(ckpt: Path) -> Path:
    """Next to the checkpoint; for the bundled sample (inside the package), in the working directory."""
    return Path("sample.paumer") if ckpt == SAMPLE_CHECKPOINT else ckpt.with_suffix(".paumer")


def run(a: argparse.Namespace) -> int:
    engines = engine_options(a) if a.trt else None
    if a.trt:  # fail before spending a minute on ONNX when engines cannot be built here
        tensorrt_module()
        gpu_info(cuda_runtime())
    ckpt = resolve_checkpoint(a.ckpt)
    model = model_from_checkpoint(load_checkpoint(ckpt)).eval()
    out = Path(a.out) if a.out else default_bundle_path(ckpt)
    opts = ExportOptions(image_size=a.image_size, opset=a.opset, batch=check_batch(a.batch), scores=a.scores,
                         reuse=not a.no_reuse)
    t0 = time.perf_counter()
    export_bundle(model, out, opts, source=str(ckpt), progress=not a.quiet)
    export_s = time.perf_counter() - t0
    size_mb = sum(p.stat().st_size for p in out.glob("*.onnx")) / 1e6
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
    print(f"exported {out} ({len(list(out.glob('*.onnx')))} graphs, {size_mb:.1f} MB) in {export_s:.1f} s; {verdict}")
    return 0 if ok else 1


def check_batch(values: list[float]) -> tuple[int, int, int]:
    ints = [int(v) for v in values]
    if any(v != int(v) for v in values) or len(ints) not in (1, 3):
        raise UserError("--batch takes N or MIN,OPT,MAX (whole numbers)")
    return (1, ints[0], ints[0]) if len(ints) == 1 else (ints[0], ints[1], ints[2])
