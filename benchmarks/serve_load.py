"""Load test of `paumer-edge serve` on loopback: simulated cameras, server overhead, dynamic batching.

    python benchmarks/serve_load.py                         # the sample model, a few minutes on 2 cores
    python benchmarks/serve_load.py --bundle my.paumer --fps 10 --max-cameras 32

It starts `paumer-edge serve` (a separate process, on 127.0.0.1 with free ports) and measures, with
raw 360x640 street frames over gRPC at one budget (a fraction of MACs, so both sides plan alike):
1. overhead: rounds alternating the in-process `Pipeline` (this process, server idle) and one camera's
   back-to-back requests to the server: served FPS / in-process FPS, the median of per-round ratios;
2. dynamic batching: 4 cameras sending back-to-back at once against the same 4 frames sent one after
   another by one client: total FPS, paired over rounds (medians and quartiles of the per-round ratios);
3. cameras: N cameras, each sending F frames/s on its own clock for a few seconds (N = 1, 2, 4, ...
   until it falls behind): achieved frames/s, latency p50/p99. Sustained: achieved >= 95% of N x F
   and p99 under two frame intervals (a camera that keeps up, never more than a frame behind).
Every loop is bounded in count and time; it stops by itself.
Results: JSON and a plot in benchmarks/results/ (serve_load.*), with the command, git commit, machine,
load average and date.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
SUSTAINED = 0.95


def street_frames(count: int, size: tuple[int, int]) -> list[np.ndarray]:
    from paumer_edge.data.streets import derive_seed, street_scene

    return [street_scene(derive_seed(17, i), size)[0] for i in range(count)]


TRITON_DURATIONS = ("request", "queue", "compute_input", "compute_infer", "compute_output")


def triton_durations(metrics_url: str) -> dict[str, float]:
    """Triton's cumulative per-model durations (microseconds, summed over models) and request count, from its
    Prometheus endpoint: where a served request's time goes inside the server."""
    import re
    import urllib.request

    text = urllib.request.urlopen(metrics_url, timeout=10).read().decode()
    out = {}
    for key in (*(f"{d}_duration_us" for d in TRITON_DURATIONS), "request_success"):
        found = re.findall(rf"^nv_inference_{key}{{[^}}]*}} (\S+)$", text, re.M)
        out[key] = sum(float(v) for v in found)
    return out


