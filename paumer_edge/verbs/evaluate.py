"""`paumer-edge eval`: accuracy at a list of budgets and thresholds, and the accuracy/speed curve."""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import torch

from .. import UserError
from ..checkpoint import load_model
from ..core.atomic import write_json_atomic
from ..core.cost import load_cost
from ..core.pausing import check_budget, check_threshold
from ..core.windows import check_stride
from ..curve import curve_json, curve_points, curve_table, plot_curve, time_points
from ..data.registry import build_dataset, check_classes, parse_data_spec
from ..evaluate import OperatingPoint, evaluate, results_json, results_table
from ..training.trainer import pick_device


def run(a: argparse.Namespace) -> int:
    points = [OperatingPoint(check_budget(b)) for b in a.budgets]
    points += [OperatingPoint(1.0, check_threshold(t)) for t in (a.thresholds or [])]
    spec = parse_data_spec(a.data)
    split = a.split or spec.default_eval_split
    sliding = None if a.sliding is None else check_stride(a.sliding)
    measured = a.speed == "measured" and bool(a.plot or a.json)
    if measured and a.timing_frames < 1:
        raise UserError(f"--timing-frames must be at least 1, got {a.timing_frames}")
    device = pick_device(a.device)
    if a.threads:
        torch.set_num_threads(a.threads)
    model = load_model(a.model, device)
    if a.cost:  # budgets as fractions of a device's latency (what `run` uses there) instead of MACs
        model.set_cost_model(load_cost(a.cost, model.cost_model()))
    check_classes(model.cfg.num_classes, spec, f"model '{a.model or 'sample'}'")
    data = build_dataset(spec, split, model.cfg.image_size, a.images, progress=not a.quiet, scale=a.data_scale)
    n = len(data)  # type: ignore[arg-type]
    t0 = time.perf_counter()
    results = evaluate(model, data, points, a.batch_size, device, progress=not a.quiet, sliding=sliding)
    dt = time.perf_counter() - t0
    print(results_table(results, model.cfg.class_names))
    times = time_points(model, data, points, a.timing_frames, device, sliding, progress=not a.quiet) \
        if measured else None
    curve = curve_points(results, times)
    if a.plot or a.json:
        print(curve_table(curve))
    if a.json:
        payload = {"model": str(a.model or "sample"), "data": str(spec), "split": split, "images": n,
                   "cost_model": model.cost_model().to_dict(),
                   "sliding": sliding, "seconds": round(dt, 2), "results": results_json(results),
                   "speed": "measured" if measured else "modelled", "device": str(device),
                   "torch_threads": torch.get_num_threads(), "timing_frames": a.timing_frames if measured else 0,
                   "machine": f"{platform.machine()} {platform.processor()}".strip(),
                   "load_average_1min": round(os.getloadavg()[0], 2),  # other work on the machine skews FPS
                   "curve": curve_json(curve)}
        write_json_atomic(Path(a.json), payload)
    if a.plot:
        threads = torch.get_num_threads()
        where = f"PyTorch on {device.type}, {threads} thread{'s' if threads > 1 else ''}" if measured else "cost model"
        plot_curve(curve, Path(a.plot), f"{model.cfg.name}: mIoU vs speed ({where})")
    print(f"evaluated {n} images at {len(points)} settings in {dt:.1f} s"
          + (f"; results in {a.json}" if a.json else "") + (f"; curve in {a.plot}" if a.plot else ""))
    return 0
