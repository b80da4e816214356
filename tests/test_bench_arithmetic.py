"""The arithmetic behind the headline speed figures, on synthetic timing series whose answers are known: percentiles,
paired and plain speed-ups, the cost model's ideal speed-up, and the summaries of run_vs_bench.py and
forward_time.py."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import numpy as np
import pytest

from paumer_edge.core.cost import CostModel
from paumer_edge.runtime.bench import Timing, bench, speedups
from paumer_edge.runtime.loop import RunSummary

ROOT = Path(__file__).resolve().parents[1]


def script(name: str) -> ModuleType:
    """A benchmark script as a module (benchmarks/ is not a package)."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "benchmarks" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


COST = CostModel(embed_dim=8, mlp_ratio=4.0, num_patches=16, extra_tokens=1, stage_blocks=(1, 1), num_classes=3,
                 patch_size=4).with_latency([(4.0, 0.0, 0.0), (1.0, 0.25, 0.0)], decoder_ms=3.0, device="test")


def test_the_ideal_speed_up_counts_the_decoder_the_budget_cannot_shrink() -> None:
    assert COST.full_cost == 4.0 + 1.0 + 0.25 * 16  # 9 ms of encoder at every token
    assert COST.encoder_share == pytest.approx(9 / 12)
    assert COST.ideal_speedup(1.0) == 1.0
    assert COST.ideal_speedup(0.5) == pytest.approx(12 / (4.5 + 3))  # 1.6x, not 2x
    assert COST.ideal_speedup(0.0) == 4.0


def test_percentiles_and_fps_of_a_known_series() -> None:
    t = Timing("budget 1", 1.0, total_ms=[float(v) for v in range(1, 101)],
               stage_ms=[[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]], counts=[16, 8])
    row = t.summary()
    assert (row["ms_p50"], row["ms_p90"], row["ms_p99"]) == pytest.approx((50.5, 90.1, 99.01))
    assert row["ms_mean"] == 50.5 and row["fps"] == pytest.approx(1000 / 50.5) and row["runs"] == 100
    assert row["stage_ms_p50"] == [3.0, 4.0] and row["counts"] == [16, 8]


def test_paired_speed_up_is_the_median_of_per_round_ratios() -> None:
    base, half = [20.0, 40.0, 60.0, 80.0], [10.0, 20.0, 30.0, 80.0]  # one round where the setting stalled
    s = speedups(base, half)
    assert s["speedup_paired"] == 2.0  # median of 2, 2, 2, 1
    assert s["speedup_paired_quartiles"] == pytest.approx([1.75, 2.0])  # the spread of the pairs
    assert s["speedup_vs_budget1"] == pytest.approx(50 / 35)  # ratio of mean FPS: hit by the stall
    drift = speedups([10.0, 10.0, 40.0, 40.0], [5.0, 5.0, 40.0, 40.0], paired=False)
    assert drift["speedup_paired"] == pytest.approx(25 / 22.5)  # not paired: the ratio of medians
    assert "speedup_paired_quartiles" not in drift


