"""A pinhole camera on the street: rays for every pixel and projection of world points."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Camera:
    x: float = 0.0
    z: float = 0.0
    height: float = 1.6
    yaw: float = 0.0  # radians, positive turns right
    pitch: float = 0.0  # radians, positive looks down
    hfov: float = 1.3  # horizontal field of view, radians

    def focal(self, width: int) -> float:
        return 0.5 * width / np.tan(0.5 * self.hfov)

    @property
    def position(self) -> np.ndarray:
        return np.array([self.x, self.height, self.z])

    def rays(self, height: int, width: int) -> np.ndarray:
        """World-space direction of every pixel centre, [H, W, 3] (not normalised, camera z = 1)."""
        f = self.focal(width)
        u = (np.arange(width) + 0.5 - 0.5 * width) / f
        v = (np.arange(height) + 0.5 - 0.5 * height) / f
        dx, dy = np.meshgrid(u, -v)
        cp, sp, cy, sy = np.cos(self.pitch), np.sin(self.pitch), np.cos(self.yaw), np.sin(self.yaw)
        y1 = dy * cp - sp
        z1 = dy * sp + cp
        return np.stack([dx * cy + z1 * sy, y1, -dx * sy + z1 * cy], axis=-1)

    def to_camera(self, pts: np.ndarray) -> np.ndarray:
        """World points [..., 3] -> camera coordinates [..., 3] (x right, y up, z forward)."""
        d = np.asarray(pts, np.float64) - self.position
        cp, sp, cy, sy = np.cos(self.pitch), np.sin(self.pitch), np.cos(self.yaw), np.sin(self.yaw)
        x = d[..., 0] * cy - d[..., 2] * sy
        z1 = d[..., 0] * sy + d[..., 2] * cy
        y = d[..., 1] * cp + z1 * sp
        z = -d[..., 1] * sp + z1 * cp
        return np.stack([x, y, z], axis=-1)

    def project(self, pts: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
        """World points [..., 3] -> pixel coordinates [..., 2] and depth [...]."""
        c = self.to_camera(pts)
        f = self.focal(width)
        depth = c[..., 2]
        safe = np.where(depth > 1e-6, depth, 1e-6)
        uv = np.stack([0.5 * width + f * c[..., 0] / safe, 0.5 * height - f * c[..., 1] / safe], axis=-1)
        return uv, depth