def start_server(bundle: Path, a: argparse.Namespace, log: Path) -> tuple[subprocess.Popen, str]:
    from paumer_edge.runtime.serving import SegmentClient
    from paumer_edge.runtime.serving.tritonserver import free_port

    ports = [str(free_port()) for _ in range(3)]
    cmd = [sys.executable, "-m", "paumer_edge.cli", "serve", str(bundle), "--cost", "macs", "--budget", str(a.budget),
           "--max-batch", str(a.max_batch), "--max-delay-us", str(a.max_delay_us), "--http-port", ports[0],
           "--grpc-port", ports[1], "--metrics-port", ports[2], "--log-file", str(log), "--quiet"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"grpc://127.0.0.1:{ports[1]}"
    a.metrics_url = f"http://127.0.0.1:{ports[2]}/metrics"
    deadline = time.monotonic() + 180
    with SegmentClient(url) as client:
        while not client.ready():
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise SystemExit(f"the server did not start: {proc.communicate()[0][-2000:]}")
            time.sleep(0.3)
    return proc, url


def timed(fn: Any, n: int) -> float:
    """Frames per second of `n` calls of fn(i)."""
    t0 = time.perf_counter()
    for i in range(n):
        fn(i)
    return n / (time.perf_counter() - t0)


def overhead(pipe: Any, client: Any, frames: list[np.ndarray], a: argparse.Namespace) -> dict[str, Any]:
    rows = []
    spent = {k: 0.0 for k in triton_durations(a.metrics_url)}
    for _ in range(a.rounds):
        local = timed(lambda i: pipe(frames[i % len(frames)], budget=a.budget), a.round_frames)
        before = triton_durations(a.metrics_url)
        served = timed(lambda i: client.segment(frames[i % len(frames)], camera_id="cam-0"), a.round_frames)
        after = triton_durations(a.metrics_url)
        spent = {k: spent[k] + after[k] - before[k] for k in spent}
        rows.append({"in_process_fps": round(local, 2), "served_fps": round(served, 2),
                     "ratio": round(served / local, 4)})
    requests = max(spent.pop("request_success"), 1.0)
    # per served request, ms: the client's round trip, then Triton's own account of it (request = queue +
    # compute; compute_infer is PyTriton's hop to the serving process and the pipeline there)
    where = {"client_round_trip": 1000 / float(np.median([r["served_fps"] for r in rows])),
             **{d: spent[f"{d}_duration_us"] / requests / 1000 for d in TRITON_DURATIONS},
             "in_process_frame": 1000 / float(np.median([r["in_process_fps"] for r in rows]))}
    return {"rounds": rows, "served_ms": {k: round(v, 2) for k, v in where.items()},
            "in_process_fps": float(np.median([r["in_process_fps"] for r in rows])),
            "served_fps": float(np.median([r["served_fps"] for r in rows])),
            "ratio_median": float(np.median([r["ratio"] for r in rows])),
            "ratio_quartiles": [float(q) for q in np.percentile([r["ratio"] for r in rows], [25, 75])], "target": 0.85}


def batching(clients: list[Any], frames: list[np.ndarray], a: argparse.Namespace) -> dict[str, Any]:
    """4 cameras at once (Triton batches them) against the same 4 frames sent one after another."""
    n = a.round_frames // 4 * 4
    rows = []
    with ThreadPoolExecutor(4) as pool:
        for _ in range(a.rounds):
            seq = timed(lambda i: clients[0].segment(frames[i % 4], camera_id=f"cam-{i % 4}"), n)
            t0 = time.perf_counter()
            list(pool.map(lambda k: [clients[k].segment(frames[k], camera_id=f"cam-{k}") for _ in range(n // 4)],
                          range(4)))
            together = n / (time.perf_counter() - t0)
            rows.append({"sequential_fps": round(seq, 2), "four_cameras_fps": round(together, 2),
                         "gain": round(together / seq, 4)})
    return {"rounds": rows, "sequential_fps": float(np.median([r["sequential_fps"] for r in rows])),
            "four_cameras_fps": float(np.median([r["four_cameras_fps"] for r in rows])),
            "gain_median": float(np.median([r["gain"] for r in rows])),
            "gain_quartiles": [float(q) for q in np.percentile([r["gain"] for r in rows], [25, 75])]}


def cameras(url: str, frames: list[np.ndarray], count: int, a: argparse.Namespace) -> dict[str, Any]:
    """`count` cameras at a.fps each for a.seconds, each on its own clock (a late frame goes at once)."""
    from paumer_edge.runtime.serving import SegmentClient

    latencies: list[list[float]] = [[] for _ in range(count)]
    start = time.perf_counter() + 0.2
    end = start + a.seconds

    def camera(k: int) -> None:
        with SegmentClient(url) as client:
            i = 0
            while True:
                due = start + i / a.fps + k / (a.fps * count)  # cameras out of phase, as real ones are
                if due >= end:
                    return
                time.sleep(max(0.0, due - time.perf_counter()))
                t0 = time.perf_counter()
                client.segment(frames[(i + k) % len(frames)], camera_id=f"cam-{k}")
                latencies[k].append((time.perf_counter() - t0) * 1000)
                i += 1

    threads = [threading.Thread(target=camera, args=(k,)) for k in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(a.seconds + 60)
    elapsed = max(time.perf_counter() - start, a.seconds)
    lat = np.array([x for per in latencies for x in per])
    achieved = lat.size / elapsed
    p99 = float(np.percentile(lat, 99)) if lat.size else float("inf")
    return {"cameras": count, "fps_each": a.fps, "offered_fps": count * a.fps, "achieved_fps": round(achieved, 2),
            "p50_ms": round(float(np.percentile(lat, 50)), 2) if lat.size else None, "p99_ms": round(p99, 2),
            "sustained": bool(achieved >= SUSTAINED * count * a.fps and p99 < 2000 / a.fps)}


def measure(a: argparse.Namespace, argv: list[str]) -> dict[str, Any]:
    from paumer_edge.core.provenance import Provenance
    from paumer_edge.runtime import Pipeline
    from paumer_edge.runtime.bundle import load_bundle
    from paumer_edge.runtime.serving import SegmentClient

    prov = Provenance.start(load_bundle(a.bundle).manifest, a.bundle)
    result: dict[str, Any] = {"budget": a.budget, "frame_size": [a.height, a.width],
                              "max_batch": a.max_batch, "max_delay_us": a.max_delay_us}
    frames = street_frames(a.distinct, (a.height, a.width))
    pipe = Pipeline(a.bundle, cost="macs", budget=a.budget, shared_threads=True)  # as the server's (and `run`'s)
    pipe.warmup()
    result["model"] = pipe.describe()
    proc, url = start_server(Path(a.bundle), a, Path(tempfile.gettempdir()) / "serve_load_triton.log")
    try:
        clients = [SegmentClient(url) for _ in range(4)]
        for c in clients:
            c.segment(frames[0])
        print("overhead ...", flush=True)
        result["overhead"] = overhead(pipe, clients[0], frames, a)
        print("dynamic batching ...", flush=True)
        result["batching"] = batching(clients, frames, a)
        sweep = []
        count = 1
        while count <= a.max_cameras:
            print(f"{count} camera(s) at {a.fps:g} FPS each ...", flush=True)
            sweep.append(cameras(url, frames, count, a))
            if not sweep[-1]["sustained"]:
                break
            count *= 2
        result["cameras"] = sweep
        ok = [s for s in sweep if s["sustained"]]
        result["sustained"] = {"cameras": ok[-1]["cameras"] if ok else 0, "fps_each": a.fps,
                               "total_fps": ok[-1]["achieved_fps"] if ok else 0.0}
        for c in clients:
            c.close()
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
    result["provenance"] = prov.finish()
    return result


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from paumer_edge.core.atomic import save_figure_atomic

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    sweep = result["cameras"]
    n = [s["cameras"] for s in sweep]
    ax1.plot(n, [s["offered_fps"] for s in sweep], "k--", label="offered")
    ax1.plot(n, [s["achieved_fps"] for s in sweep], "o-", label="achieved")
    ax1.set_xscale("log", base=2)
    ax1.set_xlabel(f"cameras at {sweep[0]['fps_each']:g} FPS each")
    ax1.set_ylabel("frames per second")
    tw = ax1.twinx()
    tw.plot(n, [s["p50_ms"] for s in sweep], "s:", color="tab:green", label="p50 ms")
    tw.plot(n, [s["p99_ms"] for s in sweep], "^:", color="tab:red", label="p99 ms")
    tw.set_ylabel("latency (ms)")
    ax1.legend(loc="upper left")
    tw.legend(loc="lower right")
    ax1.set_title("simulated cameras on loopback")
    o, b = result["overhead"], result["batching"]
    labels = ["in-process\nPipeline", "served\n1 camera", "served\n4 in turn", "served\n4 at once"]
    values = [o["in_process_fps"], o["served_fps"], b["sequential_fps"], b["four_cameras_fps"]]
    ax2.bar(labels, values, color=["tab:gray", "tab:blue", "tab:blue", "tab:orange"])
    ax2.set_ylabel("frames per second (median of rounds)")
    ax2.set_title(f"served/in-process {o['ratio_median']:.2f}, batching gain {b['gain_median']:.2f}x")
    fig.suptitle(f"paumer-edge serve, budget {result['budget']:g}, {result['frame_size'][0]}x"
                 f"{result['frame_size'][1]} frames")
    fig.tight_layout()
    save_figure_atomic(fig, path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--bundle", default="/tmp/sample.paumer", help="bundle (exported from the sample model if missing)")
    p.add_argument("--budget", type=float, default=0.5)
    p.add_argument("--fps", type=float, default=5.0, help="frames per second of each simulated camera")
    p.add_argument("--seconds", type=float, default=8.0, help="length of each camera-count step")
    p.add_argument("--max-cameras", type=int, default=16)
    p.add_argument("--rounds", type=int, default=5, help="paired rounds of the overhead and batching measures")
    p.add_argument("--round-frames", type=int, default=40, help="frames per side of a round")
    p.add_argument("--max-batch", type=int, default=8)
    p.add_argument("--max-delay-us", type=int, default=2000)
    p.add_argument("--distinct", type=int, default=8, help="different street frames, cycled")
    p.add_argument("--height", type=int, default=360)
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--json", default=str(RESULTS / "serve_load.json"))
    p.add_argument("--plot", default=str(RESULTS / "serve_load.png"))
    a = p.parse_args(argv)
    if not (Path(a.bundle) / "manifest.json").exists():
        print(f"exporting the sample model to {a.bundle} ...", flush=True)
        subprocess.run([sys.executable, "-m", "paumer_edge.cli", "export", "-o", a.bundle, "--no-verify", "--quiet"],
                       check=True)
    from paumer_edge.core.atomic import write_json_atomic

    result = measure(a, argv)
    write_json_atomic(a.json, result)
    plot(result, Path(a.plot))
    o, b, s = result["overhead"], result["batching"], result["sustained"]
    print(f"served/in-process at batch 1: {o['ratio_median']:.3f} ({o['served_fps']:.1f} vs {o['in_process_fps']:.1f} "
          f"FPS; target >= 0.85); 4 cameras at once {b['four_cameras_fps']:.1f} FPS vs 4 sequential "
          f"{b['sequential_fps']:.1f} ({b['gain_median']:.2f}x); sustained {s['cameras']} cameras x {s['fps_each']:g} "
          f"FPS; wrote {a.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
