"""Does `paumer-edge run` on a video keep up with the pipeline alone? `run` FPS against `bench` FPS, JSON out.

    python benchmarks/run_vs_bench.py [--bundle B] [--budgets 1,0.5] [--seconds 30] [--out benchmarks/results]

`bench` times the embedding API on frames in memory; `run` decodes a video, segments it and writes the
overlay video in three threads, which on a small CPU compete with inference for the cores. Both use the
same bundle, backend and latency profile (bench measures it, run reads it), each in its own process
(as a user runs them). Bench and run alternate, `--repeats` times per budget, and the figure is the
median of the paired ratios: a machine whose speed drifts (a shared host) then moves both sides alike.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from paumer_edge.core.atomic import write_json_atomic
from paumer_edge.verbs.params import parse_floats

SUMMARY = re.compile(r"(\d+) frames in ([\d.]+) s: ([\d.]+) FPS")


def cli(*args: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "paumer_edge.cli", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"paumer-edge {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc.stdout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", help="bundle or checkpoint (default: the bundled sample)")
    ap.add_argument("--budgets", type=parse_floats, default=[1.0, 0.5])
    ap.add_argument("--seconds", type=float, default=30.0, help="length of the generated street video")
    ap.add_argument("--video", help="run on this video instead of generating one")
    ap.add_argument("--size", default="360x640")
    ap.add_argument("--rounds", type=int, default=100, help="bench rounds per repeat")
    ap.add_argument("--repeats", type=int, default=3, help="bench/run pairs per budget (default 3)")
    ap.add_argument("--run-args", default="", help="extra `run` options, e.g. '--pause-map'")
    ap.add_argument("--out", default="benchmarks/results")
    a = ap.parse_args()
    model = ["--model", a.bundle] if a.bundle else []
    with tempfile.TemporaryDirectory() as tmp:
        video = Path(a.video) if a.video else Path(tmp) / "drive.mp4"
        if not a.video:
            cli("synth", "video", str(video), "--seconds", str(a.seconds), "--size", a.size, "--quiet")
        rows = []
        for budget in a.budgets:
            pairs = []
            for _ in range(a.repeats):
                bench_json = Path(tmp) / "bench.json"
                cli("bench", *([a.bundle] if a.bundle else []), "--budgets", f"{budget:g}", "--rounds", str(a.rounds),
                    "--frame-size", a.size, "--no-torch", "--quiet", "--json", str(bench_json))
                bench_fps = json.loads(bench_json.read_text())["results"][0]["fps"]
                out = cli("run", str(video), *model, "--budget", f"{budget:g}", "--out", str(Path(tmp) / "o.mp4"),
                          "--quiet", *a.run_args.split())
                found = SUMMARY.search(out)
                if not found:
                    raise SystemExit(f"no summary line in the output of run: {out!r}")
                pairs.append({"bench_fps": bench_fps, "run_fps": float(found[3]), "run_frames": int(found[1]),
                              "run_seconds": float(found[2]), "run_over_bench": float(found[3]) / bench_fps,
                              "run_summary": out.strip().splitlines()[-1]})
            ratio = float(np.median([p["run_over_bench"] for p in pairs]))
            rows.append({"budget": budget, "run_over_bench_median": ratio, "pairs": pairs})
            fps = ", ".join(f"{p['run_fps']:.1f}/{p['bench_fps']:.1f}" for p in pairs)
            print(f"budget {budget:g}: run/bench {fps} FPS; median {100 * ratio:.0f}% of bench")
    result = {"video": a.video or f"generated street drive, {a.seconds:g} s", "size": a.size, "run_args": a.run_args,
              "bench_rounds": a.rounds, "repeats": a.repeats,
              "machine": f"{platform.machine()} {platform.processor()}".strip(), "results": rows}
    suffix = "_".join(a.run_args.replace("-", "").split())
    path = Path(a.out) / f"run_vs_bench{'_' + suffix if suffix else ''}.json"
    write_json_atomic(path, result)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
