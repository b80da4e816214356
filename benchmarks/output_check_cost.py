"""What the run-time output checks (runtime/output_check.py) cost per frame: JSON with provenance.

    python benchmarks/output_check_cost.py [--bundle /tmp/sample.paumer] [--rounds 400] [--budgets 1,0.5]

Three figures from one run: the checks of one frame timed alone (each graph's recorded call repeated, the
minimum of repeats: what they cost when the machine lets them run, the figure to quote on a shared machine),
the time spent inside the checks during the frames (call by call, preemption included), and the paired
difference between the staged forward with and without them (alternating frame by frame, so the machine's
drift hits both alike; the noisiest).
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import subprocess
import sys
import time
import timeit
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).parent / "results"


def provenance(argv: list[str]) -> dict[str, Any]:
    root = Path(__file__).resolve().parents[1]

    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=30).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    return {"command": " ".join(["python", "benchmarks/output_check_cost.py", *argv]), "git_commit": git("rev-parse",
            "HEAD"), "git_dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
            "machine": f"{platform.machine()} {platform.processor()}".strip(), "cpus": os.cpu_count(),
            "load_average_1min": round(os.getloadavg()[0], 2), "date": time.strftime("%Y-%m-%d %H:%M")}


def time_alone(check: Callable[..., None], args: tuple[Any, ...]) -> float:
    """Seconds one check call takes when it runs undisturbed: the minimum over repeats of 200 calls."""
    return min(timeit.repeat(lambda: check(*args), number=200, repeat=15)) / 200


def measure(bundle: Path, budgets: list[float], rounds: int, warmup: int) -> list[dict[str, Any]]:
    import paumer_edge.runtime.output_check as oc
    from paumer_edge.core.pausing import PausingPolicy
    from paumer_edge.data.streets import derive_seed, street_scene
    from paumer_edge.runtime import Pipeline
    from paumer_edge.runtime.preprocess import preprocess

    pipe = Pipeline(bundle, cost="macs")
    checked = pipe.runner
    bare = copy.copy(checked)  # the same sessions, unwrapped: no checks
    bare.stages = [s.session for s in checked.stages]  # type: ignore[attr-defined]
    bare.decoder = checked.decoder.session  # type: ignore[attr-defined]
    m = pipe.info
    frames = [preprocess(street_scene(derive_seed(5, i), (360, 640))[0], m.input_size, m.mean, m.std)[0][None]
              for i in range(8)]
    spent: list[float] = []
    original = oc.check_outputs
    calls: dict[str, tuple[Any, ...]] = {}

    def timed(*args: Any) -> None:
        t0 = time.perf_counter()
        original(*args)
        spent.append(time.perf_counter() - t0)
        calls[args[0]] = args  # the latest call of each graph, to time alone

    oc.check_outputs = timed  # type: ignore[assignment]
    rows = []
    try:
        for b in budgets:
            policy = PausingPolicy(b)
            on: list[float] = []
            off: list[float] = []
            inside: list[float] = []
            for i in range(warmup + rounds):
                x = frames[i % len(frames)]
                pair = [(checked, on), (bare, off)] if i % 2 else [(bare, off), (checked, on)]
                for runner, out in pair:
                    spent.clear()
                    t0 = time.perf_counter()
                    runner.forward(x, policy)
                    dt = time.perf_counter() - t0
                    if i >= warmup:
                        out.append(dt * 1000)
                        if runner is checked:
                            inside.append(sum(spent) * 1e6)
            diff = np.array(on) - np.array(off)
            alone = sum(time_alone(original, args) for args in calls.values())
            calls.clear()
            rows.append({"budget": b, "rounds": rounds, "forward_ms_p50_checked": round(float(np.median(on)), 3),
                         "forward_ms_p50_unchecked": round(float(np.median(off)), 3),
                         "paired_difference_ms_p50": round(float(np.median(diff)), 4),
                         "checks_us_alone": round(alone * 1e6, 2),
                         "checks_us_p50": round(float(np.median(inside)), 1),
                         "checks_us_p99": round(float(np.percentile(inside, 99)), 1),
                         "checks_pct_of_forward": round(100 * alone * 1000 / float(np.median(on)), 4)})
    finally:
        oc.check_outputs = original  # type: ignore[assignment]
    return rows


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--bundle", default="/tmp/sample.paumer", help="bundle (exported from the sample model if missing)")
    p.add_argument("--budgets", default="1,0.5")
    p.add_argument("--rounds", type=int, default=400)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--json", default=str(RESULTS / "output_check_cost.json"))
    a = p.parse_args(argv)
    from paumer_edge.core.atomic import write_json_atomic

    bundle = Path(a.bundle)
    if not (bundle / "manifest.json").exists():
        subprocess.run([sys.executable, "-m", "paumer_edge.cli", "export", "-o", str(bundle), "--no-verify",
                        "--quiet"], check=True)
    load = os.getloadavg()[0]
    rows = measure(bundle, [float(b) for b in a.budgets.split(",")], a.rounds, a.warmup)
    result = {"what": "run-time output checks of every graph (shape, dtype, class range) per staged forward",
              "bundle": str(bundle), "results": rows, **provenance(argv), "load_average_start": round(load, 2)}
    write_json_atomic(a.json, result)
    for r in rows:
        print(f"budget {r['budget']:g}: checks {r['checks_us_alone']:.1f} us per frame alone, "
              f"{r['checks_pct_of_forward']:.3f}% of the {r['forward_ms_p50_checked']:.2f} ms forward (in the frames: "
              f"p50 {r['checks_us_p50']:.1f} us, p99 {r['checks_us_p99']:.1f} us; paired difference "
              f"{r['paired_difference_ms_p50'] * 1000:+.1f} us)")
    print(f"wrote {a.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
