"""A random street as 3-D data: road, sidewalks, building rows, cross streets, and the things on them.

World axes: x to the right, y up, z along the road (forward). The road is centred on x = 0. All
lengths are metres. Moving things carry a velocity so a video can animate the same street.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class BuildingRow:
    """The buildings on one side of the road: a facade plane at x = `x`, segments along z."""

    side: int  # -1 left, +1 right
    x: float
    z0: np.ndarray  # segment starts (sorted)
    z1: np.ndarray  # segment ends
    height: np.ndarray
    depth: np.ndarray  # how far the building reaches away from the road (its end walls show in gaps)
    color: np.ndarray  # [n, 3] RGB 0..1
    floor_h: np.ndarray
    win_w: np.ndarray  # window width as a fraction of the bay
    bay: np.ndarray  # window spacing along the facade
    win_color: np.ndarray  # [n, 3]

    def segment_at(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Index of the building covering each z, and whether one does."""
        i = np.clip(np.searchsorted(self.z0, z, side="right") - 1, 0, len(self.z0) - 1)
        inside = (z >= self.z0[i]) & (z < self.z1[i])
        return i, inside


@dataclass
class Prop:
    """Something standing in the street, drawn as a projected shape."""

    kind: str  # car | person | pole | tree | hedge
    x: float
    z: float
    vz: float = 0.0  # m/s along the road
    vx: float = 0.0
    params: dict = field(default_factory=dict)


@dataclass
class World:
    seed: int
    length: float  # the street ends here with a distant skyline
    road_half: float
    walk_left: float
    walk_right: float
    lanes: int  # lanes per direction
    two_way: bool
    crossings: np.ndarray  # [n, 2] z ranges of cross streets
    rows: tuple[BuildingRow, BuildingRow]
    props: list[Prop]
    # appearance
    asphalt: float
    walk_color: np.ndarray
    terrain_color: np.ndarray
    sky_zenith: np.ndarray
    sky_horizon: np.ndarray
    haze: np.ndarray
    fog_dist: float
    sun_side: int  # the sun lights the facade on the opposite side and shades this one
    sun_elev: float  # tan of the sun's elevation, for shadow lengths
    exposure: float
    tint: np.ndarray
    cloudiness: float
    skyline_seed: int

    def in_crossing(self, z: np.ndarray) -> np.ndarray:
        out = np.zeros(np.shape(z), bool)
        for a, b in self.crossings:
            out |= (z >= a) & (z < b)
        return out

    def walk_edge(self, side: int) -> float:
        return self.road_half + (self.walk_right if side > 0 else self.walk_left)


BUILDING_COLORS = np.array([
    [0.78, 0.72, 0.62], [0.62, 0.36, 0.28], [0.55, 0.55, 0.57], [0.85, 0.84, 0.80], [0.48, 0.40, 0.34],
    [0.70, 0.62, 0.45], [0.40, 0.42, 0.46], [0.82, 0.70, 0.60], [0.60, 0.66, 0.70], [0.75, 0.55, 0.42],
])
CAR_COLORS = np.array([
    [0.85, 0.85, 0.85], [0.10, 0.10, 0.12], [0.55, 0.56, 0.58], [0.60, 0.08, 0.08], [0.10, 0.20, 0.50],
    [0.90, 0.90, 0.92], [0.25, 0.30, 0.25], [0.75, 0.65, 0.20], [0.35, 0.35, 0.40], [0.05, 0.35, 0.55],
])


def _row(rng: np.random.Generator, side: int, x: float, length: float, crossings: np.ndarray) -> BuildingRow:
    z0s, z1s = [], []
    z = -40.0
    while z < length:
        if rng.random() < 0.12:
            z += rng.uniform(3, 18)  # a gap: a garden, a parking lot, an alley
        w = rng.uniform(8, 32)
        a, b = z, z + w
        for c0, c1 in crossings:  # buildings stop at cross streets
            if a < c1 and b > c0:
                b = min(b, c0)
                if b - a < 3:
                    a, b = c1, c1 + w
        if b - a >= 3:
            z0s.append(a)
            z1s.append(b)
        z = b + rng.choice([0.0, rng.uniform(0.5, 4.0)], p=[0.7, 0.3])
    n = len(z0s)
    tall = rng.uniform(0.6, 1.6)
    return BuildingRow(
        side=side, x=x, z0=np.array(z0s), z1=np.array(z1s),
        height=rng.uniform(6, 28, n) * tall,
        depth=rng.uniform(8, 20, n),
        color=np.clip(BUILDING_COLORS[rng.integers(0, len(BUILDING_COLORS), n)] * rng.uniform(0.8, 1.15, (n, 1))
                      + rng.normal(0, 0.03, (n, 3)), 0, 1),
        floor_h=rng.uniform(2.9, 3.8, n),
        win_w=rng.uniform(0.3, 0.7, n),
        bay=rng.uniform(2.2, 4.0, n),
        win_color=np.clip(np.array([0.20, 0.25, 0.32]) + rng.normal(0, 0.06, (n, 3)), 0, 1),
    )


