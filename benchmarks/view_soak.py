"""Memory of a run with a live view over a long time, while viewers come and go.

    python benchmarks/view_soak.py                       # 10 minutes, the sample model, 360x640 street frames
    python benchmarks/view_soak.py --seconds 60 --json /tmp/s.json --plot ''

One Pipeline segments street frames in a loop (the budget sweeping 0.25-1 and back) and publishes every
frame to a live view. A viewer process (benchmarks/view_clients.py cycle) connects, watches the pictures
and stats for 1-5 s, leaves, and comes back 0.5-3 s later; every fifth visit stalls (connects and reads
nothing). Every 2 s the run records its resident memory (RSS), threads, open files and the view's open
connections. Target: RSS after the first minute to the end grows < 2%, and when the last viewer has left,
no connection, thread or file is left behind. JSON (with provenance) and a plot in benchmarks/results/.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from provenance import provenance, rss_mib
from soak import budget_wave, ensure_bundle, street_frames

RESULTS = Path(__file__).resolve().parent / "results"
HERE = Path(__file__).resolve().parent
RSS_TARGET_PCT = 2.0


def census(server: Any) -> dict[str, Any]:
    return {"rss_mib": round(rss_mib(), 2), "threads": threading.active_count(),
            "fds": len(os.listdir("/proc/self/fd")), "connections": server.connections, "viewers": server.viewers}


def soak(a: argparse.Namespace) -> dict[str, Any]:
    from paumer_edge.runtime import Pipeline

    prov = provenance()
    frames = street_frames(a.distinct, (a.height, a.width))
    pipe = Pipeline(ensure_bundle(Path(a.bundle)), threads=a.threads)
    pipe.warmup()
    server = pipe.serve_view(0)
    for i in range(20):  # warm the view's own paths before the baseline census
        pipe(frames[i % len(frames)])
    baseline = census(server)
    viewer = subprocess.Popen([sys.executable, str(HERE / "view_clients.py"), "cycle", server.url,
                               "--seconds", str(a.seconds), "--seed", str(a.seed)], stdout=subprocess.PIPE, text=True)
    samples: list[dict[str, Any]] = []
    t0 = time.monotonic()
    n, next_sample = 0, 0.0
    while (elapsed := time.monotonic() - t0) < a.seconds:
        pipe.budget = budget_wave(n, a.period)
        frame = frames[n % len(frames)]
        server.publish(frame, pipe(frame))
        n += 1
        if elapsed >= next_sample:
            samples.append({"t": round(elapsed, 2), "frames": n, **census(server)})
            next_sample += a.sample_every
    out, _ = viewer.communicate(timeout=120)
    time.sleep(3)  # the last visit's connections close
    after = census(server)
    server.close()
    closed = census(server)
    visits = json.loads(out.strip().splitlines()[-1])
    warm = [s for s in samples if s["t"] >= a.warmup]
    start, end = warm[0]["rss_mib"], warm[-1]["rss_mib"]
    t = np.array([s["t"] for s in warm])
    slope = float(np.polyfit(t, [s["rss_mib"] for s in warm], 1)[0]) * 3600 if len(warm) > 2 else 0.0
    growth = 100 * (end - start) / start
    left = {k: after[k] - baseline[k] for k in ("threads", "fds", "connections")}
    return {
        "what": "live view soak: one Pipeline publishing every frame; a viewer connecting and leaving",
        "provenance": prov, "bundle": a.bundle, "backend": pipe.backend.describe(), "frame_size": [a.height, a.width],
        "seconds": a.seconds, "frames": n, "fps": round(n / a.seconds, 2), "warmup_s": a.warmup,
        "visits": len(visits["visits"]), "stalled_visits": sum(1 for v in visits["visits"] if not v[2]),
        "pictures_received": visits["pictures"], "stats_events_received": visits["events"],
        "pictures_encoded": server.hub.encoded,
        "rss_mib": {"after_warmup": start, "end": end, "max": max(s["rss_mib"] for s in warm),
                    "growth_pct": round(growth, 3), "slope_mib_per_hour": round(slope, 3)},
        "census": {"baseline": baseline, "after_last_viewer": after, "after_close": closed,
                   "left_behind": left},
        "load_average_end": [round(x, 2) for x in os.getloadavg()],
        "target": {"rss_growth_pct": RSS_TARGET_PCT, "left_behind": 0},
        "pass": bool(growth < RSS_TARGET_PCT and all(v <= 0 for v in left.values())),
        "samples": samples,
    }


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from paumer_edge.core.atomic import save_figure_atomic

    s = result["samples"]
    t = [x["t"] / 60 for x in s]
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(6.4, 5.2), sharex=True)
    ax1.plot(t, [x["rss_mib"] for x in s], lw=1)
    ax1.axvline(result["warmup_s"] / 60, color="grey", ls=":", label="end of warm-up")
    ax1.set_ylabel("RSS (MiB)")
    ax1.set_title(f"live view soak: {result['visits']} visits, RSS {result['rss_mib']['growth_pct']:+.2f}% "
                  "after warm-up", fontsize=10)
    ax1.legend(fontsize=8)
    ax1.grid(alpha=0.3)
    ax2.step(t, [x["connections"] for x in s], where="post", lw=1, label="open view connections")
    ax2.step(t, [x["threads"] for x in s], where="post", lw=1, label="threads")
    ax2.set_xlabel("minutes")
    ax2.legend(fontsize=8)
    ax2.grid(alpha=0.3)
    fig.tight_layout()
    save_figure_atomic(fig, path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--bundle", default="/tmp/sample.paumer", help="bundle (exported from the sample model if missing)")
    p.add_argument("--seconds", type=float, default=600.0)
    p.add_argument("--warmup", type=float, default=60.0, help="seconds before the RSS baseline")
    p.add_argument("--sample-every", type=float, default=2.0)
    p.add_argument("--period", type=int, default=250, help="frames per budget sweep")
    p.add_argument("--distinct", type=int, default=6)
    p.add_argument("--height", type=int, default=360)
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=str(RESULTS / "view_soak.json"))
    p.add_argument("--plot", default=str(RESULTS / "view_soak.png"))
    a = p.parse_args(argv)
    from paumer_edge.core.atomic import write_json_atomic

    result = soak(a)
    write_json_atomic(a.json, result)
    if a.plot:
        plot(result, Path(a.plot))
    m = result["rss_mib"]
    print(f"{result['seconds']:.0f} s, {result['frames']} frames, {result['visits']} visits "
          f"({result['stalled_visits']} stalled): RSS {m['after_warmup']:.1f} -> {m['end']:.1f} MiB "
          f"({m['growth_pct']:+.2f}%, target < {RSS_TARGET_PCT}%); left behind {result['census']['left_behind']}; "
          f"{'PASS' if result['pass'] else 'FAIL'}; wrote {a.json}")
    return 0 if result["pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
