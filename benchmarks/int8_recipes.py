"""Which parts of the network to keep in float, and which calibration method: measured, not guessed.

    python benchmarks/int8_recipes.py [--bundle B] [--methods minmax,entropy,percentile] [--calib-images 32]

For each calibration method (ONNX Runtime's MinMax, Entropy, Percentile) and each recipe (the graph parts of
`export/qdq_groups.py` kept in float), the bundle's graphs are quantized from one recording of what every stage
sees (`CalibrationData`, at the calibration budgets), and the int8 graphs are checked against the fp32 ones on
held-out street frames with `verify`'s int8 checks (token error per stage, label agreement and kept tokens at
budgets 1 / 0.5 / 0.25), and timed against them at budget 1 (paired rounds in this process). Ranges are
calibrated once per method (the recipe that quantizes everything first) and reused for the other recipes.
Writes benchmarks/results/int8_recipes.json and a plot.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from provenance import cpu, provenance  # noqa: E402

from paumer_edge.core.atomic import save_figure_atomic, write_json_atomic  # noqa: E402
from paumer_edge.core.contract import Variant  # noqa: E402
from paumer_edge.core.pausing import Pauser, PausingPolicy  # noqa: E402
from paumer_edge.export.calibration import CalibrationData, synthetic_frames  # noqa: E402
from paumer_edge.export.quantize import DEFAULT_BUDGETS, METHODS, QuantOptions, quantize_graphs  # noqa: E402
from paumer_edge.export.verify_int8 import check_int8  # noqa: E402
from paumer_edge.runtime.backends import OrtBackend  # noqa: E402
from paumer_edge.runtime.bundle import Bundle, load_bundle  # noqa: E402
from paumer_edge.runtime.preprocess import resize_normalise  # noqa: E402
from paumer_edge.runtime.staged import StagedRunner  # noqa: E402
from paumer_edge.verbs.params import parse_floats  # noqa: E402

# from everything in int8 to only the big matrix products, one kind of part moved to float at a time
MATMUL_CONV = ("softmax", "norm", "elementwise")
HEADS = (*MATMUL_CONV, "pausing_head")
RECIPES: dict[str, tuple[str, ...]] = {
    "all-int8": (),
    "softmax-float": ("softmax",),
    "matmul-conv": MATMUL_CONV,
    "matmul-conv,heads-float": HEADS,
    "attention-values-float": (*MATMUL_CONV, "attention_values"),
    "attention-values,heads-float": (*HEADS, "attention_values"),
    "+patch-embed-float": (*HEADS, "attention_values", "patch_embed"),
    "+decoder-float": (*HEADS, "attention_values", "decoder"),
    "linear-only": (*HEADS, "attention_values", "attention_scores"),
}
HELD_OUT_SEED = 123  # verify's street frames: never the calibration scenes


def held_out(bundle: Bundle, count: int) -> np.ndarray:
    from paumer_edge.data.streets import derive_seed, street_scene

    m = bundle.model
    return np.stack([resize_normalise(street_scene(derive_seed(HELD_OUT_SEED, i), m.input_size)[0], m.input_size,
                                      m.mean, m.std) for i in range(count)])


def speed(fp32: Bundle, q: Bundle, image: np.ndarray, rounds: int) -> dict[str, float]:
    """int8 against fp32 at budgets 1 and 0.5, one frame, rounds interleaved: median of per-round time ratios
    (sessions with their own thread pools: the shared one would stop the next recipe's calibration sessions)."""
    backend = OrtBackend()
    runners = {"fp32": StagedRunner(fp32, backend), "int8": StagedRunner(q, backend)}
    pausers = {b: Pauser(fp32.cost, PausingPolicy(b)) for b in (1.0, 0.5)}
    times: dict[tuple[str, float], list[float]] = {(k, b): [] for k in runners for b in pausers}
    for r in range(rounds + 2):
        for (k, b), t in times.items():
            t0 = time.perf_counter()
            runners[k].forward(image, pausers[b])
            if r >= 2:  # two warm-up rounds
                t.append((time.perf_counter() - t0) * 1000)
    base = np.asarray(times[("fp32", 1.0)])
    return {"fp32_b1_ms": float(np.median(base)), "int8_b1_ms": float(np.median(times[("int8", 1.0)])),
            "int8_b1_speedup": float(np.median(base / np.asarray(times[("int8", 1.0)]))),
            "int8_b05_speedup": float(np.median(base / np.asarray(times[("int8", 0.5)]))),
            "fp32_b05_speedup": float(np.median(base / np.asarray(times[("fp32", 0.5)])))}


def summarise(report: Any) -> dict[str, Any]:
    """The figures of one recipe: worst token error per stage, ranking, label agreement and kept tokens per budget."""
    out: dict[str, Any] = {"ok": report.ok}
    for c in report.checks:
        graph = c.graph.removeprefix("int8 ")
        if c.kind == "rel_err":
            out[f"{graph}_rel_err"] = max(out.get(f"{graph}_rel_err", 0.0), c.value)
        elif c.output == "ranking":
            out[f"{graph}_ranking_min"] = min(out.get(f"{graph}_ranking_min", 1.0), c.value)
        elif graph == "pipeline":
            budget = c.case.split(",")[0].removeprefix("budget ")
            out[f"{'agreement' if c.kind == 'agreement' else 'kept'}_{budget}"] = c.value
            if c.kind == "kept":
                out[f"kept_{budget}_per_stage"] = c.detail
    return out


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.4))
    markers = {"minmax": "o", "entropy": "s", "percentile": "^"}
    for row in rows:
        for ax, key in zip(axes, ("kept_0.5", "agreement_0.5")):
            ax.scatter(row["speed"]["int8_b1_speedup"], 100 * row[key], marker=markers[row["method"]], s=30)
            ax.annotate(row["recipe"], (row["speed"]["int8_b1_speedup"], 100 * row[key]), fontsize=6,
                        textcoords="offset points", xytext=(3, 3))
    for ax, title in zip(axes, ("tokens fp32 keeps that int8 keeps too, budget 0.5 (%)",
                                "label agreement with fp32, budget 0.5 (%)")):
        ax.set_xlabel("int8 speed-up over fp32 at budget 1 (paired)")
        ax.set_title(title, fontsize=9)
        ax.axhline(97, color="grey", ls=":", lw=1)
        ax.grid(alpha=0.3)
    handles = [plt.Line2D([], [], marker=m, ls="", color="k", label=k) for k, m in markers.items()]
    axes[0].legend(handles=handles, fontsize=8, loc="lower left")
    fig.tight_layout()
    save_figure_atomic(fig, path)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", help="bundle (default: the sample model, exported once to the cache)")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--recipes", help=f"recipe names separated by spaces, of: {' '.join(RECIPES)} (default: all)")
    ap.add_argument("--calib-images", type=int, default=QuantOptions.calib_images)
    ap.add_argument("--budgets", type=parse_floats, default=list(DEFAULT_BUDGETS), help="calibration budgets")
    ap.add_argument("--frames", type=int, default=16, help="held-out street frames for the checks")
    ap.add_argument("--rounds", type=int, default=30, help="paired speed rounds per recipe")
    ap.add_argument("--out", default="benchmarks/results")
    a = ap.parse_args()
    prov = provenance()
    from paumer_edge.verbs.bundles import bundle_for

    bundle = load_bundle(bundle_for(a.bundle))
    names = a.recipes.split() if a.recipes else list(RECIPES)
    frames = synthetic_frames(a.calib_images, bundle.model.input_size)
    t0 = time.perf_counter()
    data = CalibrationData(bundle, frames, tuple(a.budgets), progress=True)
    record_s = time.perf_counter() - t0
    images = held_out(bundle, a.frames)
    rows = []
    with tempfile.TemporaryDirectory(prefix="int8-recipes-") as tmp:
        work = Path(tmp) / "bundle"
        shutil.copytree(bundle.path, work, copy_function=os.link)  # variants are written beside the graphs
        for method in a.methods.split(","):
            for i, name in enumerate(names):
                opts = QuantOptions(method=method, keep_float=RECIPES[name], budgets=tuple(a.budgets))
                t1 = time.perf_counter()
                graphs = quantize_graphs(bundle, work, data, opts, folder=f"{method}{i}", cache_dir=Path(tmp),
                                         progress=False)
                quant_s = time.perf_counter() - t1
                variant = Variant("int8", bundle.model.input_size, "int8", graphs, bundle.cost.macs)
                view = Bundle(work, dataclasses.replace(bundle.manifest, variants=(variant,)))
                row = {"method": method, "recipe": name, "keep_float": list(RECIPES[name]),
                       "quantize_s": round(quant_s, 1), **summarise(check_int8(view, images)),
                       "speed": speed(view, view.at_precision("int8"), images[:1], a.rounds)}
                rows.append(row)
                print(f"{method:<10} {name:<26} kept@0.5 {100 * row['kept_0.5']:.2f}%  agree@1 "
                      f"{100 * row['agreement_1']:.2f}%  agree@0.5 {100 * row['agreement_0.5']:.2f}%  "
                      f"speed-up {row['speed']['int8_b1_speedup']:.2f}x", flush=True)
    out = Path(a.out)
    result = {"what": "int8 recipes and calibration methods on one bundle: accuracy against fp32, speed",
              "provenance": {**prov.finish(), "cpu": cpu()}, "bundle": str(bundle.path),
              "calibration": {"frames": a.calib_images, "source": "synthetic street scenes", "budgets": a.budgets,
                              "record_s": round(record_s, 1)},
              "held_out_frames": a.frames, "speed_rounds": a.rounds, "results": rows}
    write_json_atomic(out / "int8_recipes.json", result)
    plot(rows, out / "int8_recipes.png")
    print(f"wrote {out / 'int8_recipes.json'} and {out / 'int8_recipes.png'}")


if __name__ == "__main__":
    main()