def sample_world(seed: int, length: float = 320.0) -> World:
    """A random street of `length` metres, deterministic for the seed."""
    rng = np.random.default_rng(seed)
    lanes = int(rng.choice([1, 1, 2, 2, 3]))
    two_way = bool(rng.random() < 0.75)
    lane_w = rng.uniform(2.8, 3.6)
    road_half = lane_w * lanes * (1 if two_way else 0.5) + rng.uniform(0.3, 1.8)
    walk_l, walk_r = rng.uniform(1.5, 5.0, 2)
    crossings = []
    z = rng.uniform(20, 120)
    while z < length - 20:
        w = rng.uniform(8, 16)
        crossings.append((z, z + w))
        z += w + rng.uniform(50, 160)
    cross = np.array(crossings).reshape(-1, 2)
    terrain = rng.uniform(0, 4, 2) * (rng.random(2) < 0.45)
    rows = (
        _row(rng, -1, -(road_half + walk_l + terrain[0]), length, cross),
        _row(rng, +1, road_half + walk_r + terrain[1], length, cross),
    )
    world = World(
        seed=seed, length=length, road_half=road_half, walk_left=walk_l, walk_right=walk_r, lanes=lanes,
        two_way=two_way, crossings=cross, rows=rows, props=[],
        asphalt=rng.uniform(0.25, 0.45),
        walk_color=np.clip(np.array([0.62, 0.60, 0.57]) * rng.uniform(0.75, 1.2) + rng.normal(0, 0.03, 3), 0, 1),
        terrain_color=np.clip(np.array([0.36, 0.45, 0.20]) + rng.normal(0, 0.05, 3), 0, 1),
        sky_zenith=np.clip(np.array([0.25, 0.45, 0.80]) + rng.normal(0, 0.08, 3), 0, 1),
        sky_horizon=np.clip(np.array([0.75, 0.82, 0.90]) + rng.normal(0, 0.06, 3), 0, 1),
        haze=np.clip(np.array([0.72, 0.76, 0.82]) + rng.normal(0, 0.04, 3), 0, 1),
        fog_dist=rng.uniform(120, 600),
        sun_side=int(rng.choice([-1, 1])),
        sun_elev=rng.uniform(0.4, 2.0),
        exposure=rng.uniform(0.7, 1.25),
        tint=np.clip(1 + rng.normal(0, 0.05, 3), 0.85, 1.15),
        cloudiness=rng.uniform(0, 1),
        skyline_seed=int(rng.integers(1 << 30)),
    )
    if rng.random() < 0.3:  # overcast
        world.sky_zenith = world.sky_horizon = np.full(3, rng.uniform(0.6, 0.85))
        world.sun_elev = 50.0  # no visible shadows
    world.props = _props(rng, world, terrain)
    return world


def lane_centres(world: World) -> list[tuple[float, int]]:
    """(x, direction) of every lane: +1 drives away from the camera, -1 towards it."""
    usable = world.road_half - 0.5
    if world.two_way:
        w = usable / world.lanes
        return [(s * (i + 0.5) * w, s) for i in range(world.lanes) for s in (1, -1)]
    w = 2 * usable / world.lanes
    return [(-usable + (i + 0.5) * w, 1) for i in range(world.lanes)]


