"""Deterministic value noise and fractal noise, vectorised over numpy coordinate arrays.

Textures are evaluated in world coordinates, so they stay fixed to surfaces as the camera moves
and look the same at any image resolution.
"""

from __future__ import annotations

import numpy as np


def _hash(ix: np.ndarray, iy: np.ndarray, seed: int) -> np.ndarray:
    h = (ix.astype(np.int64) * 374761393 + iy.astype(np.int64) * 668265263 + seed * 2147483647) & 0xFFFFFFFF
    h = ((h ^ (h >> 13)) * 1274126177) & 0xFFFFFFFF
    return ((h ^ (h >> 16)) & 0xFFFF).astype(np.float32) / 65535.0


def value_noise(x: np.ndarray | float, y: np.ndarray | float, seed: int) -> np.ndarray:
    """Smooth noise in [0, 1] on a unit lattice."""
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    x0, y0 = np.floor(x), np.floor(y)
    fx, fy = (x - x0).astype(np.float32), (y - y0).astype(np.float32)
    fx, fy = fx * fx * (3 - 2 * fx), fy * fy * (3 - 2 * fy)
    ix, iy = x0.astype(np.int64), y0.astype(np.int64)
    a, b = _hash(ix, iy, seed), _hash(ix + 1, iy, seed)
    c, d = _hash(ix, iy + 1, seed), _hash(ix + 1, iy + 1, seed)
    return (a + (b - a) * fx) * (1 - fy) + (c + (d - c) * fx) * fy


def fbm(x: np.ndarray | float, y: np.ndarray | float, seed: int, octaves: int = 3, gain: float = 0.5) -> np.ndarray:
    """Fractal sum of value noise, normalised to [0, 1]."""
    total = np.zeros(np.broadcast(x, y).shape, np.float32)
    amp, norm, freq = 1.0, 0.0, 1.0
    for o in range(octaves):
        total += amp * value_noise(np.multiply(x, freq), np.multiply(y, freq), seed + 101 * o)
        norm += amp
        amp *= gain
        freq *= 2.0
    return total / norm
