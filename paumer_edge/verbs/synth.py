"""`paumer-edge synth`."""

from __future__ import annotations

import argparse
import os
import shutil
import time
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from .. import UserError
from ..core.atomic import swap_folder
from ..data.classes import STREET_PALETTE
from ..data.streets import check_video_path, derive_seed, labels_folder, street_scene, video_frames, write_video
from ..runtime.sinks import write_image_atomic


def run(a: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    if a.what == "video":
        return _video(a, t0)
    if a.static:
        raise UserError("--static is a kind of video: give `synth video OUT.mp4 --static`")
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


def _video(a: argparse.Namespace, t0: float) -> int:
    """A street video (a drive, or a fixed camera with --static); --labels: one label PNG per frame beside it,
    in a folder that appears complete or not at all."""
    check_video_path(a.out)
    frames = video_frames(a.seed, a.size, a.seconds, a.fps, still=a.static)
    total = max(1, int(round(a.seconds * a.fps)))
    bar = tqdm(total=total, desc="rendering", unit="frame", disable=a.quiet)
    folder = labels_folder(a.out) if a.labels else None
    tmp = folder.with_name(f".{folder.name}.partial-{os.getpid()}") if folder is not None else None
    if tmp is not None:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)

    def images():
        for i, (img, lab) in enumerate(frames):
            if tmp is not None:
                write_image_atomic(tmp / f"{i:06d}.png", lab, durable=False)
            bar.update()
            yield img

    try:
        n = write_video(a.out, images(), a.fps)
        if folder is not None and tmp is not None:
            swap_folder(tmp, folder)
    finally:
        bar.close()
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    kind = "fixed-camera" if a.static else "drive"
    print(f"wrote {n} frames ({a.size[0]}x{a.size[1]}, {a.fps:g} fps, {kind}) to {a.out}"
          + (f" and their labels to {folder}" if folder is not None else "")
          + f" in {time.perf_counter() - t0:.1f} s")
    return 0