def _props(rng: np.random.Generator, world: World, terrain: np.ndarray) -> list[Prop]:
    props: list[Prop] = []
    L = world.length
    # moving and parked cars
    for x, d in lane_centres(world):
        z = rng.uniform(-20, 30)
        speed = d * rng.uniform(5, 14)  # one speed per lane, so cars never drive through each other
        while z < L:
            if not world.in_crossing(np.array(z)):
                props.append(Prop("car", x + rng.normal(0, 0.2), z, vz=speed, params=_car(rng, d)))
            z += rng.exponential(28) + 7
    for side in (-1, 1):
        if rng.random() < 0.6:  # parked cars along the curb
            x = side * (world.road_half - 1.1)
            z = rng.uniform(0, 20)
            while z < L:
                if not world.in_crossing(np.array([z - 3, z + 6])).any():
                    props.append(Prop("car", x, z, params=_car(rng, int(rng.choice([-1, 1])))))
                z += rng.uniform(5.5, 7) + rng.exponential(10) * (rng.random() < 0.4)
    # street furniture and people on the sidewalks
    for side in (-1, 1):
        curb, edge = world.road_half, world.walk_edge(side)
        row = world.rows[0 if side < 0 else 1]
        z = rng.uniform(0, 15)
        while z < L:  # poles: lamps and signs
            kind = rng.choice(["lamp", "sign", "sign", "plain"])
            props.append(Prop("pole", side * (curb + 0.4), z, params=_pole(rng, kind, side)))
            z += rng.uniform(12, 35)
        for _ in range(int(rng.poisson(L / 9))):
            zp = rng.uniform(-5, L)
            xp = side * rng.uniform(curb + 0.6, edge - 0.3)
            walk = rng.choice([-1, 1]) * rng.uniform(0.8, 1.6)
            props.append(Prop("person", xp, zp, vz=walk, params=_person(rng)))
        green = terrain[0 if side < 0 else 1]
        if green > 0 or rng.random() < 0.5:  # trees on the terrain strip or in the sidewalk
            xt = side * ((edge + row.x * side) / 2 if green > 0 else curb + 1.0)
            z = rng.uniform(0, 10)
            while z < L:
                props.append(Prop("tree", xt + rng.normal(0, 0.3), z, params=_tree(rng)))
                z += rng.uniform(6, 18)
        if green > 0.8 and rng.random() < 0.6:
            xh = side * (edge + 0.5)
            z = 0.0
            while z < L:
                n = rng.uniform(4, 20)
                props.append(Prop("hedge", xh, z, params={"len": n, "h": rng.uniform(0.5, 1.3),
                                                          "w": min(0.9, green - 0.2)}))
                z += n + rng.uniform(2, 10)
    # people on the crosswalks
    for a, _b in world.crossings:
        for _ in range(int(rng.integers(0, 4))):
            props.append(Prop("person", rng.uniform(-world.road_half, world.road_half), a - rng.uniform(1, 3),
                              vx=rng.choice([-1, 1]) * rng.uniform(0.8, 1.5), params=_person(rng)))
    return props


def _car(rng: np.random.Generator, direction: int) -> dict:
    kind = rng.choice(["sedan", "sedan", "hatch", "van", "suv"])
    length = {"sedan": 4.5, "hatch": 3.9, "van": 5.2, "suv": 4.7}[kind] * rng.uniform(0.95, 1.05)
    height = {"sedan": 1.45, "hatch": 1.5, "van": 2.1, "suv": 1.75}[kind] * rng.uniform(0.95, 1.05)
    return {
        "dir": direction, "len": length, "h": height, "w": rng.uniform(1.7, 1.95),
        "cabin": 0.55 if kind != "van" else 0.85,
        "color": np.clip(CAR_COLORS[rng.integers(len(CAR_COLORS))] + rng.normal(0, 0.03, 3), 0, 1),
    }


def _pole(rng: np.random.Generator, kind: str, side: int) -> dict:
    return {
        "kind": kind, "side": side,
        "h": rng.uniform(6, 9) if kind == "lamp" else rng.uniform(2.6, 4.0),
        "r": rng.uniform(0.06, 0.11),
        "sign": rng.choice(["round", "triangle", "square", "octagon", "rect"]),
        "sign_h": rng.uniform(2.0, 3.0), "sign_r": rng.uniform(0.3, 0.45),
        "color": np.clip(np.array([0.45, 0.46, 0.48]) * rng.uniform(0.6, 1.4), 0, 1),
    }


def _person(rng: np.random.Generator) -> dict:
    skin = np.array([[0.94, 0.78, 0.66], [0.80, 0.60, 0.45], [0.55, 0.38, 0.26], [0.36, 0.25, 0.18]])
    return {
        "h": rng.uniform(1.5, 1.95), "phase": rng.uniform(0, 6.28),
        "top": rng.uniform(0.05, 0.95, 3), "legs": rng.uniform(0.05, 0.6, 3),
        "skin": skin[rng.integers(4)], "hair": rng.uniform(0.05, 0.5) * np.array([1, 0.8, 0.6]),
        "bag": bool(rng.random() < 0.3),
    }


def _tree(rng: np.random.Generator) -> dict:
    n = int(rng.integers(3, 7))
    return {
        "trunk_h": rng.uniform(1.8, 3.5), "trunk_r": rng.uniform(0.12, 0.25),
        "crown": rng.uniform(1.4, 3.2), "blobs": rng.normal(0, 1, (n, 3)),
        "green": np.clip(np.array([0.22, 0.38, 0.12]) * rng.uniform(0.6, 1.4) + rng.normal(0, 0.03, 3), 0, 1),
    }
