"""Temporal reuse on still cameras of other sizes and content than the benchmark clip: JSON.

    python benchmarks/reuse_other_videos.py                 # four sizes and a degraded copy, 600 frames each
    python benchmarks/reuse_other_videos.py --seconds 3 --json /tmp/o.json
    python benchmarks/reuse_other_videos.py --videos a.mp4 b.gif --origin URL --json out.json   # your own videos

A stand-in for third-party videos (none can be fetched here): fixed-camera streets rendered with another scene seed at
portrait, small and large sizes (`paumer-edge synth video --static --seed 3 --size ...`, into runs/other/), and one of
them degraded (sensor noise, a slow brightness swing of +-10%, and blur from shrinking it threefold and back). Each
clip runs through per-frame processing and temporal reuse at budget 1 and 0.5, frame by frame in turn: reuse with the
defaults (a target agreement of 98%) and without the target. Per clip and setting: the speed-up over per-frame
processing at the same budget (ratio of total times), the label agreement with it, the frames of each kind and the
share of them held to per-frame processing (where reuse could not hold the target); and how much per-frame
processing's own labels change from one frame to the next (the share of pixels), which bounds what reuse can keep.
With --videos, the same measurement on videos you name (checked independently: they stay out of the repository; the
JSON keeps each one's size, frame count and SHA-256, and --origin says where they came from).
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from provenance import provenance  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
CLIPS = Path("runs") / "other"
SIZES = ("720x406", "240x320", "121x161", "1080x1920")
SEED = 3


def render(size: str, seconds: float) -> Path:
    path = CLIPS / f"still_{size}_seed{SEED}_{seconds:g}s.mp4"
    if not path.exists():
        print(f"rendering {path} ...", flush=True)
        subprocess.run([sys.executable, "-m", "paumer_edge.cli", "synth", "video", str(path), "--static",
                        "--size", size, "--seconds", str(seconds), "--seed", str(SEED), "--quiet"], check=True)
    return path


def degrade(src: Path) -> Path:
    """Noise (sigma 6), a brightness swing of +-10% over 250 frames, and the blur of a threefold shrink and back."""
    path = src.with_name(src.stem + "_degraded.mp4")
    if path.exists():
        return path
    cap, rng = cv2.VideoCapture(str(src)), np.random.default_rng(0)
    frames: list[np.ndarray] = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        g = f.astype(np.float32) * (1 + 0.1 * np.sin(len(frames) / 40)) + rng.normal(0, 6, f.shape)
        g8 = np.clip(g, 0, 255).astype(np.uint8)
        frames.append(cv2.resize(cv2.resize(g8, (f.shape[1] // 3, f.shape[0] // 3)), (f.shape[1], f.shape[0])))
    out = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), 30, (frames[0].shape[1], frames[0].shape[0]))
    for f in frames:
        out.write(f)
    out.release()
    return path


def describe(path: Path) -> dict[str, Any]:
    """What identifies a third-party video without committing it: size, frames, rate and SHA-256."""
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise SystemExit(f"cannot open video {path}: give a file OpenCV can read (mp4, avi, mkv, gif)")
    info = {"file": path.name, "width": int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)),
            "height": int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)), "fps": round(cap.get(cv2.CAP_PROP_FPS), 3),
            "sha256": hashlib.sha256(path.read_bytes()).hexdigest(), "bytes": path.stat().st_size}
    cap.release()
    return info


def measure(clip: Path, bundle: Path, budget: float, threads: int) -> dict[str, Any]:
    from paumer_edge.core.temporal import ReuseOptions
    from paumer_edge.runtime import Pipeline
    from paumer_edge.runtime.sources import open_source

    per = Pipeline(bundle, budget=budget, threads=threads, shared_threads=True)
    pipes = {"reuse (defaults)": Pipeline(bundle, budget=budget, threads=threads, shared_threads=True, cost=per.cost,
                                          reuse=ReuseOptions()),
             "reuse, no agreement target": Pipeline(bundle, budget=budget, threads=threads, shared_threads=True,
                                                    cost=per.cost, reuse=ReuseOptions(agreement=None))}
    for p in (per, *pipes.values()):
        p.warmup()
    base_s, spent = 0.0, {name: 0.0 for name in pipes}
    agree: dict[str, list[float]] = {name: [] for name in pipes}
    kinds: dict[str, dict[str, int]] = {name: {} for name in pipes}
    flicker: list[float] = []  # per-frame processing's own labels: the share that changed from the previous frame
    previous = None
    for frame in open_source(str(clip)):
        t = time.perf_counter()
        ref = per(frame.image).labels
        base_s += time.perf_counter() - t
        if previous is not None:
            flicker.append(float((ref != previous).mean()))
        previous = ref
        for name, pipe in pipes.items():
            t = time.perf_counter()
            out = pipe(frame.image)
            spent[name] += time.perf_counter() - t
            if out.labels.shape != frame.image.shape[:2]:
                raise SystemExit(f"{clip}: labels {out.labels.shape} for a frame of {frame.image.shape[:2]}")
            agree[name].append(float((out.labels == ref).mean()))
            kinds[name][out.stats.frame_kind] = kinds[name].get(out.stats.frame_kind, 0) + 1
    if previous is None:
        raise SystemExit(f"{clip}: no frames could be read from it")
    return {name: {"speedup": round(base_s / spent[name], 3), "agreement_mean": round(float(np.mean(agree[name])), 5),
                   "agreement_min": round(float(np.min(agree[name])), 5), "frames": len(agree[name]),
                   "held_share": round(kinds[name].get("held", 0) / len(agree[name]), 4),
                   "per_frame_flicker": round(float(np.mean(flicker)) if flicker else 0.0, 5),
                   "kinds": kinds[name]} for name in pipes}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--bundle", help="bundle directory (default: the sample model's cached export)")
    p.add_argument("--seconds", type=float, default=20.0, help="length of each rendered clip")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--videos", nargs="+", metavar="VIDEO", help="measure these videos instead of rendered clips")
    p.add_argument("--origin", default="", help="where the --videos came from (kept in the JSON)")
    p.add_argument("--json", default=str(RESULTS / "reuse_other_videos.json"))
    a = p.parse_args(argv)
    from paumer_edge.core.atomic import write_json_atomic
    from paumer_edge.verbs.bundles import bundle_for

    prov = provenance(argv)
    bundle = Path(a.bundle) if a.bundle else bundle_for(None, quiet=True)
    result: dict[str, Any] = {"what": __doc__.split("\n")[0], "bundle": str(bundle), "clips": {}}
    if a.videos:
        clips = [Path(v) for v in a.videos]
        missing = [str(c) for c in clips if not c.is_file()]
        if missing:
            raise SystemExit(f"no such video: {', '.join(missing)}")
        stems = [c.stem for c in clips]
        if len(set(stems)) < len(stems):  # the results are keyed by the name without its suffix
            twice = sorted({s for s in stems if stems.count(s) > 1})
            raise SystemExit(f"two videos share the name {', '.join(twice)} (without the suffix): rename one")
        result["videos"] = {"origin": a.origin, "files": [describe(c) for c in clips]}
    else:
        CLIPS.mkdir(parents=True, exist_ok=True)
        clips = [render(size, a.seconds) for size in SIZES]
        clips.insert(1, degrade(clips[0]))
        result["seed"] = SEED
    for clip in clips:
        result["clips"][clip.stem] = row = {f"b{budget:g}": measure(clip, bundle, budget, a.threads)
                                            for budget in (1.0, 0.5)}
        for b, settings in row.items():
            print(f"{clip.stem:34s} {b:5s} " + " | ".join(
                f"{name}: {s['speedup']:.2f}x, {100 * s['agreement_mean']:.2f}%" for name, s in settings.items()),
                flush=True)
    result["rows"] = [{"clip": clip, "budget": b, "setting": name, **{k: v for k, v in r.items() if k != "kinds"}}
                      for clip, row in result["clips"].items() for b, settings in row.items()
                      for name, r in settings.items()]  # flat, for the README's figures
    result["provenance"] = prov.finish()
    write_json_atomic(a.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
