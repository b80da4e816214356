"""`paumer-edge synth`: synthetic street images (with labels) or a street-drive video, to try things on."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import click
import cv2
import numpy as np
from tqdm import tqdm

from .. import UserError
from ..core.atomic import replace_dir_atomic
from ..core.knobs import MAX_SYNTH_PIXELS, check_count, check_fps, check_seconds, check_seed, check_size
from ..core.paths import Output, guard_paths
from ..data.classes import STREET_PALETTE
from ..data.streets import check_video_path, derive_seed, labels_folder, street_scene, video_frames, write_video
from ..runtime.sinks import write_image_atomic
from .params import SIZE, quiet

MAX_IMAGES = 1_000_000


def check_knobs(a: SimpleNamespace) -> None:
    """Every knob of `synth` by the one rule for it (paumer_edge.core.knobs)."""
    a.size = check_size(a.size, "--size", MAX_SYNTH_PIXELS)
    a.seconds = check_seconds(a.seconds, "--seconds")
    a.fps = check_fps(a.fps, "--fps")
    a.count = check_count(a.count, "--count", 1, MAX_IMAGES)
    a.seed = check_seed(a.seed, "--seed")


@click.command("synth", help="Render synthetic street scenes: WHAT is `video` (a camera driving down a street while "
               "cars drive and people walk, or with --static a fixed camera watching one; OUT an .mp4, .mkv or .avi) "
               "or `images` (OUT a folder of PNGs).")
@click.argument("what", type=click.Choice(["video", "images"]))
@click.argument("out")
@click.option("--size", type=SIZE, default="360x640", help="HxW of the frames.")
@click.option("--seconds", type=float, default=10.0, help="Video length.")
@click.option("--fps", type=float, default=30.0, help="Video frame rate.")
@click.option("--count", type=int, default=20, help="Images to write.")
@click.option("--labels", is_flag=True, help="Also write label PNGs: beside the images, or for a video one per frame "
              "(000000.png, ...) in the folder <stem>_labels beside OUT.")
@click.option("--static", is_flag=True, help="Video only: a fixed camera watching a street (cars and people move, the "
              "light flickers and drifts, sensor noise), the data temporal reuse is measured on.")
@click.option("--seed", type=int, default=0, help="Scene seed: the same seed renders the same scenes.")
@quiet
def command(**options: Any) -> int:
    return run(SimpleNamespace(**options))


def run(a: SimpleNamespace) -> int:
    t0 = time.perf_counter()
    check_knobs(a)
    guard_paths({}, Output.of("the output", a.out, "file" if a.what == "video" else "folder"))
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


def _video(a: SimpleNamespace, t0: float) -> int:
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
            replace_dir_atomic(tmp, folder, _is_labels_folder, "folder of label PNGs")
    finally:
        bar.close()
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    kind = "fixed-camera" if a.static else "drive"
    print(f"wrote {n} frames ({a.size[0]}x{a.size[1]}, {a.fps:g} fps, {kind}) to {a.out}"
          + (f" and their labels to {folder}" if folder is not None else "")
          + f" in {time.perf_counter() - t0:.1f} s")
    return 0


def _is_labels_folder(folder: Path) -> bool:
    """A folder `synth video --labels` wrote (only numbered PNGs), so writing again may replace it."""
    return all(p.suffix == ".png" and p.stem.isdigit() for p in folder.iterdir())
