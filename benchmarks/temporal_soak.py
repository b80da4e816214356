"""Long run of temporal reuse: 10,000 frames of a still camera through one reusing Pipeline; memory and drift.

    python benchmarks/temporal_soak.py                       # 10,000 frames, budget 0.5, the sample model
    python benchmarks/temporal_soak.py --frames 2000 --window 200

The still-camera video (`paumer-edge synth video --static`, 600 frames) plays forwards and backwards, so the
motion never jumps, for --frames frames. Memory (RSS) is sampled every 50 frames. In a window after the warm-up
and in the last window that shows the same frames (a whole number of ping-pong periods later, so that what the
camera sees is the same and only drift can differ), every frame also runs per frame (a second Pipeline,
interleaved): agreement with it and the speed-up are compared between the two windows. Targets: RSS growth under
2%, agreement at the end within 0.3 points of the start (no drift). JSON and a plot in benchmarks/results/.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from provenance import provenance  # noqa: E402
from soak import rss_bytes  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
RSS_TARGET_PCT = 2.0
DRIFT_TARGET_POINTS = 0.3


def ping_pong(count: int, frames: int) -> list[int]:
    """Frame indices 0, 1, ..., n-1, n-2, ..., 1, 0, 1, ... (`frames` of them)."""
    period = max(1, 2 * count - 2)
    return [i % period if i % period < count else period - i % period for i in range(frames)]


def end_window(count: int, a: argparse.Namespace) -> range:
    """The last window that shows the same frames as the start window (a whole number of ping-pong periods later),
    so the two agreements differ by drift, not by what the camera sees; the last frames when the run is shorter."""
    period = max(1, 2 * count - 2)
    laps = (a.frames - a.window - a.warmup) // period
    start = a.warmup + laps * period if laps > 0 else a.frames - a.window
    return range(start, start + a.window)


def load_frames(video: Path) -> list[np.ndarray]:
    from paumer_edge.runtime.sources import open_source

    return [f.image for f in open_source(str(video))]


def soak(a: argparse.Namespace) -> dict[str, Any]:
    from paumer_edge.core.temporal import ReuseOptions
    from paumer_edge.runtime import Pipeline
    from paumer_edge.verbs.bundles import bundle_for

    bundle = Path(a.bundle) if a.bundle else bundle_for(None, quiet=True)
    frames = load_frames(Path(a.video))
    order = ping_pong(len(frames), a.frames)
    reuse = Pipeline(bundle, budget=a.budget, threads=a.threads, shared_threads=True, reuse=ReuseOptions())
    plain = Pipeline(bundle, budget=a.budget, threads=a.threads, shared_threads=True, cost=reuse.cost)
    reuse.warmup()
    plain.warmup()
    windows = {"start": range(a.warmup, a.warmup + a.window), "end": end_window(len(frames), a)}
    ms = np.zeros(a.frames)
    kinds: list[str] = []
    rss: list[tuple[int, int]] = []
    paired: dict[str, dict[str, list[float]]] = {w: {"agreement": [], "reuse_ms": [], "plain_ms": []} for w in windows}
    t_start = time.perf_counter()
    for i, idx in enumerate(order):
        t0 = time.perf_counter()
        out = reuse(frames[idx])
        ms[i] = (time.perf_counter() - t0) * 1000
        kinds.append(out.stats.frame_kind)
        for name, span in windows.items():
            if i in span:
                t1 = time.perf_counter()
                ref = plain(frames[idx]).labels
                rec = paired[name]
                rec["plain_ms"].append((time.perf_counter() - t1) * 1000)
                rec["reuse_ms"].append(ms[i])
                rec["agreement"].append(float((ref == out.labels).mean()))
        if i % 50 == 0 or i == a.frames - 1:
            rss.append((i, rss_bytes()))
        if (i + 1) % 1000 == 0:
            print(f"{i + 1} frames, {ms[i - 999 : i + 1].mean():.1f} ms/frame, RSS {rss[-1][1] / 2**20:.1f} MiB",
                  flush=True)
    seconds = time.perf_counter() - t_start
    return summarise(a, bundle, ms, kinds, rss, paired, seconds, len(reuse.tiler.streams.streams),  # type: ignore
                     windows)


def summarise(a: argparse.Namespace, bundle: Path, ms: np.ndarray, kinds: list[str], rss: list[tuple[int, int]],
              paired: dict[str, dict[str, list[float]]], seconds: float, streams: int,
              windows: dict[str, range]) -> dict[str, Any]:
    rss_start = next(r for f, r in rss if f >= a.warmup)
    growth = 100.0 * (rss[-1][1] - rss_start) / rss_start
    w = {name: {"agreement_mean": round(float(np.mean(p["agreement"])), 5),
                "agreement_min": round(float(np.min(p["agreement"])), 5),
                "speedup": round(float(np.sum(p["plain_ms"]) / np.sum(p["reuse_ms"])), 3),
                "reuse_ms_mean": round(float(np.mean(p["reuse_ms"])), 2)} for name, p in paired.items()}
    drift = 100.0 * (w["start"]["agreement_mean"] - w["end"]["agreement_mean"])
    return {
        "what": "temporal reuse over a long run: one reusing Pipeline on a still camera (ping-pong), per-frame "
                "processing interleaved in a start and an end window",
        "bundle": str(bundle), "video": a.video, "budget": a.budget, "frames": a.frames, "warmup_frames": a.warmup,
        "window_frames": a.window, "windows_at": {name: [span.start, span.stop] for name, span in windows.items()},
        "seconds": round(seconds, 1), "fps": round(a.frames / seconds, 2),
        "kinds": {k: kinds.count(k) for k in sorted(set(kinds))}, "streams_kept": streams,
        "rss_mib": {"after_warmup": round(rss_start / 2**20, 2), "end": round(rss[-1][1] / 2**20, 2),
                    "max": round(max(r for _, r in rss) / 2**20, 2), "growth_pct": round(growth, 3)},
        "windows": w, "agreement_drift_points": round(drift, 3),
        "targets": {"rss_growth_pct": RSS_TARGET_PCT, "agreement_drift_points": DRIFT_TARGET_POINTS},
        "pass": bool(growth < RSS_TARGET_PCT and drift < DRIFT_TARGET_POINTS),
        "rss_trace_mib": [[f, round(r / 2**20, 2)] for f, r in rss],
        "ms_per_100_frames": [round(float(ms[s : s + 100].mean()), 2) for s in range(0, a.frames, 100)],
    }


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from paumer_edge.core.atomic import save_figure_atomic

    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(6.4, 5.6), sharex=True)
    trace = np.array(result["rss_trace_mib"])
    ax1.plot(trace[:, 0], trace[:, 1], lw=1)
    ax1.set_ylabel("RSS (MiB)")
    w = result["windows"]
    ax1.set_title(f"temporal reuse, {result['frames']} frames: RSS {result['rss_mib']['growth_pct']:+.2f}%, agreement "
                  f"{100 * w['start']['agreement_mean']:.2f}% -> {100 * w['end']['agreement_mean']:.2f}%", fontsize=9)
    ax1.grid(alpha=0.3)
    ax2.plot(np.arange(len(result["ms_per_100_frames"])) * 100 + 50, result["ms_per_100_frames"], lw=1)
    ax2.set_xlabel("frame")
    ax2.set_ylabel("ms per frame (mean of 100)")
    ax2.set_ylim(bottom=0)
    ax2.grid(alpha=0.3)
    fig.tight_layout()
    save_figure_atomic(fig, path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--bundle", help="bundle (default: the sample model's cached export)")
    p.add_argument("--video", default=str(Path("runs") / "temporal" / "static.mp4"),
                   help="a still-camera video (`paumer-edge synth video OUT --static --seconds 20`)")
    p.add_argument("--frames", type=int, default=10000)
    p.add_argument("--budget", type=float, default=0.5)
    p.add_argument("--warmup", type=int, default=300)
    p.add_argument("--window", type=int, default=300, help="frames per comparison window (start and end)")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--json", default=str(RESULTS / "temporal_soak.json"))
    p.add_argument("--plot", default=str(RESULTS / "temporal_soak.png"))
    a = p.parse_args(argv)
    if a.frames < a.warmup + 2 * a.window:
        raise SystemExit("--frames must cover the warm-up and two windows")
    from paumer_edge.core.atomic import write_json_atomic

    prov = provenance(argv)  # the load average as the run starts
    result = soak(a)
    result["provenance"] = prov.finish()  # with the load average at the end
    write_json_atomic(a.json, result)
    if a.plot:
        plot(result, Path(a.plot))
    w, mem = result["windows"], result["rss_mib"]
    print(f"{a.frames} frames: RSS {mem['after_warmup']:.1f} -> {mem['end']:.1f} MiB ({mem['growth_pct']:+.2f}%); "
          f"agreement with per-frame {100 * w['start']['agreement_mean']:.2f}% -> "
          f"{100 * w['end']['agreement_mean']:.2f}%; speed-up {w['start']['speedup']:.2f}x -> "
          f"{w['end']['speedup']:.2f}x; {'PASS' if result['pass'] else 'FAIL'}; wrote {a.json}")
    return 0 if result["pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
