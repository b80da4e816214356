"""`paumer-edge compare`: pausing beside its peers on the same frames, through the same runtime, and the joint
budget knob that picks the best of input size and pausing at every cost.

Methods, each over its own knob, all in one bundle and all run by the runtime on the same backend:
- pausing (PAUMER): the budget, as a fraction of this device's encoder time (the runtime's default);
- resolution scaling: the same weights at smaller input sizes (size variants);
- early exit (DToP, `core.exits`): the exit confidence, on the "dtop" variant;
- token merging (ToMe as Segformer++ applies it, `model.merging`): tokens merged per block, one graph per r;
- progressive token length (PRO-SCALE for a plain ViT, `model.progressive`): blocks on the coarse grid;
- the joint knob: budgets over the bundle's plans (`core.plans`), measured on other (val) frames.
Every setting runs on every test frame, interleaved frame by frame (`runtime.sweep`); speed-ups are paired
ratios against pausing at budget 1 (the unpaused network).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import UserError
from .checkpoint import SAMPLE_CHECKPOINT, load_checkpoint, model_from_checkpoint, resolve_checkpoint
from .core.cache import cache_root
from .core.contract import PlanPoint
from .core.exits import early_exit
from .core.names import COARSE_PREFIX, MERGE_PREFIX
from .core.plans import choose
from .data.registry import parse_data_spec
from .export import GRAPHS_REVISION
from .planning import PLAN_IMAGES, PlanMeasurement, default_plan_sizes, labelled_frames
from .runtime.bench import full_graph_reference
from .runtime.bundle import Bundle, BundleError, load_bundle
from .runtime.pipeline import Pipeline
from .runtime.plan_calibration import PAUSING_GRID, candidates_label
from .runtime.sweep import Setting, SettingResult, sweep


@dataclass(frozen=True)
class CompareOptions:
    images: int = 200  # held-out test frames
    frame_size: tuple[int, int] = (256, 512)  # synthetic frames (the runtime resizes them to each input size)
    data: str = "synthetic"
    plan_images: int = PLAN_IMAGES  # held-out val frames the plans are measured on
    budgets: tuple[float, ...] = (1.0, 0.75, 0.5, 0.35, 0.25)  # pausing alone
    sizes: tuple[tuple[int, int], ...] = ()  # resolution scaling (and the plans' sizes); () = 7/8 .. 1/2 of the input
    exits: tuple[float, ...] = (0.99, 0.95, 0.9, 0.8)  # DToP's exit confidence
    merge: tuple[int, ...] = (8, 16, 24, 32)  # ToMe's tokens merged per block
    coarse: tuple[int, ...] = (2, 5)  # PRO-SCALE's blocks on the coarse grid
    joint: tuple[float, ...] = (1.0, 0.75, 0.5, 0.35, 0.25, 0.2)  # the joint knob (and every plan's own cost)
    plan_grid: tuple[float, ...] = PAUSING_GRID
    backend: str = "auto"
    threads: int = 0
    progress: bool = True


@dataclass
class Comparison:
    results: list[SettingResult]
    bundle: str
    backend: str
    options: dict[str, Any]
    seconds: dict[str, float] = field(default_factory=dict)  # export, frames, measuring
    plans: list[dict[str, Any]] = field(default_factory=list)


def _key(opts: CompareOptions, sizes: tuple[tuple[int, int], ...]) -> str:
    blob = repr((GRAPHS_REVISION, sizes, bool(opts.exits), opts.merge, opts.coarse))
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def comparison_bundle(model: str | None, opts: CompareOptions) -> tuple[Path, float]:
    """The checkpoint exported with every peer's graphs and its size variants, with plans measured on held-out
    frames; cached (the export takes minutes): the graphs are remade when the checkpoint, the options or the
    graph definitions change, the plans when their images change. Returns the bundle and the seconds spent."""
    from .export.exporter import ExportOptions, export_bundle
    from .export.peer_graphs import PeerOptions

    ckpt = resolve_checkpoint(model)
    if not ckpt.is_file():
        raise UserError(f"model '{model}' is not a checkpoint file; `compare` exports it with every peer's graphs")
    net = model_from_checkpoint(load_checkpoint(ckpt))
    sizes = opts.sizes or default_plan_sizes(net.cfg.image_size, net.cfg.patch_size)
    digest = hashlib.sha256(ckpt.read_bytes()).hexdigest()[:16]
    name = "sample" if ckpt == SAMPLE_CHECKPOINT else ckpt.stem
    out = cache_root() / "compare" / f"{name}-{digest}-{_key(opts, sizes)}.paumer"
    t0 = time.perf_counter()
    try:
        found: Bundle | None = load_bundle(out)
        if found is not None and found.manifest.exporter.graphs_revision != GRAPHS_REVISION:
            found = None
    except BundleError:
        found = None
    if found is None:
        peers = PeerOptions(early_exit=bool(opts.exits), merge=opts.merge, coarse=opts.coarse)
        export_bundle(net, out, ExportOptions(extra_sizes=sizes, peers=peers), source=str(ckpt),
                      progress=opts.progress)
        found = load_bundle(out)
    frame_size = opts.frame_size if parse_data_spec(opts.data).synthetic else None
    measure = PlanMeasurement(opts.data, opts.plan_images, frame_size, opts.plan_grid, opts.backend, opts.threads,
                              opts.progress)
    if plans_outdated(found, opts.plan_images, measure.describe(found.model.input_size), opts.plan_grid):
        measure(out)  # a manifest rewrite (atomic): the graphs stay
    return out, time.perf_counter() - t0


def plans_outdated(bundle: Bundle, images: int, data: str, grid: Sequence[float]) -> bool:
    """Whether a cached comparison bundle's plans must be measured (again): none yet, or measured on other images,
    or over other candidates (another pausing grid, or from before early exit became a plan kind)."""
    plans = bundle.manifest.plans
    return plans is None or plans.images != images or plans.data != data \
        or plans.candidates != candidates_label(bundle, grid)


def _pipe_setting(pipe: Pipeline, name: str, method: str, knob: float, budget: float | None = None) -> Setting:
    def run(frame: np.ndarray) -> tuple[np.ndarray, Any]:
        result = pipe(frame, budget=budget)
        return result.labels, result.stats

    return Setting(name, method, knob, run)


def _graph_setting(fn: Callable[[np.ndarray], np.ndarray], name: str, method: str, knob: float) -> Setting:
    return Setting(name, method, knob, lambda frame: (fn(frame), None))


def _knob(name: str, prefix: str) -> int | None:
    rest = name[len(prefix):]
    return int(rest) if name.startswith(prefix) and rest.isdigit() else None


def settings(bundle: Bundle, opts: CompareOptions) -> tuple[list[Setting], str]:
    """Every method the bundle has graphs for, at every value of its knob, and the backend they run on; pausing at
    budget 1 (the unpaused network) first: the reference."""
    common: dict[str, Any] = dict(backend=opts.backend, threads=opts.threads, shared_threads=True)
    main = Pipeline(bundle, plans=False, **common)  # pausing as the runtime runs it: budgets of device latency
    out = [_pipe_setting(main, f"pausing {b:g}", "pausing", b, b) for b in sorted(set(opts.budgets) | {1.0},
                                                                                    reverse=True)]
    for v in bundle.manifest.variants:
        if v.kind == "staged" and v.precision == "fp32":
            pipe = Pipeline(bundle.variant(v.name), plans=False, cost="macs", **common)
            out.append(_pipe_setting(pipe, v.name, "resolution", v.input_size[0], 1.0))
        elif v.kind == "early-exit":
            for p in opts.exits:
                pipe = Pipeline(bundle.variant(v.name), plans=False, cost="macs", selector=early_exit(p), **common)
                out.append(_pipe_setting(pipe, f"DToP p0={p:g}", "DToP", p))
    for name in sorted(bundle.graphs, key=lambda n: (len(n), n)):
        if (r := _knob(name, MERGE_PREFIX)) is not None:
            out.append(_graph_setting(full_graph_reference(main, name), f"ToMe r={r}", "ToMe", r))
        elif (k := _knob(name, COARSE_PREFIX)) is not None:
            out.append(_graph_setting(full_graph_reference(main, name), f"PRO-SCALE {k} blocks", "PRO-SCALE", k))
    if bundle.manifest.plans is not None:
        joint = Pipeline(bundle, plans=True, **common)
        out += [_pipe_setting(joint, f"budget {b:.3g} (plans)", "joint knob", b, b)
                for b in joint_budgets(bundle.manifest.plans.points, opts.joint)]
    return out, main.backend.describe()


def joint_budgets(points: Sequence[PlanPoint], nominal: Sequence[float]) -> list[float]:
    """Budgets that reach every plan once: each plan at its own cost, or at the largest of the `nominal`
    budgets that picks it (a round number to read), most expensive first."""
    by_plan: dict[int, float] = {}
    for b in sorted({*nominal, *(min(1.0, p.cost) for p in points)}, reverse=True):
        chosen = points.index(choose(points, b))
        by_plan.setdefault(chosen, b)
        if b in nominal and by_plan[chosen] not in nominal:
            by_plan[chosen] = b
    return sorted(by_plan.values(), reverse=True)


def compare(model: str | None, opts: CompareOptions) -> Comparison:
    """Measure every setting on the held-out frames: with a checkpoint (or the sample), on its comparison bundle
    (exported and measured once, then cached); with a bundle folder, on the methods that bundle has graphs for."""
    if model is not None and Path(model).is_dir():
        bundle_path, export_s = Path(model), 0.0
    else:
        bundle_path, export_s = comparison_bundle(model, opts)
    bundle = load_bundle(bundle_path)
    t0, c0 = time.perf_counter(), time.process_time()
    frames, labels = labelled_frames(opts.data, parse_data_spec(opts.data).default_eval_split, opts.images,
                                     opts.frame_size, opts.progress)
    t1, c1 = time.perf_counter(), time.process_time()
    todo, backend = settings(bundle, opts)
    results = sweep(todo, frames, labels, bundle.model.num_classes, reference=0, progress=opts.progress,
                    desc=f"{len(todo)} settings")
    t2, c2 = time.perf_counter(), time.process_time()
    plans = bundle.manifest.plans
    return Comparison(results, str(bundle_path), backend, {k: v for k, v in asdict(opts).items() if k != "progress"},
                      {"export": round(export_s, 1), "frames": round(t1 - t0, 1), "measuring": round(t2 - t1, 1),
                       "measuring_cpu": round(c2 - c1, 1), "frames_cpu": round(c1 - c0, 1)},
                      [] if plans is None else [p.to_dict() for p in plans.points])
