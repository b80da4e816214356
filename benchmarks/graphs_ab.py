"""Two exports of one model, side by side on video: per-frame and temporal-reuse speed and labels, paired.

When the exported graphs change (`GRAPHS_REVISION`) and the runtime stays, this says what the change bought:
this checkout's runtime runs both bundles, with budgets counted in multiply-accumulates (both run the very same
token counts), every setting (per-frame and reuse, budgets 1 and 0.5) for both bundles, on the still-camera clip,
in blocks of 30 frames whose order rotates from block to block. Speed: each setting's time on the new bundle
against the old one's over the same frames (ratio of totals); each bundle's reuse against its own per-frame
budget 1. Labels: the share of pixels the two bundles label alike, per setting.

    git worktree add /tmp/old 32a5f62        # the revision whose exporter makes the old graphs, in its own venv:
    python -m venv /tmp/old/.venv && /tmp/old/.venv/bin/pip install torch==2.13.0 && \
        /tmp/old/.venv/bin/pip install -e "/tmp/old[cpu,train]" && \
        /tmp/old/.venv/bin/paumer-edge export -o /tmp/r5.paumer
    python benchmarks/graphs_ab.py --old /tmp/r5.paumer            # new: the sample model's cached export
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent))
from provenance import provenance  # noqa: E402
from temporal_reuse import VIDEOS, ensure_video  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
BLOCK = 30
SETTINGS = (("per-frame b1", 1.0, False), ("per-frame b0.5", 0.5, False), ("reuse b1", 1.0, True),
            ("reuse b0.5", 0.5, True))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--old", required=True, help="the old export (a bundle directory)")
    p.add_argument("--new", help="the new export (default: the sample model's cached export by this checkout)")
    p.add_argument("--video", default=str(VIDEOS / "static.mp4"), help="still-camera video (rendered if missing)")
    p.add_argument("--frames", type=int, default=600)
    p.add_argument("--skip", type=int, default=BLOCK, help="frames left out of the figures at the start (warm-up)")
    p.add_argument("--json", default=str(RESULTS / "graphs_ab.json"))
    a = p.parse_args(argv)
    from paumer_edge.core.atomic import write_json_atomic
    from paumer_edge.core.temporal import ReuseOptions
    from paumer_edge.runtime import Pipeline, load_bundle
    from paumer_edge.runtime.sources import open_source
    from paumer_edge.verbs.bundles import bundle_for

    prov = provenance(argv)
    bundles = {"old": Path(a.old), "new": Path(a.new) if a.new else bundle_for(None, quiet=True)}
    pipes: dict[tuple[str, str], Any] = {}
    for which, path in bundles.items():
        for name, budget, reuse in SETTINGS:
            pipes[which, name] = Pipeline(path, budget=budget, cost="macs", shared_threads=True,
                                          reuse=ReuseOptions() if reuse else False)
    for pipe in pipes.values():
        pipe.warmup()
    video = ensure_video(Path(a.video), True, 20.0)
    frames = [f.image for _, f in zip(range(a.frames), iter(open_source(str(video))))]
    if len(frames) <= a.skip:
        raise SystemExit(f"{video} has {len(frames)} frames: fewer than --skip {a.skip} plus one")
    order = list(pipes)
    ms: dict[tuple[str, str], list[float]] = {k: [0.0] * len(frames) for k in order}
    labels: dict[tuple[str, str], list[np.ndarray]] = {k: [] for k in order}
    for i in tqdm(range(0, len(frames), BLOCK), desc="blocks", unit="block"):
        turn = (i // BLOCK) % len(order)
        for key in order[turn:] + order[:turn]:
            for j, frame in enumerate(frames[i:i + BLOCK], start=i):
                t = time.perf_counter()
                out = pipes[key](frame)
                ms[key][j] = (time.perf_counter() - t) * 1000
                labels[key].append(out.labels)  # blocks run in frame order per setting

    def total(key: tuple[str, str]) -> float:
        return float(np.sum(ms[key][a.skip:]))

    result: dict[str, Any] = {"what": __doc__.split("\n")[0], "video": str(video), "frames": len(frames),
                              "skipped": a.skip, "block_frames": BLOCK, "cost": "macs",
                              "bundles": {w: {"path": str(b), "graphs_revision":
                                              load_bundle(b).manifest.exporter.graphs_revision}
                                          for w, b in bundles.items()},
                              "settings": {}}
    for name, _, _ in SETTINGS:
        old, new = ("old", name), ("new", name)
        same = [float(np.mean(x == y)) for x, y in zip(labels[old][a.skip:], labels[new][a.skip:])]
        result["settings"][name] = {
            "ms_mean_old": round(total(old) / (len(frames) - a.skip), 2),
            "ms_mean_new": round(total(new) / (len(frames) - a.skip), 2),
            "new_speedup_over_old": round(total(old) / total(new), 3),
            "labels_alike_mean": round(float(np.mean(same)), 5), "labels_alike_min": round(float(np.min(same)), 5),
            "over_per_frame_b1_old": round(total(("old", "per-frame b1")) / total(old), 3),
            "over_per_frame_b1_new": round(total(("new", "per-frame b1")) / total(new), 3)}
    result["provenance"] = prov.finish()
    write_json_atomic(a.json, result)
    for name, r in result["settings"].items():
        print(f"{name:15s} old {r['ms_mean_old']:7.2f} ms  new {r['ms_mean_new']:7.2f} ms  "
              f"new {r['new_speedup_over_old']:.3f}x old  labels alike {100 * r['labels_alike_mean']:.2f}%  "
              f"over per-frame b1: old "
              f"{r['over_per_frame_b1_old']:.2f}x new {r['over_per_frame_b1_new']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
