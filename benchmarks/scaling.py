"""How pausing's benefit grows with the work: the runtime's speed at budget 0.5 and budget 1 against the cost
model's ideal and against `full.onnx`, for the sample (512 tokens) and Segmenter's vit-t and vit-s at 512x1024
(2048 tokens), random weights (speed does not depend on them), batch 1, settings interleaved frame by frame.

    python benchmarks/scaling.py [--shapes sample,vit-t,vit-s] [--rounds 30,8,5] [--out benchmarks/results]

Budgets here are fractions of the MACs (`cost="macs"`), so the tokens each stage keeps are the same on every
machine and the ideal is the MAC model's: (encoder + decoder MACs at budget 1) / (at the budget). What the
runtime turns into time on this CPU is the measured, paired speed-up. Exports are cached per shape.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

from paumer_edge.checkpoint import load_model
from paumer_edge.config import preset
from paumer_edge.core.atomic import save_figure_atomic, write_json_atomic
from paumer_edge.core.cache import cache_root
from paumer_edge.core.provenance import Provenance
from paumer_edge.export import GRAPHS_REVISION
from paumer_edge.export.exporter import ExportOptions, export_bundle
from paumer_edge.model import PausingSegmenter
from paumer_edge.runtime import Pipeline
from paumer_edge.runtime.bench import bench, full_graph_reference
from paumer_edge.runtime.bundle import BundleError, load_bundle

SHAPES = {"sample": None, "vit-t": (512, 1024), "vit-s": (512, 1024)}


def shape_model(name: str) -> PausingSegmenter:
    """The sample's own weights, or a preset at 512x1024 with random weights (seed 0)."""
    if name == "sample":
        return load_model()
    torch.manual_seed(0)
    return PausingSegmenter(preset(name).replace(image_size=SHAPES[name])).eval()


def shape_bundle(name: str) -> Path:
    out = cache_root() / "scaling" / f"{name}-r{GRAPHS_REVISION}.paumer"
    try:
        load_bundle(out)
        return out
    except BundleError:
        pass
    print(f"exporting {name} once to {out} ...", flush=True)
    return export_bundle(shape_model(name), out, ExportOptions(), source=f"{name} (random weights)")


def measure(name: str, rounds: int) -> dict:
    bundle = shape_bundle(name)
    pipe = Pipeline(bundle, cost="macs", shared_threads=True)
    m = pipe.info
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (*m.input_size, 3), dtype=np.uint8) for _ in range(2)]
    t0 = time.perf_counter()
    rows = bench(pipe, frames, [1.0, 0.5], rounds=rounds, warmup=1,
                 references={"full.onnx": full_graph_reference(pipe)})
    by = {r["name"]: r for r in rows}
    half, one, full = by["budget 0.5"], by["budget 1"], by["full.onnx"]
    return {"shape": name, "input_size": list(m.input_size), "tokens": m.num_patches, "embed_dim": m.embed_dim,
            "rounds": rounds, "seconds": round(time.perf_counter() - t0, 1), "counts_at_0.5": half["counts"],
            "ms_p50": {"budget 1": one["ms_p50"], "budget 0.5": half["ms_p50"], "full.onnx": full["ms_p50"]},
            "speedup_0.5_paired": half["speedup_paired"], "ideal_0.5": half["ideal_speedup"],
            "of_ideal": half["speedup_paired"] / half["ideal_speedup"],
            # paired: budget 1's time over full.onnx's in the same round (> 1: the staged graphs are slower)
            "budget1_vs_full": 1.0 / full["speedup_paired"], "encoder_share": pipe.cost.encoder_share}


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    x = np.arange(len(rows))
    ax.bar(x - 0.2, [r["ideal_0.5"] for r in rows], 0.4, label="ideal (MAC model)", color="lightgrey")
    ax.bar(x + 0.2, [r["speedup_0.5_paired"] for r in rows], 0.4, label="measured (paired)", color="tab:blue")
    ax.set_xticks(x, [f"{r['shape']}\n{r['tokens']} tokens" for r in rows])
    ax.set_ylabel("speed-up at budget 0.5")
    ax.axhline(1.0, color="grey", lw=0.8)
    ax.legend(fontsize=8)
    ax.set_title("pausing at budget 0.5 (MACs), ONNX Runtime CPU, batch 1", fontsize=10)
    fig.tight_layout()
    save_figure_atomic(fig, path)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shapes", default="sample,vit-t,vit-s")
    ap.add_argument("--rounds", default="30,8,5", help="timing rounds per shape (each runs budget 1, 0.5, full.onnx)")
    ap.add_argument("--out", default="benchmarks/results")
    ap.add_argument("--export-only", action="store_true", help="only export (and cache) the shapes' bundles")
    a = ap.parse_args()
    shapes = [s.strip() for s in a.shapes.split(",")]
    rounds = [int(r) for r in a.rounds.split(",")]
    if any(s not in SHAPES for s in shapes) or len(rounds) != len(shapes):
        raise SystemExit(f"--shapes from {', '.join(SHAPES)}, with one --rounds value each")
    if a.export_only:
        for name in shapes:
            shape_bundle(name)
        return
    rows = []
    for name, n in zip(shapes, rounds):
        rows.append(measure(name, n))
        r = rows[-1]
        print(f"{name:7s} {r['tokens']:5d} tokens: budget 0.5 {r['speedup_0.5_paired']:.2f}x "
              f"(ideal {r['ideal_0.5']:.2f}x, {100 * r['of_ideal']:.0f}%), budget 1 / full.onnx "
              f"{r['budget1_vs_full']:.3f}", flush=True)
    out = Path(a.out)
    record = Provenance.start(argv=[sys.executable, *sys.argv]).finish()
    write_json_atomic(out / "scaling.json", {"provenance": record, "rows": rows})
    plot(rows, out / "scaling.png")
    print(f"wrote {out / 'scaling.json'} and {out / 'scaling.png'}")


if __name__ == "__main__":
    main()
