"""Street scenes for training and evaluation, and street videos for the runtime: the public entry points."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from .. import UserError
from ..core.video import VIDEO_SUFFIXES, VideoSink
from .camera import Camera
from .render import render
from .world import World, lane_centres, sample_world


def derive_seed(*parts: int) -> int:
    """A well-mixed 31-bit seed from several integers (split seed, item index, ...)."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0] >> 1)


def random_camera(rng: np.random.Generator, world: World) -> Camera:
    """A camera somewhere on the road, as a car, a robot or a pedestrian would hold it."""
    lane = rng.uniform(-world.road_half + 0.8, world.road_half - 0.8)
    if rng.random() < 0.15:  # on the sidewalk
        side = rng.choice([-1, 1])
        lane = side * (world.road_half + rng.uniform(0.3, 1.2))
    return Camera(
        x=float(lane), z=float(rng.uniform(0, 60)), height=float(rng.uniform(0.8, 2.2)),
        yaw=float(rng.normal(0, 0.12)), pitch=float(rng.normal(0.04, 0.04)), hfov=float(rng.uniform(1.0, 1.6)),
    )


def street_scene(seed: int, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """One labelled street image (RGB uint8 [H, W, 3], labels uint8 [H, W]); the same for the same seed."""
    world = sample_world(seed)
    rng = np.random.default_rng((seed, 1))
    return render(world, random_camera(rng, world), size, t=float(rng.uniform(0, 3)), frame_seed=seed)


def street_frames(seed: int, size: tuple[int, int], seconds: float, fps: float = 30.0,
                  speed: float = 9.0) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Frames (RGB, labels) of a camera driving down one street: cars drive, people walk."""
    frames = max(1, int(round(seconds * fps)))
    world = sample_world(seed, length=speed * seconds + 320.0)
    rng = np.random.default_rng((seed, 2))
    lanes = [x for x, direction in lane_centres(world) if direction > 0]
    lane = float(lanes[int(rng.integers(len(lanes)))])
    # the ego lane is ours: no traffic to drive through
    world.props = [p for p in world.props if not (p.kind == "car" and p.vz != 0 and abs(p.x - lane) < 1.5)]
    height, phase = float(rng.uniform(1.2, 1.8)), float(rng.uniform(0, 6.3))
    for i in range(frames):
        t = i / fps
        cam = Camera(
            x=lane + 0.25 * math.sin(0.25 * t + phase), z=speed * t, height=height + 0.02 * math.sin(9 * t),
            yaw=0.06 * math.sin(0.18 * t + phase), pitch=0.03 + 0.005 * math.sin(7 * t), hfov=1.25,
        )
        yield render(world, cam, size, t=t, frame_seed=i)


def video_frames(seed: int, size: tuple[int, int], seconds: float, fps: float = 30.0,
                 still: bool = False) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Frames (RGB, labels) of a street video: a drive down the street, or (`still`) a fixed camera watching it."""
    if still:
        from .still_camera import still_street_frames

        return still_street_frames(seed, size, seconds, fps)
    return street_frames(seed, size, seconds, fps)


def labels_folder(video: str | Path) -> Path:
    """Where `synth video --labels` writes a video's per-frame labels: `<stem>_labels/` beside it."""
    video = Path(video)
    return video.with_name(f"{video.stem}_labels")


def check_video_path(path: str | Path) -> Path:
    path = Path(path)
    if path.suffix.lower() not in VIDEO_SUFFIXES:
        raise UserError(f"video path '{path}' needs an .mp4, .avi or .mkv extension")
    return path


def write_video(path: str | Path, frames: Iterator[np.ndarray], fps: float = 30.0) -> int:
    """Write RGB frames as an mp4 (mp4v codec) atomically: the file appears only when complete."""
    path = check_video_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sink = VideoSink(path, fps)
    done = False
    try:
        for frame in frames:
            sink.write(frame)
        if not sink.frames:
            raise UserError("no frames to write")
        done = True
    finally:
        sink.close(keep=done)
    return sink.frames


def make_street_video(path: str | Path, seed: int = 0, seconds: float = 10.0, fps: float = 30.0,
                      size: tuple[int, int] = (360, 640)) -> int:
    """Render a street drive to `path`; returns the number of frames."""
    return write_video(path, (img for img, _ in street_frames(seed, size, seconds, fps)), fps)
