"""Frames in, model input out, and labels back to the frame: numpy + OpenCV only.

Any size and channel layout is accepted (grayscale, RGB/BGR, RGBA/BGRA, uint8, uint16, float). Frames
are RGB unless said otherwise (OpenCV readers give BGR: pass bgr=True). The frame is either resized
to the model's input (stretching it) or letterboxed (scaled to fit, padded), and labels are mapped
back to the frame's own size either way.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from paumer_edge import UserError


@dataclass(frozen=True)
class Placement:
    """Where the frame sits inside the model input: scale and padding, to undo it on the labels."""

    frame_hw: tuple[int, int]
    input_hw: tuple[int, int]
    content: tuple[int, int, int, int]  # y0, x0, y1, x1 of the frame's pixels inside the model input


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
    elif f.dtype == np.bool_:
        f = f.astype(np.uint8) * 255
    elif f.dtype != np.uint8:
        if not np.issubdtype(f.dtype, np.number):
            raise UserError(f"frames must be numeric images; got dtype {f.dtype}")
        if np.issubdtype(f.dtype, np.integer):
            f = np.clip(f, 0, 255).astype(np.uint8)
        else:  # floats: [0, 1]
            f = np.clip(np.nan_to_num(f.astype(np.float32)) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    if f.shape[2] == 1:
        f = np.repeat(f, 3, axis=2)
    elif f.shape[2] == 4:
        f = f[..., :3]
    if bgr:
        f = f[..., ::-1]
    return np.ascontiguousarray(f)


def place(frame_hw: tuple[int, int], input_hw: tuple[int, int], letterbox: bool) -> Placement:
    fh, fw = frame_hw
    ih, iw = input_hw
    if not letterbox:
        return Placement((fh, fw), (ih, iw), (0, 0, ih, iw))
    scale = min(ih / fh, iw / fw)
    h, w = max(1, round(fh * scale)), max(1, round(fw * scale))
    y0, x0 = (ih - h) // 2, (iw - w) // 2
    return Placement((fh, fw), (ih, iw), (y0, x0, y0 + h, x0 + w))


def preprocess(rgb: np.ndarray, input_hw: tuple[int, int], mean: tuple[float, float, float],
               std: tuple[float, float, float], letterbox: bool = False) -> tuple[np.ndarray, Placement]:
    """RGB uint8 [h, w, 3] -> normalised float32 [3, H, W] and where the frame went."""
    p = place(rgb.shape[:2], input_hw, letterbox)
    y0, x0, y1, x1 = p.content
    h, w = y1 - y0, x1 - x0
    if rgb.shape[:2] != (h, w):
        shrink = rgb.shape[0] > h or rgb.shape[1] > w
        rgb = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    mean_a, std_a = np.asarray(mean, np.float32), np.asarray(std, np.float32)
    scale = (1.0 / (255.0 * std_a)).astype(np.float32)
    shift = (mean_a / std_a).astype(np.float32)
    out = np.zeros((3, *input_hw), np.float32)  # letterbox padding = the mean colour (0 after normalising)
    out[:, y0:y1, x0:x1] = (rgb.astype(np.float32) * scale - shift).transpose(2, 0, 1)
    return out, p


def resize_normalise(rgb: np.ndarray, size: tuple[int, int], mean: tuple[float, float, float],
                     std: tuple[float, float, float]) -> np.ndarray:
    """RGB uint8 -> float32 [3, H, W], stretched to `size`."""
    return preprocess(rgb, size, mean, std, letterbox=False)[0]


def labels_to_frame(labels: np.ndarray, p: Placement) -> np.ndarray:
    """Model-size labels [H, W] -> the frame's size, undoing the letterbox (nearest neighbour)."""
    y0, x0, y1, x1 = p.content
    crop = labels[y0:y1, x0:x1]
    fh, fw = p.frame_hw
    if crop.shape == (fh, fw):
        return np.ascontiguousarray(crop)
    return cv2.resize(crop, (fw, fh), interpolation=cv2.INTER_NEAREST)


def grid_to_frame(grid: np.ndarray, p: Placement) -> np.ndarray:
    """A per-patch map [rows, cols] (e.g. the pause map) -> the frame's size."""
    up = cv2.resize(grid.astype(np.uint8), (p.input_hw[1], p.input_hw[0]), interpolation=cv2.INTER_NEAREST)
    return labels_to_frame(up, p)
