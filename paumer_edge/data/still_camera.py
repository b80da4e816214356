"""A fixed camera watching a street: traffic and people pass, the light flickers, the sensor is noisy.

The scene for temporal reuse: most of every frame is the same street, so the static layer (ground, facades,
skyline, sky) is ray-cast once and each frame only paints the moving things over it. Traffic never runs out:
cars and walkers wrap around the stretch of street the camera sees. Light: the exposure drifts slowly and jitters
a little from frame to frame (auto-exposure, mains flicker), and one lit sign on a facade flickers on and off.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator

import numpy as np

from .camera import Camera
from .classes import BUILDING
from .render import finish_frame, static_layer
from .world import Prop, World, sample_world

VIEW_BEHIND, VIEW_AHEAD = 15.0, 140.0  # metres of street around the camera where traffic wraps


def still_camera(rng: np.random.Generator, world: World) -> Camera:
    """A camera on a pole at the kerb, looking down and along the street (as a traffic or security camera)."""
    side = float(rng.choice([-1.0, 1.0]))
    return Camera(x=side * (world.road_half + float(rng.uniform(0.5, 1.5))), z=float(rng.uniform(20, 60)),
                  height=float(rng.uniform(3.5, 5.5)), yaw=-side * float(rng.uniform(0.12, 0.3)),
                  pitch=float(rng.uniform(0.1, 0.18)), hfov=float(rng.uniform(1.1, 1.4)))


def _traffic(world: World, cam: Camera, t: float) -> list[Prop]:
    """The props at time t: the moving ones that started in the stretch the camera sees, wrapped around it (so
    `p.z + p.vz * t` stays there and the street keeps its density)."""
    lo, span = cam.z - VIEW_BEHIND, VIEW_BEHIND + VIEW_AHEAD
    out = []
    for p in world.props:
        if p.vz == 0:
            out.append(p)
        elif lo <= p.z < lo + span:
            z = lo + (p.z - lo + p.vz * t) % span
            out.append(dataclasses.replace(p, z=z - p.vz * t))
    return out


def _sign(labels: np.ndarray, rng: np.random.Generator) -> tuple[slice, slice] | None:
    """A small lit sign on a facade in the lower half of the view (None if no facade is in sight)."""
    h, w = labels.shape
    ys, xs = np.nonzero(labels[h // 3 : 3 * h // 4] == BUILDING)
    if len(ys) == 0:
        return None
    i = int(rng.integers(len(ys)))
    y, x = int(ys[i]) + h // 3, int(xs[i])
    sh, sw = max(2, h // 24), max(3, w // 18)
    return slice(max(0, y - sh), y + sh), slice(max(0, x - sw), x + sw)


def still_street_frames(seed: int, size: tuple[int, int], seconds: float,
                        fps: float = 30.0) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Frames (RGB uint8, labels uint8) of a fixed camera watching one street for `seconds`."""
    frames = max(1, int(round(seconds * fps)))
    world = sample_world(seed)
    rng = np.random.default_rng((seed, 3))
    cam = still_camera(rng, world)
    base, base_labels = static_layer(world, cam, size)
    sign = _sign(base_labels, rng)
    sign_on, phase = True, float(rng.uniform(0, 2 * math.pi))
    for i in range(frames):
        t = i / fps
        if rng.random() < 0.04:  # the sign's tube flickers on and off every second or so
            sign_on = not sign_on
        gain = 1.0 + 0.012 * math.sin(2 * math.pi * 0.4 * t + phase) + float(rng.normal(0, 0.003))
        lit = dataclasses.replace(world, props=_traffic(world, cam, t), exposure=world.exposure * gain)
        img = base.copy()
        if sign is not None:
            img[sign] = img[sign] * 0.35 + (np.array([1.0, 0.45, 0.2], np.float32) if sign_on else 0.05)
        yield finish_frame(lit, cam, t, i, img, base_labels.copy())
