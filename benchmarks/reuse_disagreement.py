"""Where temporal reuse's labels differ from per-frame processing's on a still camera, and why: JSON.

    python benchmarks/reuse_disagreement.py                  # the sample model, 240 frames of the still camera
    python benchmarks/reuse_disagreement.py --frames 90 --json /tmp/d.json

Every frame runs through per-frame processing and temporal reuse at budget 1 and 0.5, reuse with the settings this
analysis was made for: a refresh every 30 frames and no unsure rule (`ReuseOptions.unsure_every`, which it led to;
`--defaults` analyses the current defaults instead). On reuse frames
each patch falls in one class: recomputed this frame, reused next to a recomputed one (its neighbours' context
changed), or reused farther away; reused patches are split further by how unsure they were when last computed
(normalised entropy at the last pausing point they reached, the rule `ReuseOptions.uncertain` reads). Per class:
its share of the frame, the share of its pixels whose label differs from per-frame processing's, and its share of
all differing pixels. Beside it, per-frame processing's own instability on the same pixels: the share whose
per-frame label changed since the previous frame (flicker), and since the frame in which reuse last computed the
patch. A reused patch shows what it computed then, so where the latter is about its disagreement, the difference is
per-frame processing's labels moving under changes below the change threshold (noise, the light's drift), which
only recomputing the patch would follow.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

from paumer_edge.core.temporal import UNSURE, unsure_levels  # the unsure rule's level and measure

sys.path.insert(0, str(Path(__file__).resolve().parent))
from provenance import provenance  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
ANALYSED = {"refresh_every": 30, "unsure_every": 0, "agreement": None}  # the earlier defaults, before the unsure rule


def classes(reused: np.ndarray, unsure: np.ndarray) -> dict[str, np.ndarray]:
    """Patch classes on a reuse frame, each a [rows, cols] bool map."""
    rec = ~reused
    near = np.zeros_like(rec)
    rows, cols = rec.shape
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            shifted = np.zeros_like(rec)
            shifted[max(dy, 0): rows + min(dy, 0), max(dx, 0): cols + min(dx, 0)] = \
                rec[max(-dy, 0): rows + min(-dy, 0), max(-dx, 0): cols + min(-dx, 0)]
            near |= shifted
    near &= reused
    far = reused & ~near
    return {"recomputed": rec, f"neighbour, unsure > {UNSURE}": near & (unsure > UNSURE),
            f"neighbour, unsure <= {UNSURE}": near & (unsure <= UNSURE),
            f"far, unsure > {UNSURE}": far & (unsure > UNSURE), f"far, unsure <= {UNSURE}": far & (unsure <= UNSURE)}


def unsure_of(pipe: Any) -> np.ndarray | None:
    """Each patch's normalised entropy at the last pausing point it reached (`unsure_levels`), from the stream's state
    before the frame runs; None before the first refresh."""
    state = pipe.tiler.streams.get(0)
    return None if state.entropy is None or state.stage is None else unsure_levels(state.entropy, state.stage)


def measure(video: Path, bundle: Path, budget: float, frames: int, threads: int,
            options: dict[str, Any]) -> dict[str, Any]:
    from paumer_edge.core.temporal import ReuseOptions
    from paumer_edge.runtime import Pipeline
    from paumer_edge.runtime.preprocess import grid_to_frame
    from paumer_edge.runtime.sources import open_source

    per = Pipeline(bundle, budget=budget, threads=threads, shared_threads=True, cost="macs")
    reuse = Pipeline(bundle, budget=budget, threads=threads, shared_threads=True, cost="macs",
                     reuse=ReuseOptions(**options))
    grid = per.info.grid
    sums: dict[str, np.ndarray] = {}  # class -> pixels, differing, flickering, changed since computed, patches
    pixels_all, differ_all, used = 0, 0, 0
    history: list[np.ndarray] = []  # per-frame labels of the last frames, newest last
    computed = np.zeros(grid, np.int64)  # the frame each patch was last computed in (by the reuse pipeline)
    for i, frame in enumerate(open_source(str(video))):
        if i >= frames:
            break
        unsure = unsure_of(reuse)
        a, b = per(frame.image), reuse(frame.image)
        history = [*history[-60:], a.labels]
        reused = b.reused if b.stats.frame_kind == "reuse" else None
        computed = np.where(reused, computed, i) if reused is not None else np.full(grid, i, np.int64)
        if reused is None or unsure is None or len(history) < 2:
            continue
        used += 1
        differ = a.labels != b.labels
        flicker = a.labels != history[-2]
        # per-frame processing's own labels from the frame each patch was last computed in (ages up to 60 frames)
        age = grid_to_frame(np.minimum(i - computed, len(history) - 1), a.placement)
        then = a.labels.copy()
        for k in np.unique(age):
            at = age == k
            then[at] = history[-1 - int(k)][at]
        moved = a.labels != then
        pixels_all += differ.size
        differ_all += int(differ.sum())
        for name, patches in classes(reused, unsure.reshape(grid)).items():
            pixels = grid_to_frame(patches, a.placement).astype(bool)
            counts = np.array([pixels.sum(), differ[pixels].sum(), flicker[pixels].sum(), moved[pixels].sum(),
                               patches.sum()], np.float64)
            sums[name] = sums.get(name, np.zeros(5)) + counts
    out: dict[str, Any] = {"reuse_frames": used, "disagreement": round(differ_all / max(1, pixels_all), 5),
                           "classes": {}}
    for name, c in sums.items():
        px = max(1.0, float(c[0]))
        out["classes"][name] = {
            "patches_per_frame": round(float(c[4]) / max(1, used), 1),
            "area": round(float(c[0]) / max(1, pixels_all), 4),
            "disagreement": round(float(c[1]) / px, 4),
            "share_of_disagreement": round(float(c[1]) / max(1, differ_all), 3),
            "per_frame_flicker": round(float(c[2]) / px, 4),
            "per_frame_change_since_computed": round(float(c[3]) / px, 4)}
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--bundle", help="bundle directory (default: the sample model's cached export)")
    p.add_argument("--static", default=str(Path("runs") / "temporal" / "static.mp4"),
                   help="still-camera video (rendered by benchmarks/temporal_reuse.py or `paumer-edge synth video "
                        "--static --labels`)")
    p.add_argument("--frames", type=int, default=240)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--defaults", action="store_true", help="analyse reuse with the current defaults")
    p.add_argument("--json", default=str(RESULTS / "reuse_disagreement.json"))
    a = p.parse_args(argv)
    from paumer_edge.core.atomic import write_json_atomic
    from paumer_edge.verbs.bundles import bundle_for

    if not Path(a.static).exists():
        raise SystemExit(f"{a.static} does not exist: render it with `paumer-edge synth video {a.static} --static "
                         "--seconds 20 --labels`")
    prov = provenance(argv)
    bundle = Path(a.bundle) if a.bundle else bundle_for(None, quiet=True)
    result: dict[str, Any] = {"what": __doc__.split("\n")[0], "bundle": str(bundle), "video": a.static,
                              "frames": a.frames, "unsure_above": UNSURE,
                              "reuse_options": {} if a.defaults else ANALYSED}
    for budget in (1.0, 0.5):
        result[f"budget {budget:g}"] = r = measure(Path(a.static), bundle, budget, a.frames, a.threads,
                                                     result["reuse_options"])
        print(f"budget {budget:g}: reuse differs from per-frame on {100 * r['disagreement']:.2f}% of the pixels")
        for name, c in r["classes"].items():
            print(f"  {name:26s} {c['patches_per_frame']:6.1f} patches  differ {100 * c['disagreement']:5.2f}%  "
                  f"({100 * c['share_of_disagreement']:4.1f}% of all)  per-frame: flicker "
                  f"{100 * c['per_frame_flicker']:5.2f}%, changed since computed "
                  f"{100 * c['per_frame_change_since_computed']:5.2f}%")
    result["provenance"] = prov.finish()
    write_json_atomic(a.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
