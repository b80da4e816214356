"""PyTorch forward time of a pausing model at a list of budgets (batch 1 by default), JSON + plot.

    python benchmarks/forward_time.py [--model CKPT] [--budgets 1,0.75,0.5,0.25] [--out benchmarks/results]

All budgets are timed in one run, interleaved round by round, so machine noise hits them alike and
the ratios between them are what to read.
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import numpy as np
import torch

from paumer_edge.checkpoint import load_model
from paumer_edge.core.atomic import save_figure_atomic, write_json_atomic
from paumer_edge.verbs.params import parse_floats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="checkpoint (default: the bundled sample)")
    ap.add_argument("--budgets", type=parse_floats, default=[1.0, 0.75, 0.5, 0.25])
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--out", default="benchmarks/results")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    model = load_model(a.model)
    cfg = model.cfg
    x = torch.randn(a.batch, 3, *cfg.image_size, generator=torch.Generator().manual_seed(0))
    settings = [("unpaused", None)] + [(f"budget {b:g}", b) for b in a.budgets]

    def run(b: float | None) -> None:
        if b is None:
            model.forward_unpaused(x)
        else:
            model(x, budget=b)

    times: dict[str, list[float]] = {name: [] for name, _ in settings}
    with torch.inference_mode():
        for _ in range(a.warmup):
            for _, b in settings:
                run(b)
        for _ in range(a.rounds):
            for name, b in settings:
                t0 = time.perf_counter()
                run(b)
                times[name].append((time.perf_counter() - t0) * 1000)
        plans = {b: model(x, budget=b) for b in a.budgets}

    base = float(np.median(times["budget 1"])) if 1.0 in a.budgets else float(np.median(times["unpaused"]))
    rows = []
    for name, b in settings:
        ms = np.array(times[name])
        row = {"setting": name, "budget": b, "ms_p50": float(np.median(ms)), "ms_p90": float(np.percentile(ms, 90)),
               "ms_min": float(ms.min()), "speedup_vs_budget1": base / float(np.median(ms))}
        if b is not None:
            out = plans[b]
            row.update(counts=list(out.counts), modelled_compute=out.cost_fraction,
                       ideal_speedup=1.0 / out.cost_fraction)
        rows.append(row)
    result = {
        "model": str(a.model or "sample"), "config": cfg.name, "image_size": list(cfg.image_size),
        "batch": a.batch, "rounds": a.rounds, "threads": torch.get_num_threads(), "torch": torch.__version__,
        "machine": f"{platform.machine()} {platform.processor()}".strip(), "results": rows,
    }
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "forward_time.json", result)
    print(f"{'setting':<14}{'p50 ms':>9}{'p90 ms':>9}{'speed-up':>10}{'ideal':>8}  tokens per stage")
    for r in rows:
        ideal = f"{r['ideal_speedup']:.2f}x" if "ideal_speedup" in r else "-"
        print(f"{r['setting']:<14}{r['ms_p50']:>9.2f}{r['ms_p90']:>9.2f}{r['speedup_vs_budget1']:>9.2f}x{ideal:>8}  "
              f"{r.get('counts', '')}")
    _plot(rows, out / "forward_time.png", cfg.name)
    print(f"wrote {out / 'forward_time.json'} and {out / 'forward_time.png'}")


def _plot(rows: list[dict], path: Path, name: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = [r for r in rows if r["budget"] is not None]
    b = [r["budget"] for r in pts]
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    ax.plot(b, [r["speedup_vs_budget1"] for r in pts], "o-", label="measured speed-up (PyTorch)")
    ax.plot(b, [r["ideal_speedup"] for r in pts], "s--", label="cost model ideal")
    ax.set_xlabel("budget (fraction of encoder compute)")
    ax.set_ylabel("speed-up over budget 1")
    ax.set_title(f"{name}: forward time vs budget")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    save_figure_atomic(fig, path)
    plt.close(fig)


if __name__ == "__main__":
    main()
