"""`paumer-edge synth`."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from .. import UserError
from ..core.knobs import MAX_SYNTH_PIXELS, check_count, check_fps, check_seconds, check_seed, check_size
from ..core.paths import Output, guard_paths
from ..data.classes import STREET_PALETTE
from ..data.streets import check_video_path, derive_seed, street_frames, street_scene, write_video
from ..runtime.sinks import write_image_atomic

MAX_IMAGES = 1_000_000


def check_knobs(a: argparse.Namespace) -> None:
    """Every knob of `synth` by the one rule for it (paumer_edge.core.knobs)."""
    a.size = check_size(a.size, "--size", MAX_SYNTH_PIXELS)
    a.seconds = check_seconds(a.seconds, "--seconds")
    a.fps = check_fps(a.fps, "--fps")
    a.count = check_count(a.count, "--count", 1, MAX_IMAGES)
    a.seed = check_seed(a.seed, "--seed")


def run(a: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    check_knobs(a)
    guard_paths({}, Output.of("the output", a.out, "file" if a.what == "video" else "folder"))
    if a.what == "video":
        check_video_path(a.out)
        frames = street_frames(a.seed, a.size, a.seconds, a.fps)
        total = max(1, int(round(a.seconds * a.fps)))
        bar = tqdm(total=total, desc="rendering", unit="frame", disable=a.quiet)

        def images():
            for img, _ in frames:
                bar.update()
                yield img

        n = write_video(a.out, images(), a.fps)
        bar.close()
        print(f"wrote {n} frames ({a.size[0]}x{a.size[1]}, {a.fps:g} fps) to {a.out} "
              f"in {time.perf_counter() - t0:.1f} s")
        return 0
    out = Path(a.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"'{out}' exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    palette = np.array(STREET_PALETTE, np.uint8)
    for i in tqdm(range(a.count), desc="rendering", unit="img", disable=a.quiet):
        img, lab = street_scene(derive_seed(a.seed, i), a.size)
        write_image_atomic(out / f"street_{i:05d}.png", cv2.cvtColor(img, cv2.COLOR_RGB2BGR), durable=False)
        if a.labels:
            write_image_atomic(out / f"street_{i:05d}_labels.png", lab, durable=False)
            write_image_atomic(out / f"street_{i:05d}_color.png", cv2.cvtColor(palette[lab], cv2.COLOR_RGB2BGR),
                               durable=False)
    print(f"wrote {a.count} images to {out} in {time.perf_counter() - t0:.1f} s")
    return 0
