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

from paumer_edge.core.errors import FrameError
from paumer_edge.core.knobs import MAX_FRAME_PIXELS  # 16384 x 16384: beyond, a frame is refused, not resized


@dataclass(frozen=True)
class Placement:
    """Where the frame sits inside the model input: scale and padding, to undo it on the labels."""

    frame_hw: tuple[int, int]
    input_hw: tuple[int, int]
    content: tuple[int, int, int, int]  # y0, x0, y1, x1 of the frame's pixels inside the model input




def to_rgb_uint8(frame: np.ndarray, bgr: bool = False) -> np.ndarray:
    """Grayscale, RGB/BGR, RGBA/BGRA frames of any real dtype -> contiguous RGB uint8 [H, W, 3].

    uint8 is taken as is, uint16 by its top 8 bits, other integers clipped to [0, 255], bools as 0/255,
    floats as [0, 1] (clipped; NaN -> 0). Anything else (complex, object, text, empty, too large) is a
    `FrameError` saying what was wrong. A contiguous uint8 RGB frame is returned without a copy.
    """
    try:
        f = np.asarray(frame)
    except (ValueError, TypeError) as e:
        raise FrameError(f"a frame must be an image array (HxW or HxWxC); got {type(frame).__name__} ({e})") from None
    if f.ndim == 2:
        f = f[..., None]
    if f.ndim != 3 or f.shape[2] not in (1, 3, 4):
        raise FrameError(f"a frame must be HxW, HxWx1, HxWx3 or HxWx4; got shape {f.shape}")
    if f.shape[0] < 1 or f.shape[1] < 1:
        raise FrameError(f"empty frame of shape {f.shape}")
    if f.shape[0] * f.shape[1] > MAX_FRAME_PIXELS:
        raise FrameError(f"a frame of {f.shape[1]}x{f.shape[0]} pixels is larger than the {MAX_FRAME_PIXELS >> 20} "
                         "megapixels this runtime takes; downscale it first")
    kind = f.dtype.kind
    if f.dtype == np.uint16:
        f = (f >> 8).astype(np.uint8)
    elif kind == "b":
        f = f.astype(np.uint8) * np.uint8(255)
    elif kind in "iu" and f.dtype != np.uint8:
        info = np.iinfo(f.dtype)
        f = np.clip(f, max(0, int(info.min)), min(255, int(info.max))).astype(np.uint8)
    elif kind == "f":  # [0, 1]; clip first, so inf and huge values never overflow a cast
        f = (np.nan_to_num(np.clip(f, 0.0, 1.0), nan=0.0).astype(np.float32) * 255.0 + 0.5).astype(np.uint8)
    elif f.dtype != np.uint8:
        raise FrameError(f"frames must be numeric images (uint8, uint16, other integers, bool, or float in "
                         f"[0, 1]); got dtype {f.dtype}")
    if f.shape[2] == 1:
        f = np.repeat(f, 3, axis=2)
    elif f.shape[2] == 4:
        f = f[..., :3]
    if bgr:
        f = f[..., ::-1]
    return np.ascontiguousarray(f)


def check_model_input(images: np.ndarray, input_hw: tuple[int, int]) -> None:
    """A batch handed straight to the graphs must be float32 [B, 3, H, W] at the size they were exported for."""
    shape, dtype = getattr(images, "shape", None), getattr(images, "dtype", None)
    h, w = input_hw
    if shape is None or len(shape) != 4 or shape[0] < 1 or tuple(shape[1:]) != (3, h, w) or dtype != np.float32:
        raise FrameError(f"model input of shape {shape} and dtype {dtype} does not fit this bundle: it takes "
                         f"float32 [B, 3, {h}, {w}] (exported at {h}x{w}); pass frames of any size to Pipeline, "
                         f"which resizes them, or re-export with `paumer-edge export --image-size HxW`")


def place(frame_hw: tuple[int, int], input_hw: tuple[int, int], letterbox: bool) -> Placement:
    fh, fw = frame_hw
    ih, iw = input_hw
    if not letterbox:
        return Placement((fh, fw), (ih, iw), (0, 0, ih, iw))
    scale = min(ih / fh, iw / fw)
    h, w = max(1, round(fh * scale)), max(1, round(fw * scale))
    y0, x0 = (ih - h) // 2, (iw - w) // 2
    return Placement((fh, fw), (ih, iw), (y0, x0, y0 + h, x0 + w))


def shrink(rgb: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """Resize to `size_hw` with area averaging when shrinking, fast for any ratio.

    OpenCV's INTER_AREA is fast only for integer ratios (8 ms for 1080p -> 128x256, 1 ms for 360p).
    So: average whole k x k blocks (exact INTER_AREA on the largest k-divisible crop), then finish the
    remaining factor below 2 with a linear warp whose mapping is the exact original-to-output one, so
    the geometry (and the labels mapped back) stays exact.
    """
    h, w = rgb.shape[:2]
    oh, ow = size_hw
    if (h, w) == (oh, ow):
        return rgb
    k = min(h // oh, w // ow)
    if k < 2:
        shrinking = h > oh or w > ow
        return cv2.resize(rgb, (ow, oh), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
    small = cv2.resize(rgb[: h // k * k, : w // k * k], (w // k, h // k), interpolation=cv2.INTER_AREA)
    # output pixel centre (x + 0.5) * w / ow in the frame, / k in the block image, whose pixel centres sit at j + 0.5
    sx, sy = w / (ow * k), h / (oh * k)
    m = np.array([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5]], np.float64)
    return cv2.warpAffine(small, m, (ow, oh), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_REPLICATE)


def preprocess(rgb: np.ndarray, input_hw: tuple[int, int], mean: tuple[float, float, float],
               std: tuple[float, float, float], letterbox: bool = False,
               bgr: bool = False) -> tuple[np.ndarray, Placement]:
    """uint8 [h, w, 3] (RGB, or BGR with bgr=True) -> normalised RGB float32 [3, H, W] and where the frame went.

    Channels are swapped after shrinking, so a BGR camera frame is never copied at full size.
    """
    rgb = to_rgb_uint8(rgb)  # a no-op for uint8 [h, w, 3]; anything else is converted or a FrameError
    p = place((rgb.shape[0], rgb.shape[1]), input_hw, letterbox)
    y0, x0, y1, x1 = p.content
    small = shrink(rgb, (y1 - y0, x1 - x0))
    if bgr:
        small = small[..., ::-1]
    mean_a, std_a = np.asarray(mean, np.float32), np.asarray(std, np.float32)
    scale = (1.0 / (255.0 * std_a)).astype(np.float32)[:, None, None]
    shift = (mean_a / std_a).astype(np.float32)[:, None, None]
    if (y1 - y0, x1 - x0) == tuple(input_hw):  # no padding: normalise straight into the output
        out = np.ascontiguousarray(small.transpose(2, 0, 1), dtype=np.float32)
        out *= scale
        out -= shift
        return out, p
    out = np.zeros((3, *input_hw), np.float32)  # letterbox padding = the mean colour (0 after normalising)
    out[:, y0:y1, x0:x1] = small.transpose(2, 0, 1) * scale - shift
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
