"""INT8 against fp32 on this CPU (ONNX Runtime): speed at every budget, paired in one process, the pausing
decisions and labels against fp32, and where the time goes (an ONNX Runtime profile per op type).

    python benchmarks/int8_speed.py [--bundle B] [--rounds 100] [--check-frames 64] [--vit-s]

The sample model (or `--bundle`, given INT8 graphs if it has none): `Pipeline` end to end on 360x640 street
frames, fp32 and int8 at each budget interleaved round by round (`runtime.bench`), budgets in each precision's
own measured latency (as `run` spends them); `speedup_paired` is the median of per-round ratios against fp32 at
budget 1. `--vit-s`: a Segmenter ViT-S shape at 512x1024 (2048 tokens) with random weights (speed only: its
pausing decisions mean nothing), exported with INT8 graphs calibrated on rendered frames, timed the same way
at budgets 1 and 0.5 (MACs). Writes benchmarks/results/int8_speed.json and a plot.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from provenance import cpu, provenance  # noqa: E402

from paumer_edge.core.atomic import save_figure_atomic, write_json_atomic  # noqa: E402
from paumer_edge.core.pausing import Pauser, PausingPolicy  # noqa: E402
from paumer_edge.data.streets import derive_seed, street_scene  # noqa: E402
from paumer_edge.export.calibration import synthetic_frames  # noqa: E402
from paumer_edge.export.verify_int8 import check_int8  # noqa: E402
from paumer_edge.runtime import Pipeline  # noqa: E402
from paumer_edge.runtime.backends import OrtBackend  # noqa: E402
from paumer_edge.runtime.backends.ort import shared_thread_pool  # noqa: E402
from paumer_edge.runtime.bench import bench  # noqa: E402
from paumer_edge.runtime.bundle import Bundle, load_bundle  # noqa: E402
from paumer_edge.runtime.preprocess import resize_normalise  # noqa: E402
from paumer_edge.runtime.staged import StagedRunner  # noqa: E402
from paumer_edge.verbs.params import parse_floats  # noqa: E402


def op_profile(bundle: Bundle, image: np.ndarray, budget: float, runs: int) -> dict[str, float]:
    """Milliseconds per frame by op type (ONNX Runtime's profiler, every graph of the pipeline at `budget`)."""
    import onnxruntime as ort

    feeds: dict[str, dict[str, Any]] = {}
    StagedRunner(bundle, OrtBackend()).forward(image, Pauser(bundle.cost, PausingPolicy(budget)),
                                               observe=lambda g, f, o: feeds.setdefault(g, dict(f)))
    total: collections.Counter[str] = collections.Counter()
    with tempfile.TemporaryDirectory() as tmp:
        for graph, feed in feeds.items():
            opts = ort.SessionOptions()
            opts.enable_profiling, opts.profile_file_prefix = True, str(Path(tmp) / graph)
            opts.use_per_session_threads = not shared_thread_pool(0)  # the pool the pipelines run on
            session = ort.InferenceSession(str(bundle.graph_path(graph)), opts, providers=["CPUExecutionProvider"])
            session.run(None, feed)  # warm-up, dropped below
            for _ in range(runs):
                session.run(None, feed)
            events = json.loads(Path(session.end_profiling()).read_text())
            runs_seen = [e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"]
            skip_until = runs_seen[0]["ts"] + runs_seen[0]["dur"] if runs_seen else 0
            for e in events:
                if e.get("cat") == "Node" and e["name"].endswith("_kernel_time") and e["ts"] >= skip_until:
                    total[e["args"]["op_name"]] += e["dur"] / 1000 / runs
    return {op: round(ms, 3) for op, ms in total.most_common()}


def paired(fp32: Pipeline, int8: Pipeline, frames: list[np.ndarray], budgets: list[float], rounds: int,
           warmup: int) -> list[dict[str, Any]]:
    """fp32 and int8 at every budget in interleaved rounds; int8 rows are references against fp32 budget 1."""
    refs = {f"int8 budget {b:g}": (lambda frame, b=b: int8(frame, budget=b)) for b in budgets}
    rows = bench(fp32, frames, budgets, rounds, warmup, references=refs)
    for row in rows:
        row["precision"] = "int8" if row["name"].startswith("int8") else "fp32"
        if row["precision"] == "int8":
            b = float(row["name"].split()[-1])
            stats = int8(frames[0], budget=b).stats
            row.update(budget=b, counts=stats.counts, modelled_compute=stats.cost_fraction)
    return rows


def sample_section(a: argparse.Namespace) -> dict[str, Any]:
    from paumer_edge.verbs.bundles import bundle_for

    path = bundle_for(a.bundle, int8=True)
    fp32 = Pipeline(path, shared_threads=True, cost="macs")
    int8 = Pipeline(path, shared_threads=True, cost="macs", precision="int8")
    fp32.calibrate()  # each precision's own latency profile, measured now
    int8.calibrate()
    frames = [street_scene(derive_seed(77, i), (360, 640))[0] for i in range(4)]
    rows = paired(fp32, int8, frames, a.budgets, a.rounds, a.warmup)
    bundle = load_bundle(path)
    m = bundle.model
    images = np.stack([resize_normalise(f, m.input_size, m.mean, m.std)
                       for f in synthetic_frames(a.check_frames, m.input_size, seed=123)])
    report = check_int8(bundle, images, budgets=(1.0, 0.5, 0.25))
    checks = [{**c.__dict__, "ok": c.ok} for c in report.checks
              if c.graph == "int8 pipeline" or c.output == "ranking"]
    profile = {p: op_profile(b, images[:1], 1.0, a.profile_runs)
               for p, b in (("fp32", bundle), ("int8", bundle.at_precision("int8")))}
    return {"bundle": str(path), "frame_size": [360, 640], "rounds": a.rounds,
            "latency_profiles": {"fp32": fp32.cost.to_dict(), "int8": int8.cost.to_dict()}, "results": rows,
            "int8_vs_fp32_checks": {"frames": a.check_frames, "budgets": "MACs (same tokens counts)", "checks": checks},
            "op_profile_ms_budget1": profile}


def vit_s_bundle(a: argparse.Namespace) -> Path:
    """The ViT-S-shaped bundle with INT8 graphs: exported once (before any pipeline takes the shared thread pool,
    which ONNX Runtime's calibration sessions cannot run beside)."""
    import torch

    from paumer_edge.config import preset
    from paumer_edge.export.exporter import ExportOptions, export_bundle
    from paumer_edge.export.quantize import QuantOptions
    from paumer_edge.model import PausingSegmenter

    path = Path(a.vit_s_dir) / "vit-s-512x1024.paumer"
    if not (path / "manifest.json").exists():
        torch.manual_seed(0)
        t0 = time.perf_counter()
        model = PausingSegmenter(preset("vit-s").replace(image_size=(512, 1024))).eval()
        export_bundle(model, path, ExportOptions(int8=QuantOptions(calib_images=a.vit_s_calib, budgets=(1.0, 0.5))))
        print(f"exported and quantized vit-s in {time.perf_counter() - t0:.0f} s")
    return path


def vit_s_section(a: argparse.Namespace, path: Path) -> dict[str, Any]:
    fp32 = Pipeline(path, shared_threads=True, cost="macs")
    int8 = Pipeline(path, shared_threads=True, cost="macs", precision="int8")
    frames = [street_scene(derive_seed(78, i), (512, 1024))[0] for i in range(2)]
    rows = paired(fp32, int8, frames, [1.0, 0.5], a.vit_s_rounds, 1)
    bundle = load_bundle(path)
    m = bundle.model
    image = resize_normalise(frames[0], m.input_size, m.mean, m.std)[None]
    profile = {p: op_profile(b, image, 1.0, 2) for p, b in (("fp32", bundle), ("int8", bundle.at_precision("int8")))}
    return {"model": "Segmenter ViT-S shape (width 384, 12 blocks, 6 heads, patch 16, mask transformer), random "
                     "weights", "input_size": [512, 1024], "tokens": m.num_patches, "rounds": a.vit_s_rounds,
            "calibration_frames": a.vit_s_calib, "results": rows, "op_profile_ms_budget1": profile}


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sections = [s for s in ("sample", "vit_s") if s in result]
    fig, axes = plt.subplots(1, len(sections), figsize=(5.6 * len(sections), 4.2), squeeze=False)
    for ax, name in zip(axes[0], sections):
        rows = [r for r in result[name]["results"] if r.get("budget") is not None]
        for precision, style in (("fp32", "o-"), ("int8", "s-")):
            pts = sorted((r["budget"], r["speedup_paired"]) for r in rows if r["precision"] == precision)
            ax.plot([p[0] for p in pts], [p[1] for p in pts], style, label=precision)
            for x, y in pts:
                ax.annotate(f"{y:.2f}x", (x, y), textcoords="offset points", xytext=(3, 4), fontsize=7)
        ax.set_xlabel("budget" + (" (each precision's measured latency)" if name == "sample" else " (MACs)"))
        ax.set_ylabel("speed-up over fp32 budget 1 (paired)")
        ax.set_title("sample model, 512 tokens" if name == "sample" else "ViT-S shape, 512x1024, 2048 tokens",
                     fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure_atomic(fig, path)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", help="bundle or checkpoint (default: the sample model, exported once with INT8)")
    ap.add_argument("--budgets", type=parse_floats, default=[1.0, 0.75, 0.5, 0.25])
    ap.add_argument("--rounds", type=int, default=100)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--check-frames", type=int, default=64, help="held-out frames for the int8-vs-fp32 checks")
    ap.add_argument("--profile-runs", type=int, default=20)
    ap.add_argument("--vit-s", action="store_true", help="also the ViT-S shape at 512x1024 (slow: export included)")
    ap.add_argument("--vit-s-only", action="store_true", help="only the ViT-S shape")
    ap.add_argument("--vit-s-rounds", type=int, default=10)
    ap.add_argument("--vit-s-calib", type=int, default=4, help="calibration frames of the random-weight ViT-S")
    ap.add_argument("--vit-s-dir", default="runs/int8", help="where the ViT-S bundle is exported (and reused)")
    ap.add_argument("--out", default="benchmarks/results")
    a = ap.parse_args()
    prov = provenance()
    result: dict[str, Any] = {"what": "INT8 (Q/DQ) against fp32 graphs, ONNX Runtime on this CPU"}
    vit_s = vit_s_bundle(a) if a.vit_s or a.vit_s_only else None
    if not a.vit_s_only:
        result["sample"] = sample_section(a)
    if vit_s is not None:
        result["vit_s"] = vit_s_section(a, vit_s)
    result["provenance"] = {**prov.finish(), "cpu": cpu()}
    out = Path(a.out)
    name = "int8_speed_vit_s" if a.vit_s_only else "int8_speed"
    write_json_atomic(out / f"{name}.json", result)
    plot(result, out / f"{name}.png")
    for section in ("sample", "vit_s"):
        for r in result.get(section, {}).get("results", []):
            print(f"{section:<7}{r['name']:<18}{r['ms_p50']:>9.1f} ms  {r['speedup_paired']:.2f}x  "
                  f"{'/'.join(str(c) for c in r.get('counts', []))}")
    print(f"wrote {out / (name + '.json')} and {out / (name + '.png')}")


if __name__ == "__main__":
    main()
