"""Soak test of the embedding API: many frames through one Pipeline, watching memory and latency drift.

    python benchmarks/soak.py                      # 20,000 frames of the sample model, ~10 min on 2 cores
    python benchmarks/soak.py --frames 2000 --bundle my.paumer

It cycles a few pre-rendered street frames while the budget sweeps a periodic wave (so every window
sees the same mix of budgets), and records each frame's latency and, every few frames, the resident
memory (RSS, from /proc/self/statm). After the warm-up it compares the first and the last windows:
targets are RSS growth under 2% and p99 latency drift under 10%. It also checks that the labels of a
(frame, budget) pair never change over the run. Results: JSON and a plot (benchmarks/results/soak.*).
The process stays torch-free: a missing bundle is exported in a separate process.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
RSS_TARGET_PCT = 2.0
P99_TARGET_PCT = 10.0


def rss_bytes() -> int:
    """Resident memory now: /proc/self/statm where there is one, else the peak from getrusage."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def budget_wave(i: int, period: int, low: float = 0.25) -> float:
    """A periodic budget sweep from `low` to 1 and back, rounded to 0.001 (as a controller would set it)."""
    phase = 0.5 - 0.5 * math.cos(2 * math.pi * (i % period) / period)
    return round(low + (1.0 - low) * phase, 3)


def ensure_bundle(path: Path) -> Path:
    """The bundle, exported from the bundled sample checkpoint (in another process) if it is not there."""
    if not (path / "manifest.json").exists():
        print(f"exporting the sample model to {path} ...", flush=True)
        subprocess.run([sys.executable, "-m", "paumer_edge.cli", "export", "-o", str(path), "--no-verify", "--quiet"],
                       check=True)
    return path


def street_frames(count: int, size: tuple[int, int]) -> list[np.ndarray]:
    from paumer_edge.data.streets import derive_seed, street_scene

    return [street_scene(derive_seed(11, i), size)[0] for i in range(count)]


def pct(a: float, b: float) -> float:
    return 100.0 * (b - a) / a if a else 0.0


def window_stats(wall: np.ndarray, cpu: np.ndarray) -> dict[str, float]:
    return {"p50_ms": float(np.percentile(wall, 50)), "p99_ms": float(np.percentile(wall, 99)),
            "mean_ms": float(wall.mean()), "cpu_p50_ms": float(np.percentile(cpu, 50)),
            "cpu_p99_ms": float(np.percentile(cpu, 99))}


def aged_vs_fresh(aged: Any, bundle: Path, frames: list[np.ndarray], count: int, period: int,
                  threads: int) -> dict[str, Any]:
    """The long-running pipeline against a fresh one on alternating frames: both see the same machine load,
    so what differs is what the long run left behind (and the labels must agree)."""
    from paumer_edge.runtime import Pipeline

    # the aged pipeline's cost model: a latency profile re-measured meanwhile (another `bench` on this bundle writes
    # the cache) would give other token counts at the same budget, and so other labels
    fresh = Pipeline(bundle, threads=threads, cost=aged.cost)
    fresh.warmup()
    times: dict[str, list[float]] = {"aged": [], "fresh": []}
    disagree = 0
    for i in range(count):
        budget, frame = budget_wave(i, period), frames[i % len(frames)]
        labels = []
        for name, pipe in (("aged", aged), ("fresh", fresh)) if i % 2 else (("fresh", fresh), ("aged", aged)):
            t0 = time.perf_counter()
            labels.append(pipe(frame, budget=budget).labels)
            times[name].append((time.perf_counter() - t0) * 1000)
        disagree += not np.array_equal(labels[0], labels[1])
    out: dict[str, Any] = {k: {"p50": round(float(np.percentile(v, 50)), 3),
                               "p99": round(float(np.percentile(v, 99)), 3)} for k, v in times.items()}
    out.update(frames=count, label_disagreements=disagree,
               p50_pct=round(pct(out["fresh"]["p50"], out["aged"]["p50"]), 2),
               p99_pct=round(pct(out["fresh"]["p99"], out["aged"]["p99"]), 2))
    return out


