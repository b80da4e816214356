"""`paumer-edge eval`."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from ..atomic import write_json_atomic
from ..checkpoint import load_model
from ..data.dataset import build_dataset
from ..evaluate import OperatingPoint, evaluate, results_json, results_table
from ..pausing import check_budget, check_threshold
from ..training.trainer import pick_device


def run(a: argparse.Namespace) -> int:
    points = [OperatingPoint(check_budget(b)) for b in a.budgets]
    points += [OperatingPoint(1.0, check_threshold(t)) for t in (a.thresholds or [])]
    device = pick_device(a.device)
    if a.threads:
        torch.set_num_threads(a.threads)
    model = load_model(a.model, device)
    data = build_dataset(a.data, a.split, model.cfg.image_size, a.images, progress=not a.quiet)
    t0 = time.perf_counter()
    results = evaluate(model, data, points, a.batch_size, device, progress=not a.quiet)
    dt = time.perf_counter() - t0
    print(results_table(results, model.cfg.class_names))
    if a.json:
        payload = {"model": str(a.model or "sample"), "data": a.data, "split": a.split, "images": a.images,
                   "seconds": round(dt, 2), "results": results_json(results)}
        write_json_atomic(Path(a.json), payload)
    print(f"evaluated {a.images} images at {len(points)} settings in {dt:.1f} s"
          + (f"; results in {a.json}" if a.json else ""))
    return 0
