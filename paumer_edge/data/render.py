"""Render a street `World` through a `Camera`: RGB image and per-pixel labels, at any resolution.

The static surfaces (ground, facades, building end walls, the far skyline, sky) are ray-cast per
pixel with world-space textures, so perspective, occlusion and texture scale are right by
construction. The things in the street (cars, people, poles, signs, trees) are then painted far to
near by `props.py`. Lighting, haze and sensor effects finish the frame.
"""

from __future__ import annotations

import cv2
import numpy as np

from .camera import Camera
from .classes import BUILDING, ROAD, SIDEWALK, SKY, TERRAIN, VEGETATION
from .noise import fbm, value_noise
from .props import paint_props
from .world import BuildingRow, World

_SKY, _GROUND, _FACADE_L, _FACADE_R, _END_L, _END_R, _BACKDROP = range(7)


def render(world: World, camera: Camera, size: tuple[int, int], t: float = 0.0,
           frame_seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(image uint8 [H, W, 3] RGB, labels uint8 [H, W]) of the street seen from `camera` at time t."""
    img, labels = static_layer(world, camera, size)
    return finish_frame(world, camera, t, frame_seed, img, labels)


def finish_frame(world: World, camera: Camera, t: float, frame_seed: int, img: np.ndarray,
                 labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The things in the street at time t painted over a static layer (changed in place), then lighting and the
    sensor: (image uint8 RGB, labels uint8)."""
    material = np.zeros(labels.shape, np.uint8)
    paint_props(world, camera, t, img, labels, material)
    return _finish(world, img, material, frame_seed), labels


def static_layer(world: World, camera: Camera, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """What does not move: the ray-cast ground, facades, skyline and sky with haze, before the things in the street
    (float32 RGB [H, W, 3] in 0..1, labels uint8 [H, W]). A fixed camera renders it once."""
    h, w = size
    d = camera.rays(h, w)
    o = camera.position
    dist = np.full((h, w), np.inf)
    kind = np.full((h, w), _SKY, np.int8)
    extra = np.zeros((h, w), np.int32)  # building index for facades and end walls

    def hit(tt: np.ndarray, ok: np.ndarray, k: int, idx: np.ndarray | int | None = None) -> None:
        closer = ok & (tt > 0) & (tt < dist)
        dist[closer] = tt[closer]
        kind[closer] = k
        if isinstance(idx, np.ndarray):
            extra[closer] = idx[closer]
        elif idx is not None:
            extra[closer] = idx

    with np.errstate(divide="ignore", invalid="ignore"):
        # ground plane, up to the end of the street
        tg = o[1] / -d[..., 1]
        hit(tg, (d[..., 1] < 0) & (o[2] + tg * d[..., 2] < world.length), _GROUND)
        # the far skyline closing the street
        tb = (world.length - o[2]) / d[..., 2]
        bx, by = o[0] + tb * d[..., 0], o[1] + tb * d[..., 1]
        sky_h = 8 + 30 * value_noise(np.floor(bx / 14.0), 0.0, world.skyline_seed) ** 2
        hit(tb, (d[..., 2] > 0) & (by < sky_h), _BACKDROP)
        for row, k_face, k_end in ((world.rows[0], _FACADE_L, _END_L), (world.rows[1], _FACADE_R, _END_R)):
            tf = (row.x - o[0]) / d[..., 0]
            zf, yf = o[2] + tf * d[..., 2], o[1] + tf * d[..., 1]
            i, inside = row.segment_at(zf)
            hit(tf, inside & (yf >= 0) & (yf < row.height[i]) & (row.side * d[..., 0] > 0), k_face, i)
            # end walls facing the camera show through gaps and cross streets
            ahead = np.nonzero((row.z0 > o[2] + 1) & (row.z0 < o[2] + world.length))[0]
            for j in ahead:
                te = (row.z0[j] - o[2]) / d[..., 2]
                xe, ye = o[0] + te * d[..., 0], o[1] + te * d[..., 1]
                off = row.side * (xe - row.x)
                hit(te, (d[..., 2] > 0) & (off >= 0) & (off < row.depth[j]) & (ye >= 0) & (ye < row.height[j]),
                    k_end, int(j))

    labels = np.full((h, w), SKY, np.uint8)
    img = np.zeros((h, w, 3), np.float32)
    p = o + np.where(np.isfinite(dist), dist, 0)[..., None] * d
    _shade_sky(world, d, kind == _SKY, img)
    _shade_ground(world, p, kind == _GROUND, img, labels)
    _shade_facade(world, world.rows[0], p, kind == _FACADE_L, extra, img, labels, end=False)
    _shade_facade(world, world.rows[1], p, kind == _FACADE_R, extra, img, labels, end=False)
    _shade_facade(world, world.rows[0], p, kind == _END_L, extra, img, labels, end=True)
    _shade_facade(world, world.rows[1], p, kind == _END_R, extra, img, labels, end=True)
    _shade_backdrop(world, p, kind == _BACKDROP, img, labels)

    # haze with distance
    depth = np.where(np.isfinite(dist), dist * np.linalg.norm(d, axis=-1), np.inf)
    fog = 1 - np.exp(-depth / world.fog_dist)
    fog[kind == _SKY] = 0
    img = img * (1 - fog[..., None]) + world.haze * fog[..., None]
    return img, labels


def _shade_sky(world: World, d: np.ndarray, m: np.ndarray, img: np.ndarray) -> None:
    dm = d[m]
    elev = dm[:, 1] / np.linalg.norm(dm, axis=-1)
    a = np.clip(elev * 2.5, 0, 1)[:, None] ** 0.8
    col = world.sky_horizon * (1 - a) + world.sky_zenith * a
    if world.cloudiness > 0.05:
        s = 1.0 / (np.maximum(dm[:, 1], 0) + 0.15)
        c = fbm(dm[:, 0] * s * 1.5, dm[:, 2] * s * 1.5, world.seed + 7, octaves=4)
        c = np.clip((c - (1 - 0.6 * world.cloudiness)) * 4, 0, 1)[:, None]
        col = col * (1 - c) + np.array([0.93, 0.93, 0.95]) * c
    img[m] = col


def _row_heights(row: BuildingRow, z: np.ndarray) -> np.ndarray:
    i, inside = row.segment_at(z)
    return np.where(inside, row.height[i], 0.0)


def _shade_ground(world: World, p: np.ndarray, m: np.ndarray, img: np.ndarray, labels: np.ndarray) -> None:
    x, z = p[m][:, 0], p[m][:, 2]
    ax, r = np.abs(x), world.road_half
    edge = np.where(x > 0, world.road_half + world.walk_right, world.road_half + world.walk_left)
    cross = world.in_crossing(z)
    cross_road = np.zeros_like(cross)
    for a, b in world.crossings:
        cross_road |= (z >= a + 2.5) & (z < b - 2.5)
    lab = np.where(ax < r, ROAD, np.where(ax < edge, SIDEWALK, TERRAIN))
    lab = np.where(cross & (ax >= r), np.where(cross_road, ROAD, SIDEWALK), lab)
    s = world.seed
    n1, n2 = fbm(x * 0.6, z * 0.6, s + 1, octaves=3), value_noise(x * 7, z * 7, s + 2)
    col = np.empty((len(x), 3), np.float32)
    # asphalt with wear, lane markings and crosswalks
    road = lab == ROAD
    g = world.asphalt * (0.85 + 0.25 * n1 + 0.12 * n2)
    col[road] = (g[road, None] * np.array([1.0, 1.0, 1.03]))
    lane_w = (r - 0.5) / world.lanes
    mark = np.zeros_like(road)
    if world.two_way:
        mark |= (np.abs(x) < 0.08) & ((z % 9.0) < 4.5)
    for k in range(1, world.lanes * (1 if world.two_way else 2)):
        line = k * lane_w if world.two_way else -r + 0.5 + k * lane_w
        for sx in ((1, -1) if world.two_way else (1,)):
            mark |= (np.abs(x - sx * line) < 0.07) & ((z % 8.0) < 3.0)
    mark |= (np.abs(ax - (r - 0.3)) < 0.07)
    for a, _b in world.crossings:
        mark |= (z > a - 4.0) & (z < a - 0.8) & ((x % 1.0) < 0.5)
    mark &= road & ~(cross & (ax > r - 0.5))
    col[mark] = 0.82 + 0.1 * n2[mark, None]
    # paving tiles and curb stones
    walk = lab == SIDEWALK
    tiles = ((x % 0.6) < 0.035) | ((z % 0.6) < 0.035)
    col[walk] = world.walk_color * (0.88 + 0.18 * n1[walk, None]) * np.where(tiles[walk], 0.78, 1.0)[:, None]
    curb = walk & (ax < r + 0.22)
    col[curb] = world.walk_color * 1.12
    grass = lab == TERRAIN
    n3 = fbm(x * 3, z * 3, s + 3, octaves=3)
    col[grass] = world.terrain_color * (0.6 + 0.7 * n3[grass, None])
    # shadows cast by the row of buildings the sun is behind
    row = world.rows[0 if world.sun_side < 0 else 1]
    reach = _row_heights(row, z) / world.sun_elev
    shadow = row.side * (row.x - x) < reach
    col[shadow] *= 0.55
    img[m] = col
    labels[m] = lab


def _shade_facade(world: World, row: BuildingRow, p: np.ndarray, m: np.ndarray, idx: np.ndarray,
                  img: np.ndarray, labels: np.ndarray, end: bool) -> None:
    if not m.any():
        return
    i = idx[m]
    y = p[m][:, 1]
    along = (row.side * (p[m][:, 0] - row.x)) if end else (p[m][:, 2] - row.z0[i])
    bay, fh = row.bay[i], row.floor_h[i]
    u = along % bay
    ww = row.win_w[i] * bay
    f = y % fh
    window = (np.abs(u - 0.5 * bay) < 0.5 * ww) & (f > 0.9) & (f < 0.9 + 0.5 * fh)
    window &= (y > fh) & (y < row.height[i] - 0.8)
    shop = (y > 0.5) & (y < 2.6) & (np.abs(u - 0.5 * bay) < 0.4 * bay) & (i % 3 != 0)
    window |= shop
    n = fbm(along * 0.4, y * 0.4, world.seed + 11 + row.side, octaves=3)
    col = row.color[i] * (0.85 + 0.25 * n)[:, None]
    floor_i = np.floor(y / fh)
    lit = value_noise(np.floor(along / bay) + 0.5, floor_i + 0.5 + 31 * i, world.seed + 5) > 0.85
    glass = row.win_color[i] * (0.8 + 0.5 * (f / fh))[:, None]
    glass[lit] = np.array([0.95, 0.85, 0.55])
    col = np.where(window[:, None], glass, col)
    col[y > row.height[i] - 0.5] *= 0.8  # cornice
    sun = 1.0 if row.side == -world.sun_side else 0.62
    if world.sun_elev > 10:  # overcast
        sun = 0.85
    img[m] = col * (sun * (0.8 if end else 1.0))
    labels[m] = BUILDING


def _shade_backdrop(world: World, p: np.ndarray, m: np.ndarray, img: np.ndarray, labels: np.ndarray) -> None:
    x, y = p[m][:, 0], p[m][:, 1]
    trees = value_noise(np.floor(x / 40.0), 3.0, world.skyline_seed) > 0.6
    lab = np.where(trees, VEGETATION, BUILDING)
    n = fbm(x * 0.3, y * 0.3, world.seed + 13)
    col = np.where(trees[:, None], np.array([0.25, 0.33, 0.2]), np.array([0.5, 0.5, 0.52])) * (0.8 + 0.4 * n)[:, None]
    img[m] = col
    labels[m] = lab


def _finish(world: World, img: np.ndarray, material: np.ndarray, frame_seed: int) -> np.ndarray:
    """Foliage texture, exposure and white balance, vignette, lens blur, sensor noise."""
    h, w = material.shape
    leaves = material == 1
    if leaves.any():
        yy, xx = np.nonzero(leaves)
        k = 90.0 / w
        n = fbm(xx * k * 2, yy * k * 2, world.seed + 17, octaves=3)
        img[yy, xx] *= (0.45 + 1.0 * n)[:, None]
    yy, xx = np.mgrid[0:h, 0:w]
    r2 = ((xx - w / 2) / (w / 2)) ** 2 + ((yy - h / 2) / (h / 2)) ** 2
    img = img * (world.exposure * world.tint) * (1 - 0.18 * r2)[..., None]
    sigma = 0.5 * w / 256
    img = np.asarray(cv2.GaussianBlur(img.astype(np.float32), (0, 0), sigmaX=sigma), np.float32)
    rng = np.random.default_rng((world.seed, frame_seed))
    img += rng.normal(0, 0.012, img.shape).astype(np.float32)
    return (np.clip(img, 0, 1) ** (1 / 1.1) * 255 + 0.5).astype(np.uint8)
