"""`paumer-edge eval`: accuracy at a list of budgets and thresholds, and the accuracy/speed curve."""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from .. import UserError
from ..checkpoint import load_model
from ..core.atomic import write_json_atomic
from ..core.cost import load_cost
from ..core.pausing import check_budget, check_threshold
from ..core.windows import check_stride
from ..curve import curve_json, curve_points, curve_table, plot_curve, time_points
from ..data.registry import DataSpec, build_dataset, check_classes, parse_data_spec
from ..evaluate import OperatingPoint, evaluate, results_json, results_table
from ..model import PausingSegmenter
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
    if a.precision:
        return run_deployed(a, model, data, points, spec, split)
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


def run_deployed(a: argparse.Namespace, model: PausingSegmenter, data: Dataset, points: list[OperatingPoint],
                 spec: DataSpec, split: str) -> int:
    """`eval --precision P,...`: the model's bundle (exported once, with INT8 graphs if asked) scored through the
    runtime at each precision, every setting, on the same images; budgets in the same cost model as PyTorch eval."""
    from ..runtime.bundle import load_bundle
    from ..runtime_eval import RuntimePredictor
    from .run import bundle_for

    if a.sliding is not None or a.plot:
        raise UserError("--precision scores whole frames and writes tables and --json: leave out "
                        f"{'--sliding' if a.sliding is not None else '--plot'}")
    bundle = load_bundle(bundle_for(a.model, a.quiet, int8="int8" in a.precision))
    n = len(data)  # type: ignore[arg-type]
    payload: dict[str, Any] = {"model": str(a.model or "sample"), "bundle": str(bundle.path), "data": str(spec),
                               "split": split, "images": n, "cost_model": model.cost_model().to_dict(),
                               "runtime": "ONNX Runtime (CPU), staged graphs", "precisions": {}}
    t0 = time.perf_counter()
    for precision in a.precision:
        predictor = RuntimePredictor(bundle.at_precision(precision), model.cost_model(), a.threads)
        results = evaluate(model, data, points, a.batch_size, "cpu", progress=not a.quiet, predictor=predictor)
        print(f"{precision} graphs in the runtime:")
        print(results_table(results, model.cfg.class_names))
        payload["precisions"][precision] = results_json(results)
    dt = time.perf_counter() - t0
    if len(a.precision) > 1:
        print(precision_table(payload["precisions"]))
    if a.json:
        payload.update(seconds=round(dt, 2), machine=f"{platform.machine()} {platform.processor()}".strip(),
                       load_average_1min=round(os.getloadavg()[0], 2))
        write_json_atomic(Path(a.json), payload)
    print(f"evaluated {n} images at {len(points)} settings x {len(a.precision)} precisions through the runtime in "
          f"{dt:.1f} s" + (f"; results in {a.json}" if a.json else ""))
    return 0


def precision_table(by_precision: dict[str, list[dict[str, Any]]]) -> str:
    """mIoU of every setting at each precision side by side, with the change from the first precision."""
    names = list(by_precision)
    first = by_precision[names[0]]
    lines = [f"{'setting':<16}" + "".join(f"{p + ' mIoU':>12}" for p in names) + f"{'change':>9}"]
    for i, r in enumerate(first):
        setting = f"thr {r['threshold']:g}" if r["threshold"] is not None else f"budget {r['budget']:g}"
        mious = [100 * by_precision[p][i]["miou"] for p in names]
        lines.append(f"{setting:<16}" + "".join(f"{m:>12.2f}" for m in mious) + f"{mious[-1] - mious[0]:>+9.2f}")
    return "\n".join(lines)
