"""The embedding API: `Pipeline(bundle)(frame) -> Result`. numpy and a backend only, never torch.

    from paumer_edge.runtime import Pipeline
    seg = Pipeline("sample.paumer", budget=0.5)
    result = seg(frame)                  # any size, RGB (bgr=True for OpenCV frames)
    result.labels                        # [H, W] class per pixel, at the frame's size
    seg.budget = 0.3                     # turn the knob while the robot runs

The budget is a fraction of this device's encoder time: on first use (the first frame, or reading
`pipe.cost`) a Pipeline measures the bundle's latency profile on its backend (a second or two, then
cached per bundle, backend and machine; see `runtime.latency`); `calibrate()` measures it afresh.
`cost="macs"` makes it a fraction of the multiply-accumulates instead, as in training and
`paumer-edge eval`, the same on every device.

A bundle exported with plans (`export --plans`) carries the network at several input sizes and the measured
joint front of size and pausing (`core.plans`): there a budget is a fraction of the main graphs' frame time at
budget 1, and buys the most accurate plan measured at that cost, whatever its input size; `plans=False`
ignores them. Each result's stats name the plan that ran.

Video: `Pipeline(bundle, reuse=True)` reuses, frame to frame, what the patches that did not change computed
(`runtime.temporal`); give each camera its own `stream` id (`seg(frame, stream="cam1")`), and `reset(stream)`
when a stream starts over. A bundle exported before format 5 cannot reuse.

Thread safety: a Pipeline may be shared by several threads. Pre- and post-processing run in the
caller's thread; the staged inference itself is serialised by a lock (the sessions share buffers).
For parallel inference, give each thread its own Pipeline.

Speed on the CPU: `shared_threads=True` runs all stages on one ONNX Runtime thread pool. It is
process-wide: afterwards ONNX Runtime refuses sessions elsewhere in the process that keep the default
per-session pool, so turn it on when this process's ONNX Runtime is yours alone (the CLI does).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from paumer_edge import UserError
from paumer_edge.core.contract import PlanPoint
from paumer_edge.core.errors import BundleError
from paumer_edge.core.exits import EarlyExit
from paumer_edge.core.knobs import check_target_ms, check_threads
from paumer_edge.core.pausing import CostModel, Pauser, PausingPolicy, TokenSelector, check_budget, check_threshold
from paumer_edge.core.plans import choose, plan_label
from paumer_edge.core.temporal import CALM_FRAMES, ReuseOptions

from .backends.select import open_backend
from .bundle import Bundle, ModelInfo, load_bundle
from .controller import LatencyController
from .latency import device_profile
from .preprocess import Placement
from .staged import StagedRunner, StageStats
from .temporal import DEFAULT_STREAM, PrivateStream, TemporalFrames
from .tiling import Tiler, WholeFrame

COSTS = ("device", "macs")
_WARMUP = ("paumer-edge", "warm-up")  # the stream warm-up frames use (private, per budget), forgotten afterwards


def reuse_options(reuse: bool | ReuseOptions, bundle: Bundle) -> ReuseOptions | None:
    """The temporal-reuse options asked for (None: off), refused in one line for a bundle without reuse graphs."""
    if reuse is False or reuse is None:
        return None
    if not bundle.manifest.has_reuse:
        raise BundleError(f"bundle '{bundle.path}' (format {bundle.manifest.format_version}) has no temporal-reuse "
                          "graphs this runtime runs, so it cannot reuse unchanged patches: re-export it with "
                          "`paumer-edge export` (format 5), or turn reuse off (--no-reuse)")
    return reuse if isinstance(reuse, ReuseOptions) else ReuseOptions()

if TYPE_CHECKING:
    from .view.frames import ViewConfig
    from .view.server import ViewServer


@dataclass
class Result:
    labels: np.ndarray  # [H, W] class index per pixel, at the frame's size
    stats: StageStats
    placement: Placement
    scores: np.ndarray | None = None  # [K, h, w] class probabilities at the model's input size
    stage_map: np.ndarray | None = None  # [rows, cols] the last encoder stage each patch ran in
    timings: dict[str, float] = field(default_factory=dict)  # preprocess / inference / postprocess ms
    reused: np.ndarray | None = None  # [rows, cols] bool: patches kept from earlier frames (temporal reuse)

    @property
    def total_ms(self) -> float:
        return sum(self.timings.values())


class Pipeline:
    """A loaded bundle on a backend, with the run-time knobs: budget, threshold, latency target.

    Every frame runs one template: the budget picks the graphs (the main ones, or a plan's), the tiler's
    pre-processing for their input size (caller's thread), the staged graphs with a token selector built once
    from the knobs (under the lock), the tiler's post-processing (caller's thread), then the latency controller
    sees the frame's own time (waiting for the lock left out).

    `selector(cost) -> TokenSelector` replaces budget and threshold with another policy (e.g. `core.exits`'s
    early exit on a bundle's "dtop" variant), built once per frame.
    """

    def __init__(self, bundle: str | Path | Bundle, backend: str = "auto", budget: float = 1.0,
                 threshold: float | None = None, target_ms: float | None = None, letterbox: bool = False,
                 bgr: bool = False, stage_map: bool = False, threads: int = 0, precision: str | None = None,
                 shared_threads: bool = False, cost: str | CostModel = "device", plans: bool = True,
                 selector: Callable[[CostModel], TokenSelector] | None = None,
                 reuse: bool | ReuseOptions = False, max_streams: int = 16):
        self._budget = check_budget(budget)
        self._threshold = None if threshold is None else check_threshold(threshold)
        if not (isinstance(cost, CostModel) or cost in COSTS):
            raise UserError(f"unknown cost model '{cost}': use 'device' (this device's measured latency) or 'macs'")
        target_ms, threads = check_target_ms(target_ms), check_threads(threads)
        self.controller = LatencyController(target_ms, budget=self._budget) if target_ms is not None else None
        self.letterbox, self.bgr, self.stage_map = letterbox, bgr, stage_map
        self.tiler: Tiler = WholeFrame(letterbox, bgr)
        self._lock = threading.Lock()  # the staged graphs: one frame at a time
        self._control = threading.Lock()  # the controller's state
        # precision="int8" runs the bundle's Q/DQ graphs (its int8 variant); fp16 comes from TensorRT
        self.bundle = (bundle if isinstance(bundle, Bundle) else load_bundle(bundle)).at_precision(precision)
        self.reuse = reuse_options(reuse, self.bundle)
        self.backend = open_backend(backend, self.bundle, threads=threads, precision=precision,
                                    shared_threads=shared_threads, budgets=(self._budget,),
                                    stateful=self.reuse is not None)
        self.runner = StagedRunner(self.bundle, self.backend)
        if self.reuse is not None:
            self.tiler = TemporalFrames(WholeFrame(letterbox, bgr), self.info, self.reuse, max_streams)
        self.threads = threads
        self._selector = selector
        # plans choose a graph set per frame; temporal reuse keeps one set's state from frame to frame: not both
        self.plans = self.bundle.manifest.plans if plans and selector is None and self.reuse is None else None
        self._runners = {"": self.runner}  # per graph set a plan runs
        for name in sorted({p.variant for p in self.plans.points} - {""} if self.plans else ()):
            self._runners[name] = StagedRunner(self.bundle.variant(name), self.backend)
        self._cost_choice = cost
        self._cost: CostModel | None = cost if isinstance(cost, CostModel) else None
        self._cost_source = "given" if isinstance(cost, CostModel) else ""

    # ---- what a budget is a fraction of: resolved on first use --------------------------------------
    def _resolve_cost(self) -> CostModel:
        """The cost model, measuring this device's latency profile on first use (call with the lock held)."""
        if self._cost is None:
            if self._cost_choice == "macs":
                self._cost, self._cost_source = self.bundle.cost, "MACs"
            else:
                profile = device_profile(self.runner, self.backend.describe(), self.threads)
                self._cost, self._cost_source = profile.cost, profile.source
        return self._cost

    @property
    def cost(self) -> CostModel:
        """What budgets are fractions of: this device's latency profile (measured on first use, then cached
        per bundle, backend and machine) or the bundle's MAC model."""
        with self._lock:
            return self._resolve_cost()

    @property
    def cost_source(self) -> str:
        """Where the cost model came from: "measured in 1.9 s", "cached <path>", "MACs" or "given"."""
        with self._lock:
            self._resolve_cost()
            return self._cost_source

    def calibrate(self, seconds: float = 2.0) -> CostModel:
        """Measure this device's latency profile afresh (e.g. after a change of load), cache it, use it."""
        with self._lock:
            profile = device_profile(self.runner, self.backend.describe(), self.threads, refresh=True,
                                     seconds=seconds)
            self._cost, self._cost_source = profile.cost, profile.source
            return self._cost

    # ---- the knobs -------------------------------------------------------------------------------
    @property
    def info(self) -> ModelInfo:
        return self.bundle.model

    @property
    def budget(self) -> float:
        return self.controller.budget if self.controller else self._budget

    @budget.setter
    def budget(self, value: float) -> None:
        b = check_budget(value)
        with self._control:
            self._budget = b
            if self.controller:
                self.controller.budget = b

    @property
    def threshold(self) -> float | None:
        return self._threshold

    @threshold.setter
    def threshold(self, value: float | None) -> None:
        self._threshold = None if value is None else check_threshold(value)

    def plan(self, budget: float) -> PlanPoint | None:
        """The plan a budget runs (None without plans)."""
        return None if self.plans is None else choose(self.plans.points, budget)

    def plan_label(self, point: PlanPoint) -> str:
        return plan_label(point, self.info.input_size, self.bundle.manifest.variants)

    @property
    def target_ms(self) -> float | None:
        """The latency target the budget follows frame by frame, or None (the budget stays as set)."""
        return self.controller.target_ms if self.controller else None

    @target_ms.setter
    def target_ms(self, value: float | None) -> None:
        """Set, change or (None) clear the latency target; cleared, the budget stays where the target left it."""
        with self._lock:
            if value is None:
                if self.controller is not None:
                    self._budget, self.controller = self.controller.budget, None
                return
            target = check_target_ms(value)
            assert target is not None  # (value is not None)
            if self.controller is not None:
                self.controller.target_ms = target
            else:
                self.controller = LatencyController(target, budget=max(self._budget, LatencyController.min_budget))

    def describe(self) -> str:
        if self.plans is not None:
            return (f"{self.info.name} ({self.info.input_size[0]}x{self.info.input_size[1]}) on "
                    f"{self.backend.describe()}; budgets pick one of {len(self.plans.points)} plans over "
                    f"{len(self._runners)} graph sets (measured on {self.plans.images} images)")
        unit = "device latency" if self.cost.measured else "MACs"
        return (f"{self.info.name} ({self.info.input_size[0]}x{self.info.input_size[1]}) on {self.backend.describe()}; "
                f"budgets are fractions of {unit}")

    # ---- one frame --------------------------------------------------------------------------------
    def __call__(self, frame: np.ndarray, budget: float | None = None, threshold: float | None = None,
                 stream: Hashable = DEFAULT_STREAM) -> Result:
        """Segment one frame. `budget` / `threshold` override the pipeline's knobs for this call. `stream`: which
        video the frame belongs to, with temporal reuse (each stream keeps its own state)."""
        t0 = time.perf_counter()
        knob = self.budget if budget is None else check_budget(budget)
        plan = self.plan(knob)
        runner = self.runner if plan is None else self._runners[plan.variant]
        prepared = self.tiler.prepare(frame, runner.bundle.model, stream)
        t1 = time.perf_counter()
        with self._lock:
            selector = self._select(runner, knob, threshold, plan)
            t2 = time.perf_counter()
            inferred = self.tiler.infer(runner, prepared, selector, self.stage_map)
            t3 = time.perf_counter()
        out = self.tiler.finish(prepared, inferred)
        if plan is not None:
            out.stats.budget, out.stats.plan = knob, self.plan_label(plan)
        t4 = time.perf_counter()
        timings = {"preprocess": (t1 - t0) * 1000, "inference": (t3 - t2) * 1000, "postprocess": (t4 - t3) * 1000}
        if self.controller is not None and budget is None:
            with self._control:
                self.controller.update(sum(timings.values()))
        return Result(out.labels, out.stats, out.placement, out.scores, out.stage_map, timings, out.reused)

    def reset(self, stream: Hashable | None = None) -> None:
        """Temporal reuse: forget what `stream` computed (its next frame starts afresh), or every stream's."""
        if isinstance(self.tiler, TemporalFrames):
            with self._lock:
                self.tiler.streams.reset(stream)

    def _select(self, runner: StagedRunner, budget: float, threshold: float | None,
                plan: PlanPoint | None) -> TokenSelector:
        """The frame's token selector (call with the lock held): a plan's own policy (its pausing budget, a fraction
        of its graphs' MACs as measured, or its early exit), otherwise the budget as a fraction of this pipeline's
        cost model."""
        if self._selector is not None:
            return self._selector(self._resolve_cost())
        if plan is not None and plan.exit:
            return EarlyExit(runner.bundle.cost, plan.exit)
        pausing = budget if plan is None else plan.pausing
        policy = PausingPolicy(pausing, self._threshold if threshold is None else threshold)
        return Pauser(runner.bundle.cost if plan is not None else self._resolve_cost(), policy)

    def serve_view(self, port: int = 8080, host: str = "127.0.0.1", token: str | None = None,
                   config: ViewConfig | None = None) -> ViewServer:
        """Serve a live view of this pipeline in the browser (see `paumer_edge.runtime.view`); call the view's
        `publish(frame, result)` after every frame, `close()` at the end (or use it in a `with` block)."""
        from .view.server import ViewServer

        return ViewServer(self, host, port, token, config).start()

    def warmup(self, frames: int = 3) -> None:
        """Run a few blank frames (first calls allocate and, on GPUs, pick kernels) through every plan's graphs;
        with temporal reuse, then still frames until a refresh and one frame that reuses, so the reuse graphs are
        open and warm too (they open on first use). Streams are left untouched."""
        h, w = self.info.input_size
        budgets = [1.0] if self.plans is None else [p.cost for p in self.plans.points]
        warm = [np.full((h, w, 3), 40 * i, np.uint8) for i in range(frames)]
        if isinstance(self.tiler, TemporalFrames):
            still = np.full((h, w, 3), 96, np.uint8)
            moved = still.copy()
            moved[: h // 4, : w // 4] = 200  # a sixteenth of the patches changed: a reuse frame
            warm += [still] * (CALM_FRAMES + 1) + [moved]
        for frame in warm:
            for b in budgets:
                self(frame, budget=min(1.0, b), stream=PrivateStream((_WARMUP, b)))
        for b in budgets:
            self.reset(PrivateStream((_WARMUP, b)))
