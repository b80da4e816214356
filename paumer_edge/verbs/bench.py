"""`paumer-edge bench`: latency and FPS per budget, beside `full.onnx` and PyTorch, as a table, JSON and plot."""

from __future__ import annotations

import platform
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import click
import numpy as np

from .. import __version__
from ..core.atomic import save_figure_atomic, write_json_atomic
from ..core.cost import CostModel
from ..core.knobs import MAX_SYNTH_PIXELS, check_budget, check_count, check_size, check_threads
from ..core.paths import Input, Output, guard_paths
from ..data.streets import derive_seed, street_scene
from ..runtime.bench import bench, full_graph_reference
from ..runtime.pipeline import Pipeline
from ..runtime.preprocess import labels_to_frame, preprocess
from .bundles import bundle_for
from .params import FLOATS, SIZE, backend_option, cost_option, memory_limit_option, quiet, threads_option

MAX_ROUNDS = 1_000_000


def torch_references(pipe: Pipeline, budgets: list[float]) -> dict[str, Callable[[np.ndarray], object]]:
    """The PyTorch model the bundle came from, at the same budgets, with the same pre/post-processing."""
    import torch

    from ..checkpoint import load_model
    from ..export.graphs import at_image_size

    source = pipe.bundle.manifest.source
    if not source or not Path(source).is_file():
        return {}
    model = at_image_size(load_model(source), pipe.info.input_size)
    m = pipe.info
    refs: dict[str, Callable[[np.ndarray], object]] = {}
    for b in budgets:
        def run(frame: np.ndarray, b: float = b) -> np.ndarray:
            x, placement = preprocess(frame, m.input_size, m.mean, m.std, pipe.letterbox, pipe.bgr)
            with torch.inference_mode():
                out = model(torch.from_numpy(x[None]), budget=b, cost=pipe.cost)
                labels = out.logits.argmax(1)[0].to(torch.uint8).numpy()
            return labels_to_frame(labels, placement)

        refs[f"pytorch {b:g}"] = run
    return refs


def profile_line(cost: CostModel) -> str:
    """The measured latency profile in one line: stage 0, then each later stage at all and half its tokens."""
    n = cost.num_patches
    parts = [f"stage0 {cost.encoder_cost([n], False):.1f}"]
    for k, (a, b, c) in enumerate((cost.stage_ms or ())[1:], start=1):
        parts.append(f"stage{k} {a + b * n + c * n * n:.1f} ({a + b * n / 2 + c * n * n / 4:.1f} at n/2)")
    return f"latency profile (ms at {n} tokens): " + ", ".join(parts) + f", decoder {cost.decoder_ms:.1f}"


def table(rows: list[dict]) -> str:
    lines = [f"{'setting':<16}{'p50 ms':>8}{'p90 ms':>8}{'p99 ms':>8}{'FPS':>8}{'FPS ratio':>10}{'paired':>8}"
             f"{'ideal':>8}  {'stage ms (p50, + decoder)':<32}tokens"]
    for r in rows:
        ideal = f"{r['ideal_speedup']:.2f}x" if "ideal_speedup" in r else "-"
        speed = f"{r['speedup_vs_budget1']:.2f}x" if "speedup_vs_budget1" in r else "-"
        paired = f"{r['speedup_paired']:.2f}x" if "speedup_paired" in r else "-"
        stages = " ".join(f"{v:.1f}" for v in r.get("stage_ms_p50", []))
        tokens = "/".join(str(c) for c in r.get("counts", []))
        lines.append(f"{r['name']:<16}{r['ms_p50']:>8.2f}{r['ms_p90']:>8.2f}{r['ms_p99']:>8.2f}{r['fps']:>8.1f}"
                     f"{speed:>10}{paired:>8}{ideal:>8}  {stages:<32}{tokens}")
    return "\n".join(lines)