class Clock:
    """A clock that moves only when the fake pipeline or a reference says it spent time."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_bench_rows_from_scripted_timings() -> None:
    clock = Clock()
    script_ms = {1.0: iter([99.0, 20, 40, 60, 80]), 0.5: iter([99.0, 10, 20, 30, 80])}  # warm-up first
    fractions = {1.0: 1.0, 0.5: 0.5}

    def pipe(frame: np.ndarray, budget: float) -> Any:
        clock.now += next(script_ms[budget]) / 1000
        stats = SimpleNamespace(stage_ms=[1.0, 2.0], decoder_ms=0.5, counts=[16, int(16 * budget)],
                                cost_fraction=fractions[budget], plan="")
        return SimpleNamespace(stats=stats)

    def timed(ms: list[float]) -> Any:
        it = iter(ms)

        def run(frame: np.ndarray) -> None:
            clock.now += next(it) / 1000
        return run

    rows = bench(pipe_like(pipe, COST), [np.zeros((4, 4, 3), np.uint8)], [1.0, 0.5], rounds=4, warmup=1,
                 references={"full.onnx": timed([99.0, 25, 25, 25, 25])},
                 other_framework={"pytorch 1": timed([99.0, 30, 30, 30, 30])}, progress=False, clock=clock)
    by = {r["name"]: r for r in rows}
    assert list(by) == ["budget 1", "budget 0.5", "full.onnx", "pytorch 1"]
    assert by["budget 1"]["ms_p50"] == pytest.approx(50) and by["budget 0.5"]["ms_p50"] == pytest.approx(25)
    assert by["budget 0.5"]["speedup_paired"] == pytest.approx(2.0)
    assert by["budget 0.5"]["speedup_vs_budget1"] == pytest.approx(50 / 35)
    assert by["budget 0.5"]["ideal_speedup"] == pytest.approx(12 / 7.5) and by["budget 1"]["ideal_speedup"] == 1.0
    assert by["full.onnx"]["speedup_paired"] == pytest.approx(np.median([20 / 25, 40 / 25, 60 / 25, 80 / 25]))
    assert by["pytorch 1"]["speedup_paired"] == pytest.approx(50 / 30)  # another phase: the ratio of medians
    assert all(r["runs"] == 4 for r in rows) and by["budget 0.5"]["counts"] == [16, 8]


def pipe_like(fn: Any, cost: CostModel) -> Any:
    """A callable with a `cost`, as `bench` uses a Pipeline."""

    class Pipe:
        def __call__(self, frame: np.ndarray, budget: float) -> Any:
            return fn(frame, budget)

        def plan(self, budget: float) -> None:  # a bundle without plans
            return None

    p = Pipe()
    p.cost = cost  # type: ignore[attr-defined]
    return p


def test_run_vs_bench_quotes_the_median_pair_and_its_spread() -> None:
    rvb = script("run_vs_bench")
    line = RunSummary(frames=900, seconds=38.4, stage_ms=[7.8, 9.4], decoder_ms=0.8, inference_ms=42.4,
                      counts=[512, 512], budget=1.0).line()  # what `paumer-edge run` prints
    assert rvb.parse_summary(f"progress...\n{line}\n") == {"run_frames": 900, "run_seconds": 38.4,
                                                           "run_fps": round(900 / 38.4, 1)}
    pairs = [{"run_fps": 23.5, "bench_fps": 27.32}, {"run_fps": 25.7, "bench_fps": 23.14},
             {"run_fps": 23.4, "bench_fps": 28.67}]
    s = rvb.summarise_pairs(pairs)
    assert s["run_over_bench_median"] == pytest.approx(23.5 / 27.32)
    assert s["run_over_bench_min"] == pytest.approx(23.4 / 28.67) and s["run_over_bench_max"] == pytest.approx(
        25.7 / 23.14)
    with pytest.raises(SystemExit, match="no summary line"):
        rvb.parse_summary("Traceback ...")


def test_forward_time_rows_from_known_times() -> None:
    pytest.importorskip("torch")  # the script times the PyTorch model
    ft = script("forward_time")
    settings = [("unpaused", None), ("budget 1", 1.0), ("budget 0.5", 0.5)]
    times = {"unpaused": [9.0, 9.0, 9.0], "budget 1": [10.0, 20.0, 30.0], "budget 0.5": [5.0, 10.0, 60.0]}
    rows = {r["setting"]: r for r in ft.summarise(settings, times, {1.0: ([16, 16], 1.0), 0.5: ([16, 8], 0.5)}, COST)}
    half = rows["budget 0.5"]
    assert half["ms_p50"] == 10.0 and half["ms_min"] == 5.0 and half["ms_p90"] == pytest.approx(50.0)
    assert half["speedup_vs_budget1"] == 2.0  # ratio of medians: 20 / 10
    assert half["speedup_paired"] == 2.0  # median of 2, 2, 0.5
    assert half["ideal_speedup"] == pytest.approx(12 / 7.5) and half["counts"] == [16, 8]
    assert rows["unpaused"]["speedup_paired"] == pytest.approx(np.median([10 / 9, 20 / 9, 30 / 9]))
    assert "ideal_speedup" not in rows["unpaused"]
