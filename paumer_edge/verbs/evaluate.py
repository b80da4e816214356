"""`paumer-edge eval`: accuracy at a list of budgets and thresholds, and the accuracy/speed curve."""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import click

from ..config_check import check_model_memory
from ..core.atomic import write_json_atomic
from ..core.cost import load_cost
from ..core.knobs import check_budget, check_count, check_number, check_stride, check_threads, check_threshold
from ..core.paths import Input, Output, guard_paths
from .bundles import needs_torch
from .params import DATA_HELP, FLOATS, memory_limit_option, model_option, quiet

MAX_DATA_SCALE = 4.0  # real images resized beyond 4x only cost memory
MAX_BATCH = 4096


def check_knobs(a: SimpleNamespace) -> None:
    """Every knob of `eval` by the one rule for it (paumer_edge.core.knobs)."""
    a.images = None if a.images is None else check_count(a.images, "--images")
    a.data_scale = check_number(a.data_scale, "--data-scale", f"a scale factor in (0, {MAX_DATA_SCALE:g}]", 0.0,
                                MAX_DATA_SCALE, lo_open=True)
    a.batch_size = check_count(a.batch_size, "--batch-size", 1, MAX_BATCH)
    a.threads = check_threads(a.threads, "--threads")
    a.timing_frames = check_count(a.timing_frames, "--timing-frames")


@click.command("eval", help="Per-class IoU, mIoU and pixel accuracy of a checkpoint (PyTorch) at a list of budgets "
               "and thresholds on held-out data, as a table and JSON; with --plot or --json also the accuracy/speed "
               "curve, each setting timed image by image.")
@model_option("Checkpoint [default: the bundled sample model].")
@click.option("--data", default="synthetic", help=DATA_HELP)
@click.option("--split", help="train, val or test [default: the held-out split: test synthetic, val real].")
@click.option("--images", type=int, help="Images to score [default: 1000 synthetic, every image of real data].")
@click.option("--data-scale", type=float, default=1.0, help="Resize real images by this first.")
@click.option("--sliding", type=float, is_flag=False, flag_value=2 / 3, default=None, metavar="STRIDE",
              help="Sliding windows of the model's input size at the image's resolution; STRIDE is a fraction of "
                   "the window (0.667 when given bare); without it, images are resized to the model.")
@click.option("--budgets", type=FLOATS, default="1,0.75,0.5,0.25", help="Budgets to evaluate.")
@click.option("--cost", metavar="PROFILE", help="Budgets as fractions of a device's measured latency, as `run` "
              "spends them there: a `bench --json` report or a cached profile [default: MACs].")
@click.option("--thresholds", type=FLOATS, help="Also evaluate these entropy thresholds.")
@click.option("--batch-size", type=int, default=16, help="Images per forward pass.")
@click.option("--device", default="auto", help="auto, cpu, cuda or cuda:N.")
@click.option("--threads", type=int, default=0, help="PyTorch CPU threads (0: its default).")
@click.option("--json", metavar="FILE", help="Write the results (and the accuracy/speed curve) here.")
@click.option("--plot", metavar="FILE", help="Write the accuracy/speed curve here: mIoU against FPS.")
@click.option("--speed", type=click.Choice(["measured", "modelled"]), default="measured",
              help="Curve x axis: FPS of the PyTorch forward measured in this run, or the modelled encoder compute.")
@click.option("--timing-frames", type=int, default=20, help="Images timed one by one per setting for the FPS.")
@memory_limit_option
@quiet
def command(**options: Any) -> int:
    needs_torch("eval")
    return run(SimpleNamespace(**options))


def run(a: SimpleNamespace) -> int:
    import torch

    from ..checkpoint import load_model
    from ..curve import curve_json, curve_points, curve_table, plot_curve, time_points
    from ..data.registry import build_dataset, check_classes, parse_data_spec
    from ..evaluate import OperatingPoint, evaluate, results_json, results_table
    from ..training.trainer import pick_device

    check_knobs(a)
    points = [OperatingPoint(check_budget(b, "--budgets")) for b in a.budgets]
    points += [OperatingPoint(1.0, check_threshold(t, "--thresholds")) for t in (a.thresholds or [])]
    spec = parse_data_spec(a.data)
    split = a.split or spec.default_eval_split
    sliding = None if a.sliding is None else check_stride(a.sliding, "--sliding")
    measured = a.speed == "measured" and bool(a.plot or a.json)
    guard_paths([*Input.of("--model", a.model), *Input.of("--data", spec.root, "folder"), *Input.of("--cost", a.cost)],
                [*Output.of("--json", a.json), *Output.of("--plot", a.plot)])
    device = pick_device(a.device)
    if a.threads:
        torch.set_num_threads(a.threads)
    model = load_model(a.model, device)
    if device.type == "cpu":  # a batch of activations beside the weights (on a GPU they live on the device)
        check_model_memory(model.cfg, a.batch_size)
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