def plot(rows: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    staged = [r for r in rows if r["budget"] is not None]
    torch_rows = [r for r in rows if r["name"].startswith("pytorch")]
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    ax.plot([r["budget"] for r in staged], [r["fps"] for r in staged], "o-", label="paumer-edge runtime")
    if torch_rows:
        ax.plot([float(r["name"].split()[1]) for r in torch_rows], [r["fps"] for r in torch_rows], "s--",
                label="PyTorch model")
    full = next((r for r in rows if r["name"] == "full.onnx"), None)
    if full:
        ax.axhline(full["fps"], color="grey", ls=":", label="full.onnx (unsplit)")
    ax.set_xlabel("budget")
    ax.set_ylabel("frames per second")
    ax.grid(alpha=0.3)
    ax2 = ax.twinx()
    ax2.plot([r["budget"] for r in staged], [100 * r["modelled_compute"] for r in staged], "^:", color="tab:green",
             label="modelled encoder compute")
    ax2.set_ylabel("modelled encoder compute (%)")
    ax2.set_ylim(0, 105)
    handles = ax.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
    ax.legend(handles=handles, loc="upper right", fontsize=8)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    save_figure_atomic(fig, path)
    plt.close(fig)


@click.command("bench", help="Latency p50/p90/p99 and FPS of BUNDLE (a bundle directory or a checkpoint; default: "
               "the bundled sample) per budget, end to end on street frames, beside the unsplit full.onnx and the "
               "PyTorch model; every round runs each setting once, so speed-ups are paired. A table, JSON and a plot.")
@click.argument("bundle", required=False, envvar="PAUMER_EDGE_MODEL")
@click.option("--budgets", type=FLOATS, default="1,0.75,0.5,0.25", help="Budgets to time.")
@backend_option
@click.option("--rounds", type=int, default=50, help="Timed rounds (each runs every setting once).")
@click.option("--warmup", type=int, default=5, help="Untimed rounds first.")
@click.option("--frame-size", type=SIZE, default="360x640", help="HxW of the street frames.")
@threads_option
@click.option("--no-torch", is_flag=True, help="Skip the PyTorch reference.")
@cost_option("measured afresh here and cached for `run`")
@click.option("--json", metavar="FILE", help="Write the results here.")
@click.option("--plot", metavar="FILE", help="Write a PNG of FPS and compute against budget here.")
@memory_limit_option
@quiet
def command(**options: Any) -> int:
    return run(SimpleNamespace(**options))


def run(a: SimpleNamespace) -> int:
    a.rounds = check_count(a.rounds, "--rounds", 1, MAX_ROUNDS)
    a.warmup = check_count(a.warmup, "--warmup", 0, MAX_ROUNDS)
    a.threads = check_threads(a.threads, "--threads")
    a.frame_size = check_size(a.frame_size, "--frame-size", MAX_SYNTH_PIXELS)
    a.budgets = [check_budget(b, "--budgets") for b in a.budgets]
    guard_paths(Input.of("the model", a.bundle), [*Output.of("--json", a.json), *Output.of("--plot", a.plot)])
    bundle = bundle_for(a.bundle, a.quiet)
    pipe = Pipeline(bundle, backend=a.backend, threads=a.threads, shared_threads=True, cost="macs")
    if a.cost == "device":  # a benchmark measures the device afresh (and leaves the profile for `run`)
        if not a.quiet:
            print("measuring this device's latency profile of the bundle ...")
        pipe.calibrate()
    h, w = a.frame_size
    frames = [street_scene(derive_seed(77, i), (h, w))[0] for i in range(4)]
    refs: dict[str, Callable[[np.ndarray], object]] = {"full.onnx": full_graph_reference(pipe)}
    torch_refs: dict[str, Callable[[np.ndarray], object]] = {}
    if not a.no_torch:
        try:
            torch_refs = torch_references(pipe, a.budgets)
        except ImportError:
            pass  # torch-free install: the runtime alone
    if not a.quiet:
        print(f"benchmarking {pipe.describe()} on {w}x{h} frames, {a.rounds} rounds")
        if pipe.cost.measured:
            print(profile_line(pipe.cost))
    rows = bench(pipe, frames, a.budgets, a.rounds, a.warmup, refs, torch_refs, progress=not a.quiet)
    print(table(rows))
    result = {"bundle": str(bundle), "backend": pipe.backend.describe(), "frame_size": [h, w], "rounds": a.rounds,
              "cost_model": pipe.cost.to_dict(),
              "paumer_edge": __version__, "machine": f"{platform.machine()} {platform.processor()}".strip(),
              "results": rows}
    if a.json:
        write_json_atomic(Path(a.json), result)
    if a.plot:
        plot(rows, Path(a.plot), f"{pipe.info.name} on {pipe.backend.name}: FPS and compute vs budget")
    best = max((r for r in rows if r["budget"] is not None), key=lambda r: r["fps"])
    print(f"benchmarked {len(a.budgets)} budgets x {a.rounds} rounds; fastest {best['name']}: {best['fps']:.1f} FPS"
          + (f"; JSON {a.json}" if a.json else "") + (f"; plot {a.plot}" if a.plot else ""))
    return 0
