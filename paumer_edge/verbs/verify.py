"""`paumer-edge verify`: a bundle's graphs in ONNX Runtime against its PyTorch checkpoint; exit 1 beyond tolerance."""

from __future__ import annotations

import time
from pathlib import Path

import click

from .. import UserError
from ..core.knobs import check_budget, check_count
from ..core.paths import Input, Output, guard_paths
from .bundles import needs_torch
from .params import FLOATS, memory_limit_option

MAX_FRAMES = 10_000


@click.command("verify", help="Run BUNDLE's graphs in ONNX Runtime against the PyTorch model it came from: the "
               "largest error of every output and the label agreement of the staged pipeline per budget. Exit 1 "
               "beyond tolerance.")
@click.argument("bundle")
@click.option("--ckpt", help="The checkpoint it came from [default: the one the manifest names].")
@click.option("--frames", type=int, default=8, help="Street frames to compare on.")
@click.option("--budgets", type=FLOATS, default="1,0.5,0.25", help="Budgets of the end-to-end comparison.")
@click.option("--json", metavar="FILE", help="Write the full report here.")
@memory_limit_option
def command(bundle: str, ckpt: str | None, frames: int, budgets: list[float], json: str | None) -> int:
    from ..core.atomic import write_json_atomic
    from ..runtime.bundle import load_bundle

    frames = check_count(frames, "--frames", 1, MAX_FRAMES)
    budgets = [check_budget(b, "--budgets") for b in budgets]
    loaded = load_bundle(bundle)
    source = ckpt or loaded.manifest.source
    if not source:
        raise UserError("give the checkpoint the bundle was exported from: --ckpt CKPT")
    guard_paths([*Input.of("the bundle", bundle), *Input.of("checkpoint", source)], Output.of("--json", json))
    needs_torch("verify")
    from ..checkpoint import load_checkpoint, model_from_checkpoint, resolve_checkpoint
    from ..export.verify import verify_bundle

    model = model_from_checkpoint(load_checkpoint(resolve_checkpoint(source))).eval()
    t0 = time.perf_counter()
    report = verify_bundle(loaded, model, frames=frames, budgets=tuple(budgets))
    print(report.summary())
    if json:
        write_json_atomic(Path(json), report.to_json())
    failed = [c for c in report.checks if not c.ok]
    print(f"verified {loaded.path} against {source} in {time.perf_counter() - t0:.1f} s: "
          + ("all within tolerance" if not failed else f"{len(failed)} checks BEYOND TOLERANCE"))
    return 0 if not failed else 1
