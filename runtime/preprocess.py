"""Frames in, model input out: any size and channel layout -> normalised float32 [3, H, W].

numpy + OpenCV only. Frames are RGB unless said otherwise (OpenCV readers give BGR: pass bgr=True).
"""

from __future__ import annotations

import cv2
import numpy as np

from paumer_edge import UserError


def to_rgb_uint8(frame: np.ndarray, bgr: bool = False) -> np.ndarray:
    """Grayscale, RGB/BGR, RGBA/BGRA, uint8/uint16/float frames -> contiguous RGB uint8 [H, W, 3]."""
    f = np.asarray(frame)
    if f.ndim == 2:
        f = f[..., None]
    if f.ndim != 3 or f.shape[2] not in (1, 3, 4):
        raise UserError(f"a frame must be HxW, HxWx1, HxWx3 or HxWx4; got shape {f.shape}")
    if f.shape[0] < 1 or f.shape[1] < 1:
        raise UserError(f"empty frame of shape {f.shape}")
    if f.dtype == np.uint16:
        f = (f >> 8).astype(np.uint8)
    elif f.dtype != np.uint8:
        if not np.issubdtype(f.dtype, np.number):
            raise UserError(f"frames must be numeric images; got dtype {f.dtype}")
        f = np.clip(np.nan_to_num(f.astype(np.float32)) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    if f.shape[2] == 1:
        f = np.repeat(f, 3, axis=2)
    elif f.shape[2] == 4:
        f = f[..., :3]
    if bgr:
        f = f[..., ::-1]
    return np.ascontiguousarray(f)


def resize_normalise(rgb: np.ndarray, size: tuple[int, int], mean: tuple[float, float, float],
                     std: tuple[float, float, float]) -> np.ndarray:
    """RGB uint8 [h, w, 3] -> float32 [3, H, W], resized (area when shrinking) and normalised."""
    h, w = size
    if rgb.shape[:2] != (h, w):
        shrink = rgb.shape[0] > h or rgb.shape[1] > w
        rgb = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    scale = (1.0 / (255.0 * np.asarray(std, np.float32))).astype(np.float32)
    shift = (np.asarray(mean, np.float32) / np.asarray(std, np.float32)).astype(np.float32)
    x = rgb.astype(np.float32) * scale - shift
    return np.ascontiguousarray(x.transpose(2, 0, 1))
