"""Latency of a bundle at a list of budgets, measured in one interleaved run (torch-free).

Every round runs each setting once, so noise on a shared machine hits all settings alike and the
ratios between them hold; `speedup_paired` (the median of per-round ratios) is the figure to read
where the machine's speed drifts, `speedup_vs_budget1` the plain ratio of mean FPS.
End to end = pre-processing + staged inference + labels back to the frame.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from tqdm import tqdm

from paumer_edge.core.names import FULL, IMAGE

from .pipeline import Pipeline
from .preprocess import labels_to_frame, preprocess


@dataclass
class Timing:
    name: str
    budget: float | None
    total_ms: list[float] = field(default_factory=list)
    stage_ms: list[list[float]] = field(default_factory=list)
    counts: list[int] = field(default_factory=list)
    cost_fraction: float = 1.0
    plan: str = ""  # the plan this budget ran (bundles with plans)

    def summary(self) -> dict:
        t = np.asarray(self.total_ms)
        out: dict[str, Any] = {"name": self.name, "budget": self.budget, "ms_p50": float(np.percentile(t, 50)),
               "ms_p90": float(np.percentile(t, 90)), "ms_p99": float(np.percentile(t, 99)),
               "ms_mean": float(t.mean()), "fps": float(1000.0 / t.mean()), "runs": len(t),
               "modelled_compute": self.cost_fraction}
        if self.plan:
            out["plan"] = self.plan
        if self.stage_ms:
            s = np.asarray(self.stage_ms)
            out["stage_ms_p50"] = np.percentile(s, 50, axis=0).round(3).tolist()
            out["counts"] = self.counts
        return out


def bench(pipe: Pipeline, frames: list[np.ndarray], budgets: list[float], rounds: int = 50, warmup: int = 5,
          references: dict[str, Callable[[np.ndarray], object]] | None = None,
          other_framework: dict[str, Callable[[np.ndarray], object]] | None = None,
          progress: bool = True, clock: Callable[[], float] = time.perf_counter) -> list[dict]:
    """Per budget (and per reference callable): latency percentiles, FPS, per-stage times, tokens.

    `references` run interleaved with the budgets; `other_framework` ones (PyTorch) in a second phase of
    their own, interleaved among themselves: two frameworks' thread pools taking turns would slow both.
    `clock` (seconds) times every call.
    """
    timings = [Timing(f"budget {b:g}", b) for b in budgets]
    refs = [(Timing(name, None), fn) for name, fn in (references or {}).items()]
    others = [(Timing(name, None), fn) for name, fn in (other_framework or {}).items()]

    def step(t: Timing, frame: np.ndarray) -> None:
        t0 = clock()
        result = pipe(frame, budget=t.budget)
        t.total_ms.append((clock() - t0) * 1000)
        t.stage_ms.append([*result.stats.stage_ms, result.stats.decoder_ms])
        t.counts, t.cost_fraction, t.plan = result.stats.counts, result.stats.cost_fraction, result.stats.plan

    def call(t: Timing, fn: Callable[[np.ndarray], object], frame: np.ndarray) -> None:
        t0 = clock()
        fn(frame)
        t.total_ms.append((clock() - t0) * 1000)

    def caller(fn: Callable[[np.ndarray], object]) -> Callable[[Timing, np.ndarray], None]:
        def run(t: Timing, frame: np.ndarray) -> None:
            call(t, fn, frame)
        return run

    phases: list[list[tuple[Timing, Callable[[Timing, np.ndarray], None]]]] = [
        [(t, step) for t in timings] + [(t, caller(fn)) for t, fn in refs]]
    if others:
        phases.append([(t, caller(fn)) for t, fn in others])
    bar = tqdm(total=rounds * len(phases), desc="benchmarking", unit="round", disable=not progress)
    for phase in phases:
        for i in range(warmup):
            for t, run in phase:
                run(t, frames[i % len(frames)])
                t.total_ms.clear()
                t.stage_ms.clear()
        for r in range(rounds):
            for t, run in phase:
                run(t, frames[r % len(frames)])
            bar.update()
    bar.close()
    same_phase = {id(t) for t, _ in phases[0]}
    base = next((t for t in timings if t.budget == 1.0), None)
    rows = []
    for t in timings + [t for t, _ in refs + others]:
        row = t.summary()
        if base is not None:
            row.update(speedups(base.total_ms, t.total_ms, paired=id(t) in same_phase))
            plan = pipe.plan(t.budget) if t.budget is not None else None
            if plan is not None:  # what the plan's calibration measured, instead of a model's ideal
                row["plan_speedup"] = 1.0 / plan.cost
            elif t.budget is not None:
                row["ideal_speedup"] = pipe.cost.ideal_speedup(t.cost_fraction)
        rows.append(row)
    return rows


def speedups(base_ms: Sequence[float], ms: Sequence[float], paired: bool = True) -> dict[str, Any]:
    """Speed-ups of a setting over budget 1 from their times per frame: `speedup_vs_budget1`, the ratio of mean
    FPS, and `speedup_paired`, the median over rounds of budget 1's time over the setting's time in the same
    round, so a slow stretch of the machine hits both sides of each ratio, with `speedup_paired_quartiles`, the
    spread of those ratios. Settings not run in the same rounds (`paired=False`: a second phase, run at other
    times) get the ratio of medians instead, and no quartiles."""
    base, t = np.asarray(base_ms, dtype=float), np.asarray(ms, dtype=float)
    plain = float(base.mean() / t.mean())
    if not paired:
        return {"speedup_vs_budget1": plain, "speedup_paired": float(np.median(base) / np.median(t))}
    ratios = base / t
    return {"speedup_vs_budget1": plain, "speedup_paired": float(np.median(ratios)),
            "speedup_paired_quartiles": [float(q) for q in np.percentile(ratios, [25, 75])]}


def full_graph_reference(pipe: Pipeline, graph: str = FULL) -> Callable[[np.ndarray], np.ndarray]:
    """The unsplit `full` graph (or another image -> labels graph of the bundle: the peers' `tome_r16`, ...) on the
    same backend, with the same pre- and post-processing."""
    session = pipe.backend.open(pipe.bundle, graph)
    m = pipe.info

    def run(frame: np.ndarray) -> np.ndarray:
        x, placement = preprocess(frame, m.input_size, m.mean, m.std, pipe.letterbox, pipe.bgr)
        labels = session.run({IMAGE: x[None]})[0]
        return labels_to_frame(labels[0], placement)

    return run
