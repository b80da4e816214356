"""Measure a bundle's plans: each staged graph set (the main input size and every size variant) at a grid of
pausing budgets, and an early-exit graph set (DToP) at a grid of exit confidences, on labelled frames, through the
runtime; the joint front becomes the bundle's `plans`.

Accuracy and time are measured together (`runtime.sweep`: frames interleaved, paired ratios against the main
graphs at budget 1), so a plan's cost is what it really saves on this device, pre- and post-processing
included. Pausing budgets are fractions of each graph set's MACs, so a plan keeps the same tokens on every
device and its accuracy holds wherever it runs; its time was measured here (`Plans.device`). numpy only.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from paumer_edge.core.atomic import write_json_atomic
from paumer_edge.core.contract import MANIFEST, PlanPoint, Plans
from paumer_edge.core.exits import early_exit
from paumer_edge.core.pausing import check_budget
from paumer_edge.core.plans import front, plan_set_kinds
from paumer_edge.core.provenance import machine

from .bundle import Bundle, load_bundle
from .pipeline import Pipeline
from .sweep import Setting, SettingResult, sweep

PAUSING_GRID = (1.0, 0.85, 0.7, 0.6, 0.5, 0.46, 0.42, 0.38, 0.35, 0.32, 0.3, 0.27, 0.25, 0.22, 0.2)
EXIT_GRID = (0.99, 0.97, 0.95, 0.92, 0.9, 0.85, 0.8)  # DToP's exit confidences (0.9 / 0.95 in the paper)


def plan_sets(bundle: Bundle) -> list[str]:
    """The graph sets plans choose among: the main graphs ("") and every variant a plan can run (`PLAN_KINDS`)."""
    return list(plan_set_kinds(bundle.manifest.variants))


def _pausing_grid(grid: Sequence[float]) -> list[float]:
    """The pausing budgets measured: the grid's, checked, and budget 1 (the reference), most expensive first."""
    return sorted({check_budget(b) for b in grid} | {1.0}, reverse=True)


def _setting(pipe: Pipeline, pausing: float, exit: float = 0.0) -> Setting:
    def run(frame: np.ndarray) -> tuple[np.ndarray, object]:
        result = pipe(frame, budget=pausing)
        return result.labels, result.stats

    size = pipe.info.input_size
    knob = f"exit@{exit:g}" if exit else f"@{pausing:g}"
    return Setting(f"{size[0]}x{size[1]} {knob}", "plans-candidate", exit or pausing, run)  # type: ignore[arg-type]


def candidate_settings(bundle: Bundle, grid: Sequence[float] = PAUSING_GRID, backend: str = "auto", threads: int = 0,
                       exits: Sequence[float] = EXIT_GRID) -> tuple[list[Setting], list[tuple[str, float, float]], str]:
    """Every pausing graph set at every pausing budget of `grid` (MACs), and every early-exit graph set at every
    confidence of `exits`, the main graphs at budget 1 first (the reference); with the (graph set, pausing budget,
    exit confidence or 0) of each, and the backend they run on."""
    settings, keys, device = [], [], ""
    for name, kind in plan_set_kinds(bundle.manifest.variants).items():
        # per-session threads: this runs inside `export`, and ONNX Runtime's shared pool, once on, is the
        # whole process's (later sessions and INT8 quantization in that process would be refused)
        if kind == "early-exit":
            for p in exits:
                pipe = Pipeline(bundle.variant(name), backend=backend, threads=threads, cost="macs", plans=False,
                                selector=early_exit(p))
                settings.append(_setting(pipe, 1.0, p))
                keys.append((name, 1.0, p))
            continue
        pipe = Pipeline(bundle.variant(name), backend=backend, threads=threads, cost="macs", plans=False)
        device = device or f"{pipe.backend.describe()} on {machine()}"
        for b in _pausing_grid(grid):
            settings.append(_setting(pipe, b))
            keys.append((name, b, 0.0))
    return settings, keys, device


def candidates_label(bundle: Bundle, grid: Sequence[float] = PAUSING_GRID, exits: Sequence[float] = EXIT_GRID) -> str:
    """The settings a calibration of this bundle measures, in a line (`Plans.candidates`): what a cached
    calibration is checked against before it is reused."""
    kinds = plan_set_kinds(bundle.manifest.variants)
    sizes = [s or "main" for s, kind in kinds.items() if kind != "early-exit"]
    label = f"pausing {','.join(f'{b:g}' for b in _pausing_grid(grid))} on {','.join(sizes)}"
    early = [s for s, kind in kinds.items() if kind == "early-exit"]
    return label + (f"; exit {','.join(f'{p:g}' for p in exits)} on {','.join(early)}" if early else "")


def calibrate(bundle: Bundle, frames: Sequence[np.ndarray], labels: Sequence[np.ndarray], data: str,
              grid: Sequence[float] = PAUSING_GRID, backend: str = "auto", threads: int = 0,
              progress: bool = True, exits: Sequence[float] = EXIT_GRID) -> tuple[Plans, list[SettingResult]]:
    """The bundle's plans measured on `frames` (with their `labels`), and every candidate's measurement."""
    settings, keys, device = candidate_settings(bundle, grid, backend, threads, exits)
    results = sweep(settings, frames, labels, bundle.model.num_classes, reference=0, progress=progress,
                    desc="measuring plans")
    points = [PlanPoint(name, p, r.miou, r.ms_p50, 1.0 if i == 0 else 1.0 / r.speedup, e)
              for i, ((name, p, e), r) in enumerate(zip(keys, results))]
    plans = Plans(tuple(front(points)), len(frames), data, device,
                  datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                  candidates_label(bundle, grid, exits))
    return plans, results


def write_plans(path: Path, plans: Plans | None) -> Bundle:
    """The bundle at `path` with these plans in its manifest (written atomically; None removes them)."""
    bundle = load_bundle(path, check_hashes=False)
    missing = {p.variant for p in plans.points} - set(plan_sets(bundle)) if plans else set()
    if missing:
        raise ValueError(f"plans name graph sets this bundle lacks: {sorted(missing)}")
    write_json_atomic(Path(path) / MANIFEST, dataclasses.replace(bundle.manifest, plans=plans).to_dict())
    return load_bundle(path)
