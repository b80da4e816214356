"""`paumer-edge verify`: a bundle's graphs in ONNX Runtime against its PyTorch checkpoint; exit 1 beyond tolerance."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from .. import UserError
from ..checkpoint import load_checkpoint, model_from_checkpoint, resolve_checkpoint
from ..core.atomic import write_json_atomic
from ..core.knobs import check_budget, check_count
from ..core.paths import Input, Output, guard_paths
from ..export.verify import verify_bundle
from ..runtime.bundle import load_bundle

MAX_FRAMES = 10_000


def run(a: argparse.Namespace) -> int:
    a.frames = check_count(a.frames, "--frames", 1, MAX_FRAMES)
    budgets = tuple(check_budget(b, "--budgets") for b in a.budgets)
    bundle = load_bundle(a.bundle)
    source = a.ckpt or bundle.manifest.get("source")
    if not source:
        raise UserError("give the checkpoint the bundle was exported from: --ckpt CKPT")
    guard_paths([*Input.of("the bundle", a.bundle), *Input.of("checkpoint", source)], Output.of("--json", a.json))
    model = model_from_checkpoint(load_checkpoint(resolve_checkpoint(source))).eval()
    t0 = time.perf_counter()
    report = verify_bundle(bundle, model, frames=a.frames, budgets=budgets)
    print(report.summary())
    if a.json:
        write_json_atomic(Path(a.json), report.to_json())
    failed = [c for c in report.checks if not c.ok]
    print(f"verified {bundle.path} against {source} in {time.perf_counter() - t0:.1f} s: "
          + ("all within tolerance" if not failed else f"{len(failed)} checks BEYOND TOLERANCE"))
    return 0 if not failed else 1