def soak(a: argparse.Namespace) -> dict[str, Any]:
    from paumer_edge.core.provenance import Provenance
    from paumer_edge.runtime import Pipeline

    if a.window % a.period or a.warmup % a.period:
        raise SystemExit("--window and --warmup must be multiples of --period (equal budget mixes per window)")
    if a.frames < a.warmup + 2 * a.window:
        raise SystemExit("--frames must cover the warm-up and at least two windows")
    bundle = ensure_bundle(Path(a.bundle))
    frames = street_frames(a.distinct, (a.height, a.width))
    load_start = os.getloadavg()[0]
    pipe = Pipeline(bundle, threads=a.threads)
    provenance = Provenance.start(pipe.bundle.manifest, bundle)
    pipe.warmup()
    wall, cpu = np.zeros(a.frames), np.zeros(a.frames)
    rss: list[tuple[int, int]] = []
    first_labels: dict[tuple[int, float], str] = {}
    mismatches = 0
    t_start = time.perf_counter()
    for i in range(a.frames):
        pipe.budget = budget_wave(i, a.period)
        frame = frames[i % len(frames)]
        c0, t0 = time.process_time(), time.perf_counter()
        labels = pipe(frame).labels
        wall[i], cpu[i] = (time.perf_counter() - t0) * 1000, (time.process_time() - c0) * 1000
        if i % a.check_every == 0:  # the same frame at the same budget must always give the same labels
            key = (i % len(frames), pipe.budget)
            digest = hashlib.sha1(labels.tobytes()).hexdigest()
            mismatches += first_labels.setdefault(key, digest) != digest
        if i % a.rss_every == 0 or i == a.frames - 1:
            rss.append((i, rss_bytes()))
        if a.progress and (i + 1) % 1000 == 0:
            print(f"{i + 1} frames, {wall[max(0, i - 999):i + 1].mean():.1f} ms/frame, "
                  f"RSS {rss[-1][1] / 2**20:.1f} MiB", flush=True)
    seconds = time.perf_counter() - t_start
    load_end = os.getloadavg()[0]

    windows = []
    for start in range(a.warmup, a.frames - a.window + 1, a.window):
        inside = [r for f, r in rss if start <= f < start + a.window]
        windows.append({"start_frame": start, **window_stats(wall[start:start + a.window], cpu[start:start + a.window]),
                        "rss_mib": (inside[-1] if inside else rss[-1][1]) / 2**20})
    first, last = windows[0], windows[-1]
    rss_start = next(r for f, r in rss if f >= a.warmup)
    rss_end = rss[-1][1]
    growth, p50_drift, p99_drift = pct(rss_start, rss_end), pct(first["p50_ms"], last["p50_ms"]), \
        pct(first["p99_ms"], last["p99_ms"])
    ab = aged_vs_fresh(pipe, bundle, frames, a.window, a.period, a.threads) if a.ab else None
    return {
        "what": "embedding API soak: one Pipeline, street frames cycling, budget sweeping periodically",
        "bundle": str(bundle), "backend": pipe.backend.describe(), "cost": str(getattr(pipe, "cost_source", "")),
        "frames": a.frames, "warmup_frames": a.warmup,
        "window_frames": a.window, "budget_period_frames": a.period, "frame_size": [a.height, a.width],
        "distinct_frames": a.distinct, "seconds": round(seconds, 1), "fps": round(a.frames / seconds, 2),
        "load_average": {"start": round(load_start, 2), "end": round(load_end, 2)},
        "rss_mib": {"after_warmup": round(rss_start / 2**20, 2), "end": round(rss_end / 2**20, 2),
                    "max": round(max(r for _, r in rss) / 2**20, 2), "growth_pct": round(growth, 3)},
        "latency_ms": {"first_window": {"p50": round(first["p50_ms"], 3), "p99": round(first["p99_ms"], 3)},
                       "last_window": {"p50": round(last["p50_ms"], 3), "p99": round(last["p99_ms"], 3)},
                       "p50_drift_pct": round(p50_drift, 2), "p99_drift_pct": round(p99_drift, 2),
                       "cpu_p50_drift_pct": round(pct(first["cpu_p50_ms"], last["cpu_p50_ms"]), 2),
                       "cpu_p99_drift_pct": round(pct(first["cpu_p99_ms"], last["cpu_p99_ms"]), 2)},
        "aged_vs_fresh": ab,
        "label_checks": len(range(0, a.frames, a.check_every)), "label_mismatches": int(mismatches),
        "targets": {"rss_growth_pct": a.rss_target, "p99_drift_pct": a.p99_target},
        "pass": bool(growth < a.rss_target and p99_drift < a.p99_target and mismatches == 0
                     and (ab is None or ab["label_disagreements"] == 0)),
        "windows": [{k: round(v, 3) if isinstance(v, float) else v for k, v in w.items()} for w in windows],
        "rss_trace_mib": [[f, round(r / 2**20, 2)] for f, r in rss[:: max(1, len(rss) // 400)]],
        "provenance": provenance.finish(),
    }


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from paumer_edge.core.atomic import save_figure_atomic

    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(6.4, 5.6), sharex=True)
    trace = np.array(result["rss_trace_mib"])
    ax1.plot(trace[:, 0], trace[:, 1], lw=1)
    ax1.axvline(result["warmup_frames"], color="grey", ls=":", label="end of warm-up")
    ax1.set_ylabel("RSS (MiB)")
    ax1.set_title(f"soak: {result['frames']} frames; RSS {result['rss_mib']['growth_pct']:+.2f}%, "
                  f"p99 {result['latency_ms']['p99_drift_pct']:+.1f}% after warm-up", fontsize=10)
    ax1.legend(fontsize=8)
    ax1.grid(alpha=0.3)
    w = result["windows"]
    x = [v["start_frame"] + result["window_frames"] / 2 for v in w]
    ax2.plot(x, [v["p50_ms"] for v in w], "o-", label="p50")
    ax2.plot(x, [v["p99_ms"] for v in w], "s-", label="p99")
    ax2.plot(x, [v["cpu_p99_ms"] for v in w], "^:", label="p99 CPU time (all threads)")
    ax2.set_xlabel("frame")
    ax2.set_ylabel("latency per window (ms)")
    ax2.set_ylim(bottom=0)
    ax2.grid(alpha=0.3)
    ax2.legend(fontsize=8)
    fig.tight_layout()
    save_figure_atomic(fig, path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--bundle", default="/tmp/sample.paumer", help="bundle (exported from the sample model if missing)")
    p.add_argument("--frames", type=int, default=20000)
    p.add_argument("--warmup", type=int, default=1000, help="frames before the first window")
    p.add_argument("--window", type=int, default=2000, help="frames per latency window")
    p.add_argument("--period", type=int, default=250, help="frames per budget sweep")
    p.add_argument("--distinct", type=int, default=6, help="different street frames, cycled")
    p.add_argument("--height", type=int, default=360)
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--rss-every", type=int, default=20, help="frames between RSS samples")
    p.add_argument("--check-every", type=int, default=7, help="frames between label checks")
    p.add_argument("--rss-target", type=float, default=RSS_TARGET_PCT,
                   help=f"largest RSS growth from the end of the warm-up to the end, %% (default {RSS_TARGET_PCT:g})")
    p.add_argument("--p99-target", type=float, default=P99_TARGET_PCT,
                   help=f"largest p99 latency drift from the first to the last window, %% (default {P99_TARGET_PCT:g})")
    p.add_argument("--no-ab", dest="ab", action="store_false",
                   help="skip the final aged-vs-fresh pipeline comparison (one window, frames alternating)")
    p.add_argument("--json", default=str(RESULTS / "soak.json"))
    p.add_argument("--plot", default=str(RESULTS / "soak.png"))
    p.add_argument("--quiet", dest="progress", action="store_false")
    a = p.parse_args(argv)
    from paumer_edge.core.atomic import write_json_atomic

    result = soak(a)
    write_json_atomic(a.json, result)
    if a.plot:
        plot(result, Path(a.plot))
    lat, mem = result["latency_ms"], result["rss_mib"]
    print(f"{result['frames']} frames in {result['seconds']:.0f} s ({result['fps']:.1f} FPS): RSS "
          f"{mem['after_warmup']:.1f} -> {mem['end']:.1f} MiB ({mem['growth_pct']:+.2f}%, target < {a.rss_target:g}%); "
          f"p50 {lat['first_window']['p50']:.1f} -> {lat['last_window']['p50']:.1f} ms ({lat['p50_drift_pct']:+.1f}%), "
          f"p99 {lat['first_window']['p99']:.1f} -> {lat['last_window']['p99']:.1f} ms ({lat['p99_drift_pct']:+.1f}%, "
          f"target < {a.p99_target:g}%); CPU-time p99 {lat['cpu_p99_drift_pct']:+.1f}%; "
          + (f"aged vs fresh pipeline p99 {result['aged_vs_fresh']['p99_pct']:+.1f}%; "
             if result["aged_vs_fresh"] else "")
          + f"label mismatches {result['label_mismatches']}; "
          f"{'PASS' if result['pass'] else 'FAIL'}; wrote {a.json}")
    return 0 if result["pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
