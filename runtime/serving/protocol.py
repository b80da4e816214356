"""What a served request carries and what it gets back: tensor names, types, and the checks (torch-free).

One request holds B >= 1 frames, each either encoded (`image`: JPEG/PNG bytes) or raw (`frame`: uint8
HxWxC, RGB), with optional per-frame `camera_id`, `budget` and `threshold`. It gets back `labels`
(uint8 class per pixel at the frame's size: never float logits, which would dominate transfer time),
`counts` (active patch tokens per stage), `stage_ms` (milliseconds per encoder stage) and `cost` (the
fraction of the encoder's compute spent). Both the PyTriton binding (`paumer-edge serve`) and the
Python-backend model of a generated Triton repository decode requests here, so they refuse the same
things with the same messages.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

import cv2
import numpy as np

from paumer_edge.core.errors import UserError
from paumer_edge.core.pausing import PolicyError, check_budget, check_threshold

from ..preprocess import MAX_FRAME_PIXELS, to_rgb_uint8

# name, numpy dtype, shape without the batch dimension, optional
INPUTS: tuple[tuple[str, type, tuple[int, ...], bool], ...] = (
    ("image", np.bytes_, (1,), True),
    ("frame", np.uint8, (-1, -1, -1), True),
    ("camera_id", np.bytes_, (1,), True),
    ("budget", np.float32, (1,), True),
    ("threshold", np.float32, (1,), True),
)
OUTPUTS: tuple[tuple[str, type, tuple[int, ...]], ...] = (
    ("labels", np.uint8, (-1, -1)),
    ("counts", np.int32, (-1,)),
    ("stage_ms", np.float32, (-1,)),
    ("cost", np.float32, (1,)),
)
CAMERA_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}")
CAMERA_ID_RULE = ("1-128 characters of letters, digits and . _ : / -, starting with a letter or digit "
                  "(e.g. 'dock-3/cam-12')")
MAX_ENCODED_BYTES = 64 << 20


class RequestError(UserError):
    """A request the server refuses (what is wrong and what to send instead); the server goes on serving."""


@dataclass(frozen=True)
class FrameJob:
    """One frame of a request, decoded and checked, with its knobs."""

    frame: np.ndarray  # uint8 [H, W, 3], RGB
    camera_id: str  # "" when the request named no camera (no per-camera state)
    budget: float | None  # None: the server's default
    threshold: float | None


def empty_frame(shape: tuple[int, ...]) -> str:
    return f"input 'frame' is empty (shape {list(shape)}); send a frame with pixels"


def decode_image(data: bytes) -> np.ndarray:
    """JPEG/PNG (any format OpenCV reads) bytes -> RGB uint8 [H, W, 3], or a RequestError."""
    if len(data) == 0:
        raise RequestError("input 'image' is empty: send the bytes of a JPEG or PNG file")
    if len(data) > MAX_ENCODED_BYTES:
        raise RequestError(f"input 'image' is {len(data) >> 20} MiB; send at most {MAX_ENCODED_BYTES >> 20} MiB")
    buf = np.frombuffer(data, np.uint8)
    try:
        bgr = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    except cv2.error:
        bgr = None
    if bgr is None:
        raise RequestError(f"input 'image' ({len(data)} bytes) is not a readable JPEG or PNG (corrupt or truncated?)")
    if bgr.shape[0] * bgr.shape[1] > MAX_FRAME_PIXELS:
        raise RequestError(f"input 'image' is {bgr.shape[1]}x{bgr.shape[0]} pixels; downscale it first")
    return np.ascontiguousarray(bgr[..., ::-1])


def _text(value: object, what: str) -> str:
    if isinstance(value, bytes | np.bytes_):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            raise RequestError(f"input '{what}' is not UTF-8 text") from None
    return str(value)


def _camera(value: object) -> str:
    text = _text(value, "camera_id")
    if not CAMERA_ID.fullmatch(text):
        shown = text if len(text) <= 40 else text[:40] + "..."
        raise RequestError(f"camera_id {shown!r} is not a valid camera id: use {CAMERA_ID_RULE}")
    return text


def _knob(value: np.ndarray | None, i: int, name: str) -> float | None:
    if value is None:
        return None
    v = float(np.asarray(value).reshape(value.shape[0], -1)[i, 0])
    try:
        return check_budget(v) if name == "budget" else check_threshold(v)
    except PolicyError as e:
        raise RequestError(f"input '{name}': {e}") from None


def _per_frame(data: Mapping[str, np.ndarray], name: str, batch: int) -> np.ndarray | None:
    value = data.get(name)
    if value is None:
        return None
    value = np.asarray(value)
    if value.ndim == 0 or value.shape[0] != batch or value.size != batch:
        raise RequestError(f"input '{name}' has shape {list(value.shape)}; send one value per frame: [{batch}, 1]")
    return value


def _frames(data: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    image, frame = data.get("image"), data.get("frame")
    if (image is None) == (frame is None):
        raise RequestError("send exactly one of 'image' (JPEG/PNG bytes) and 'frame' (uint8 HxWxC RGB)")
    if image is not None:
        image = np.asarray(image)
        return [decode_image(_raw_bytes(v)) for v in image.reshape(image.shape[0], -1)[:, 0]]
    frame = np.asarray(frame)
    if frame.dtype != np.uint8:
        raise RequestError(f"input 'frame' has dtype {frame.dtype}; send uint8 pixels (RGB)")
    if frame.ndim != 4 or frame.shape[3] not in (1, 3, 4):
        raise RequestError(f"input 'frame' has shape {list(frame.shape[1:])}; send HxWxC with C = 1, 3 or 4")
    if frame.shape[1] < 1 or frame.shape[2] < 1:
        raise RequestError(empty_frame(frame.shape[1:]))
    try:
        return [to_rgb_uint8(f) for f in frame]
    except UserError as e:
        raise RequestError(f"input 'frame': {e}") from None


def _raw_bytes(value: object) -> bytes:
    if isinstance(value, bytes | np.bytes_):
        return bytes(value)
    raise RequestError(f"input 'image' holds {type(value).__name__}, not bytes: send the encoded file as BYTES")


def decode_request(data: Mapping[str, np.ndarray]) -> list[FrameJob]:
    """The inputs of one request (each with a leading batch dimension) -> one checked job per frame."""
    frames = _frames(data)
    batch = len(frames)
    cams = _per_frame(data, "camera_id", batch)
    budgets = _per_frame(data, "budget", batch)
    thresholds = _per_frame(data, "threshold", batch)
    if len({f.shape[:2] for f in frames}) > 1:
        sizes = ", ".join(f"{f.shape[1]}x{f.shape[0]}" for f in frames)
        raise RequestError(f"the frames of one request must have one size (got {sizes}): labels come back as one "
                           "tensor; send frames of other sizes in their own requests")
    jobs = []
    for i, frame in enumerate(frames):
        cam = "" if cams is None else _camera(cams.reshape(batch, -1)[i, 0])
        jobs.append(FrameJob(frame, cam, _knob(budgets, i, "budget"), _knob(thresholds, i, "threshold")))
    return jobs


def plan_key(job: FrameJob, budget: float, threshold: float | None) -> tuple[float, float | None]:
    """The policy a frame runs at: its own knobs, else the server's (`budget`, `threshold`); both: the stricter wins.

    Frames with the same key and no threshold run as one batch; with a threshold each frame runs alone,
    since in a batch every frame would keep the tokens its most uncertain batch-mate needs."""
    return (job.budget if job.budget is not None else budget, job.threshold if job.threshold is not None else threshold)
