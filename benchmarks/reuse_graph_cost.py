"""What a temporal-reuse stage graph costs against the plain stage graph, by number of active tokens: JSON.

    python benchmarks/reuse_graph_cost.py               # the sample model's cached export, 60 rounds
    python benchmarks/reuse_graph_cost.py --rounds 20 --json /tmp/r.json

Each stage's two graphs (`stage<k>` and `stage<k>_reuse`) run on the same token buffer with n active patches, n
from 1 to all, every (graph, n) once per round in a shuffled order (so the machine's drift hits all alike); the
reuse graph's context is every other patch (budget 1 on a still camera: the widest context there is). The median
per cell, and per graph a straight-line fit ms = fixed + per_token x n over the small n a reuse frame runs
(n <= 128). The reuse graph's extra cost is the split between those two: a fixed part per call (gathering the
context's cached keys and values, and attending to them) and a per-token part (each active token's attention over
those cached keys, not only the active ones). What would make reuse frames cheaper follows from which dominates
(README, temporal reuse).
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from provenance import provenance  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
COUNTS = (1, 8, 32, 70, 128, 256, 512)
FIT_MAX = 128  # the fit covers the counts a reuse frame runs


def feeds(runner: Any, k: int, n: int, reuse: bool) -> dict[str, Any]:
    """Inputs of stage k (plain or reuse) with the first n patches active (stage 0 plain: the whole image); the reuse
    graph's context is every other patch (budget 1 on a still camera: the widest context)."""
    from paumer_edge.core.names import ACTIVE, CACHE, CONTEXT, IMAGE, TOKENS

    m = runner.bundle.model
    rng = np.random.default_rng(k * 1000 + n)
    image = rng.standard_normal((1, 3, *m.input_size), dtype=np.float32)
    tokens = rng.standard_normal((1, m.tokens, m.embed_dim), dtype=np.float32)
    active = np.arange(n, dtype=np.int64)[None]
    if not reuse:
        return {IMAGE: image} if k == 0 else {TOKENS: tokens, ACTIVE: active}
    out: dict[str, Any] = {TOKENS: tokens, ACTIVE: active, CONTEXT: np.arange(n, m.num_patches, dtype=np.int64)[None],
                           CACHE: rng.standard_normal((1, *runner.cache_shapes[k]), dtype=np.float32)}
    if k == 0:
        out[IMAGE] = image
    return out


def measure(bundle: Path, rounds: int, threads: int) -> dict[str, Any]:
    from paumer_edge.runtime import Pipeline
    from paumer_edge.runtime.output_check import checked

    pipe = Pipeline(bundle, threads=threads, shared_threads=True, cost="macs", reuse=True)
    runner = pipe.runner
    # the reuse graphs as `forward_reuse` opens them (on first use), outputs checked as in a run
    runner.reuse_stages = [checked(runner.backend.open(runner.bundle, n), runner.bundle, n)
                           for n in runner.bundle.model.reuse_stage_names]
    stages = len(runner.stages)
    cells = [(kind, k, n) for kind in ("plain", "reuse") for k in range(stages) for n in COUNTS
             if not (kind == "plain" and k == 0 and n != runner.bundle.model.num_patches)]
    inputs = {c: feeds(runner, c[1], c[2], c[0] == "reuse") for c in cells}
    sessions = {c: (runner.reuse_stages if c[0] == "reuse" else runner.stages)[c[1]] for c in cells}
    times: dict[tuple[str, int, int], list[float]] = {c: [] for c in cells}
    order = list(cells)
    rnd = random.Random(0)
    for r in range(rounds + 3):
        rnd.shuffle(order)
        for c in order:
            t0 = time.perf_counter()
            sessions[c].run(inputs[c])
            if r >= 3:  # three rounds of warm-up
                times[c].append((time.perf_counter() - t0) * 1000)
    rows: list[dict[str, Any]] = [
        {"graph": kind, "stage": k, "n": n, "ms_p50": round(float(np.median(times[(kind, k, n)])), 4)}
        for kind, k, n in cells]
    fits: list[dict[str, Any]] = []
    for kind in ("plain", "reuse"):
        for k in range(stages):
            pts = [(r["n"], r["ms_p50"]) for r in rows if r["graph"] == kind and r["stage"] == k and r["n"] <= FIT_MAX]
            if len(pts) < 2:
                continue
            slope, fixed = np.polyfit([p[0] for p in pts], [p[1] for p in pts], 1)
            fits.append({"graph": kind, "stage": k, "fixed_ms": round(float(fixed), 4),
                         "per_token_ms": round(float(slope), 5)})
    by = {(r["graph"], r["stage"], r["n"]): r["ms_p50"] for r in rows}
    n70 = {f"stage{k}": round(by[("reuse", k, 70)] / by[("plain", k, 70)], 3) for k in range(1, stages)}
    reuse_fits = [f for f in fits if f["graph"] == "reuse"]
    plain_fits = [f for f in fits if f["graph"] == "plain"]
    return {"rows": rows, "fits": fits, "reuse_over_plain_at_70": n70,
            "reuse_fixed_ms_per_frame": round(sum(f["fixed_ms"] for f in reuse_fits), 3),
            "reuse_per_token_ms_mean": round(float(np.mean([f["per_token_ms"] for f in reuse_fits])), 5),
            "plain_per_token_ms_mean": round(float(np.mean([f["per_token_ms"] for f in plain_fits])), 5),
            "rounds": rounds, "threads": threads, "counts": list(COUNTS)}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--bundle", help="bundle directory (default: the sample model's cached export)")
    p.add_argument("--rounds", type=int, default=60)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", default=str(RESULTS / "reuse_graph_cost.json"))
    a = p.parse_args(argv)
    from paumer_edge.core.atomic import write_json_atomic
    from paumer_edge.verbs.bundles import bundle_for

    started = provenance(argv)
    bundle = Path(a.bundle) if a.bundle else bundle_for(None, quiet=True)
    result = {"what": __doc__.split("\n")[0], "bundle": str(bundle), **measure(bundle, a.rounds, a.threads),
              "provenance": started.finish()}
    write_json_atomic(a.json, result)
    for f in result["fits"]:
        print(f"{f['graph']:>5} stage{f['stage']}: {f['fixed_ms']:.3f} ms + {f['per_token_ms'] * 1000:.1f} us/token")
    print(f"reuse / plain at 70 active tokens: {result['reuse_over_plain_at_70']}; reuse fixed cost per frame "
          f"{result['reuse_fixed_ms_per_frame']:.2f} ms; wrote {a.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
