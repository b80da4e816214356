"""Paint the things in the street, far to near: cars (3-D boxes), people, poles with lamps and signs,
trees and hedges. Image, labels and a material map are painted together, so labels match pixels.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from .camera import Camera
from .classes import CAR, PERSON, POLE, SIGN, VEGETATION
from .world import Prop, World

_SHIFT = 4
_SCALE = float(1 << _SHIFT)
_FOLIAGE, _CLOTH = 1, 2
_NEAR = 0.8


class Painter:
    """Fills polygons and circles into image, labels and material at once, with distance haze."""

    def __init__(self, img: np.ndarray, labels: np.ndarray, material: np.ndarray, world: World):
        self.img, self.labels, self.material = img, labels, material
        self.haze, self.fog_dist = world.haze, world.fog_dist
        self.fog = 0.0

    def at_depth(self, depth: float) -> None:
        self.fog = 1 - math.exp(-max(depth, 0.0) / self.fog_dist)

    def _col(self, color: np.ndarray) -> tuple[float, float, float]:
        c = np.asarray(color, np.float64) * (1 - self.fog) + self.haze * self.fog
        return (float(c[0]), float(c[1]), float(c[2]))

    @staticmethod
    def _pts(uv: np.ndarray) -> np.ndarray:
        return np.round(np.clip(uv, -20000, 20000) * _SCALE).astype(np.int32).reshape(-1, 1, 2)

    def poly(self, uv: np.ndarray, color: np.ndarray, label: int, material: int = 0) -> None:
        pts = [self._pts(uv)]
        cv2.fillPoly(self.img, pts, self._col(color), lineType=cv2.LINE_8, shift=_SHIFT)
        cv2.fillPoly(self.labels, pts, (int(label),), lineType=cv2.LINE_8, shift=_SHIFT)
        cv2.fillPoly(self.material, pts, (int(material),), lineType=cv2.LINE_8, shift=_SHIFT)

    def circle(self, center: np.ndarray, radius: float, color: np.ndarray, label: int, material: int = 0) -> None:
        n = max(8, min(48, int(radius)))
        a = np.linspace(0, 2 * np.pi, n, endpoint=False)
        self.poly(center + radius * np.stack([np.cos(a), np.sin(a)], -1), color, label, material)

    def shade(self, uv: np.ndarray, factor: float) -> None:
        """Darken a region (a shadow) without changing its label."""
        h, w = self.labels.shape
        x0, y0 = np.floor(uv.min(0)).astype(int)
        x1, y1 = np.ceil(uv.max(0)).astype(int) + 1
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
        if x1 <= x0 or y1 <= y0:
            return
        mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
        cv2.fillPoly(mask, [self._pts(uv - [x0, y0])], (1,), shift=_SHIFT)
        self.img[y0:y1, x0:x1][mask > 0] *= factor


_EXTENT = {"car": (3.0, 2.2), "person": (0.5, 2.0), "pole": (1.9, 9.5), "tree": (3.5, 12.0)}  # (half-width, height) m
_MIN_PIXELS = 1.5  # things smaller than this on screen are not drawn


def paint_props(world: World, cam: Camera, t: float, img: np.ndarray, labels: np.ndarray,
                material: np.ndarray) -> None:
    h, w = labels.shape
    painter = Painter(img, labels, material, world)
    f = cam.focal(w)
    props = world.props
    x = np.array([p.x + p.vx * t for p in props])
    z = np.array([p.z + p.vz * t for p in props])
    zs = z.copy()
    for i, p in enumerate(props):
        if p.kind == "hedge":  # long things: sort by their nearest visible end
            zs[i] = min(max(z[i], cam.z + 1.0), z[i] + p.params["len"])
    c = cam.to_camera(np.stack([x, np.zeros_like(x), zs], -1))
    depth = c[:, 2]
    u = 0.5 * w + f * c[:, 0] / np.maximum(depth, 1e-6)
    placed = []
    for i in np.nonzero((depth > _NEAR) & (depth < world.length - cam.z) & (z < world.length))[0].tolist():
        half, tall = _EXTENT.get(props[i].kind, (np.inf, np.inf))
        scale = f / depth[i]
        if tall * scale < _MIN_PIXELS or abs(u[i] - 0.5 * w) > 0.5 * w + half * scale + 2:
            continue
        placed.append((depth[i], i))
    placed.sort(key=lambda item: -item[0])
    for d, i in placed:
        painter.at_depth(float(d))
        _DRAW[props[i].kind](painter, cam, world, props[i], float(x[i]), float(z[i]), t, (h, w))


def _billboard(cam: Camera, x: float, z: float, size: tuple[int, int]):
    """Screen mapping for an upright flat thing at (x, z): metres (dx, dy) -> pixel."""
    (base,), _ = cam.project(np.array([[x, 0.0, z]]), *size)
    s = cam.focal(size[1]) / float(cam.to_camera(np.array([x, 0.0, z]))[2])

    def at(pts: list[tuple[float, float]] | np.ndarray) -> np.ndarray:
        p = np.asarray(pts, np.float64).reshape(-1, 2)
        return np.stack([base[0] + p[:, 0] * s, base[1] - p[:, 1] * s], -1)

    return at, s


def _visible(uv: np.ndarray, size: tuple[int, int]) -> bool:
    h, w = size
    return bool(uv[:, 0].max() >= 0 and uv[:, 0].min() < w and uv[:, 1].max() >= 0 and uv[:, 1].min() < h)


def _box(p: Painter, cam: Camera, size: tuple[int, int], lo: np.ndarray, hi: np.ndarray, color: np.ndarray,
         label: int, material: int, sun_side: int) -> dict[str, np.ndarray] | None:
    """A lit axis-aligned box; returns the screen quads of its visible faces by name."""
    x0, y0, z0 = lo
    x1, y1, z1 = hi
    corners = np.array([[x, y, z] for x in (x0, x1) for y in (y0, y1) for z in (z0, z1)])
    uv, depth = cam.project(corners, *size)
    if depth.min() < 0.3 or not _visible(uv, size):
        return None
    faces = {  # corner indices (x, y, z bits), outward normal, brightness
        "near": ([0, 2, 6, 4], (0, 0, -1), 0.9), "far": ([1, 3, 7, 5], (0, 0, 1), 0.9),
        "left": ([0, 2, 3, 1], (-1, 0, 0), 1.05 if sun_side < 0 else 0.75),
        "right": ([4, 6, 7, 5], (1, 0, 0), 1.05 if sun_side > 0 else 0.75),
        "top": ([2, 3, 7, 6], (0, 1, 0), 1.12),
    }
    shown = {}
    eye = cam.position
    for name, (idx, normal, light) in faces.items():
        centre = corners[idx].mean(0)
        if np.dot(eye - centre, normal) > 0:
            p.poly(uv[idx], color * light, label, material)
            shown[name] = uv[idx]
    return shown


def _car(p: Painter, cam: Camera, world: World, prop: Prop, x: float, z: float, t: float, size) -> None:
    c = prop.params
    hw, hl, h = c["w"] / 2, c["len"] / 2, c["h"]
    body_top = h * (0.5 if c["cabin"] > 0.7 else 0.6)
    shadow, _ = cam.project(np.array([[x - hw - 0.1, 0, z - hl - 0.2], [x + hw + 0.1, 0, z - hl - 0.2],
                                      [x + hw + 0.1, 0, z + hl + 0.2], [x - hw - 0.1, 0, z + hl + 0.2]]), *size)
    near_depth = float(cam.to_camera(np.array([x, 0, z - hl]))[2])
    if near_depth < 0.3 or not _visible(shadow, size):
        return
    pixels = cam.focal(size[1]) * h / near_depth
    if pixels < 10:  # far away: one box is all the eye (and the label) can tell
        _box(p, cam, size, np.array([x - hw, 0.0, z - hl]), np.array([x + hw, h * 0.85, z + hl]),
             c["color"], CAR, 0, world.sun_side)
        return
    p.shade(shadow, 0.45)
    dark = np.array([0.04, 0.04, 0.05])
    for wx in (x - hw - 0.02, x + hw - 0.22):
        for wz in (z - hl + 0.55, z + hl - 1.2):
            _box(p, cam, size, np.array([wx, 0, wz]), np.array([wx + 0.24, 0.64, wz + 0.65]), dark, CAR, 0, 0)
    faces = _box(p, cam, size, np.array([x - hw, 0.28, z - hl]), np.array([x + hw, body_top, z + hl]),
                 c["color"], CAR, 0, world.sun_side)
    if faces is None:
        return
    cl = c["len"] * c["cabin"] * 0.8
    cz = z - 0.05 * c["dir"] * c["len"]
    cab = _box(p, cam, size, np.array([x - hw + 0.12, body_top, cz - cl / 2]),
               np.array([x + hw - 0.12, h, cz + cl / 2]), c["color"], CAR, 0, world.sun_side) or {}
    glass = np.array([0.13, 0.16, 0.2]) + 0.15 * world.sky_horizon
    for name, quad in cab.items():
        if name != "top":
            p.poly(_sub(quad, 0.08, 0.92, 0.08, 0.88), glass, CAR)
    if "near" in faces:
        near = faces["near"]  # corners: (x0,y0), (x0,y1), (x1,y1), (x1,y0)
        light = np.array([0.85, 0.06, 0.05]) if c["dir"] > 0 else np.array([0.98, 0.96, 0.85])
        p.poly(_sub(near, 0.05, 0.22, 0.55, 0.85), light, CAR)
        p.poly(_sub(near, 0.78, 0.95, 0.55, 0.85), light, CAR)
        p.poly(_sub(near, 0.4, 0.6, 0.25, 0.45), np.array([0.9, 0.9, 0.88]), CAR)


def _sub(quad: np.ndarray, u0: float, u1: float, v0: float, v1: float) -> np.ndarray:
    """Part of a face quad (a0 bottom-left, a1 top-left, b1 top-right, b0 bottom-right) by fractions."""
    a0, a1, b1, b0 = quad

    def at(u: float, v: float) -> np.ndarray:
        bottom = a0 + (b0 - a0) * u
        top = a1 + (b1 - a1) * u
        return bottom + (top - bottom) * v

    return np.array([at(u0, v0), at(u0, v1), at(u1, v1), at(u1, v0)])


def _person(p: Painter, cam: Camera, world: World, prop: Prop, x: float, z: float, t: float, size) -> None:
    c = prop.params
    at, s = _billboard(cam, x, z, size)
    h = c["h"]
    if not _visible(at([(-0.5, 0), (0.5, h)]), size):
        return
    moving = abs(prop.vz) + abs(prop.vx) > 0
    swing = 0.17 * math.sin(c["phase"] + (t * 2 * math.pi * 1.7 if moving else 0)) if moving else 0.0
    hip, sh = 0.47 * h, 0.81 * h
    if h * s < 10:  # far away: a silhouette
        p.poly(at([(-0.15, 0), (0.15, 0), (0.2, sh), (0.1, 0.95 * h), (-0.1, 0.95 * h), (-0.2, sh)]),
               c["top"], PERSON, _CLOTH)
        return
    p.shade(at([(-0.35, 0.05), (0.35, 0.05), (0.35, -0.05), (-0.35, -0.05)]), 0.6)
    for sgn in (-1, 1):
        foot = sgn * 0.08 + sgn * swing
        p.poly(at([(sgn * 0.02, hip), (sgn * 0.15, hip), (foot + sgn * 0.06, 0), (foot - sgn * 0.06, 0)]),
               c["legs"], PERSON, _CLOTH)
    for sgn in (-1, 1):
        hand = sgn * 0.24 - sgn * swing * 0.6
        p.poly(at([(sgn * 0.17, sh), (sgn * 0.23, sh - 0.02), (hand + sgn * 0.04, hip + 0.02),
                   (hand - sgn * 0.03, hip + 0.02)]), c["top"] * 0.9, PERSON, _CLOTH)
        p.circle(at([(hand, hip)])[0], 0.045 * s, c["skin"], PERSON)
    p.poly(at([(-0.2, sh), (0.2, sh), (0.16, hip - 0.03), (-0.16, hip - 0.03)]), c["top"], PERSON, _CLOTH)
    if c["bag"]:
        p.poly(at([(0.18, hip + 0.25), (0.32, hip + 0.25), (0.32, hip - 0.05), (0.18, hip - 0.05)]),
               c["legs"] * 0.5, PERSON)
    p.poly(at([(-0.05, sh), (0.05, sh), (0.05, 0.87 * h), (-0.05, 0.87 * h)]), c["skin"], PERSON)
    head = at([(0, 0.92 * h)])[0]
    p.circle(head, 0.115 * s, c["skin"], PERSON)
    p.circle(head - [0, 0.04 * s], 0.1 * s, c["hair"], PERSON)


def _pole(p: Painter, cam: Camera, world: World, prop: Prop, x: float, z: float, t: float, size) -> None:
    c = prop.params
    at, s = _billboard(cam, x, z, size)
    h, r = c["h"], c["r"]
    if not _visible(at([(-2, 0), (2, h + 0.5)]), size):
        return
    col = c["color"]
    p.poly(at([(-r, 0), (r, 0), (r * 0.7, h), (-r * 0.7, h)]), col, POLE)
    if c["kind"] == "lamp":
        reach = -c["side"] * 1.6
        p.poly(at([(0, h - 0.05), (reach, h + 0.2), (reach, h + 0.28), (0, h + 0.05)]), col, POLE)
        p.poly(at([(reach - 0.3, h + 0.12), (reach + 0.3, h + 0.12), (reach + 0.25, h + 0.28),
                   (reach - 0.25, h + 0.28)]), col * 1.3, POLE)
    elif c["kind"] == "sign":
        cy, rad = min(c["sign_h"], h - 0.3), c["sign_r"]
        centre = at([(0, cy)])[0]
        red, white, blue = np.array([0.8, 0.1, 0.1]), np.array([0.95, 0.95, 0.95]), np.array([0.1, 0.3, 0.75])
        shape = c["sign"]
        if shape == "round":
            p.circle(centre, rad * s, red, SIGN)
            p.circle(centre, rad * s * 0.75, white, SIGN)
        elif shape == "triangle":
            tri = np.array([(0, 1.0), (0.87, -0.5), (-0.87, -0.5)])
            p.poly(at(tri * rad + [0, cy]), red, SIGN)
            p.poly(at(tri * rad * 0.65 + [0, cy]), white, SIGN)
        elif shape == "octagon":
            a = np.arange(8) * np.pi / 4 + np.pi / 8
            p.poly(at(np.stack([np.cos(a), np.sin(a)], -1) * rad + [0, cy]), red, SIGN)
        else:
            wdt = rad * (1.4 if shape == "rect" else 1.0)
            p.poly(at([(-wdt, cy - rad), (wdt, cy - rad), (wdt, cy + rad), (-wdt, cy + rad)]), blue, SIGN)
            p.poly(at([(-wdt * 0.8, cy - rad * 0.1), (wdt * 0.8, cy - rad * 0.1), (wdt * 0.8, cy + rad * 0.1),
                       (-wdt * 0.8, cy + rad * 0.1)]), white, SIGN)


def _tree(p: Painter, cam: Camera, world: World, prop: Prop, x: float, z: float, t: float, size) -> None:
    c = prop.params
    at, s = _billboard(cam, x, z, size)
    th, cr, r = c["trunk_h"], c["crown"], c["trunk_r"]
    if not _visible(at([(-cr * 1.5, 0), (cr * 1.5, th + 2.5 * cr)]), size):
        return
    p.shade(at([(-cr, 0.05), (cr, 0.05), (cr, -0.1), (-cr, -0.1)]), 0.6)
    p.poly(at([(-r, 0), (r, 0), (r * 0.6, th + cr), (-r * 0.6, th + cr)]), np.array([0.3, 0.22, 0.15]), VEGETATION)
    blobs = c["blobs"]
    order = np.argsort(blobs[:, 1])
    for bx, by, bz in blobs[order]:
        centre = at([(bx * cr * 0.45, th + cr * (0.95 + 0.3 * by))])[0]
        shade = 0.8 + 0.15 * by
        p.circle(centre, cr * (0.62 + 0.1 * bz) * s, c["green"] * shade, VEGETATION, _FOLIAGE)


def _hedge(p: Painter, cam: Camera, world: World, prop: Prop, x: float, z: float, t: float, size) -> None:
    c = prop.params
    z0, z1 = max(z, cam.z + 1.0), z + c["len"]
    if z1 - z0 < 0.3:
        return
    p.at_depth(float(cam.to_camera(np.array([x, 0.0, z0]))[2]))
    _box(p, cam, size, np.array([x - c["w"] / 2, 0, z0]), np.array([x + c["w"] / 2, c["h"], z1]),
         world.terrain_color * 0.7, VEGETATION, _FOLIAGE, world.sun_side)


_DRAW = {"car": _car, "person": _person, "pole": _pole, "tree": _tree, "hedge": _hedge}
