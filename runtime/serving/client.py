"""A client for a served paumer-edge model (`paumer-edge serve`, or a generated Triton repository).

    from paumer_edge.runtime.serving import SegmentClient
    with SegmentClient("grpc://127.0.0.1:8001") as client:          # or http://127.0.0.1:8000
        served = client.segment(frame, camera_id="dock-3/cam-12", budget=0.5)   # RGB uint8 HxWx3
        served.labels                                                 # [H, W] uint8 class per pixel
        client.segment(open("f.jpg", "rb").read(), camera_id="cam-1")  # or JPEG/PNG bytes

Plain `tritonclient` requests work as well: inputs `image` (BYTES [B, 1]) or `frame` (UINT8 [B, H, W, C]),
optional `camera_id` (BYTES [B, 1]), `budget` and `threshold` (FP32 [B, 1]); outputs `labels`,
`counts`, `stage_ms`, `cost` (see `protocol.py`). A refused request raises `ServedRequestError` with the
server's reason; a request refused only because it shared a batch with a refused one is sent again.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from paumer_edge.core.errors import UserError

from .binding import BATCH_MATE
from .protocol import empty_frame
from .tritonserver import INSTALL_HINT, ServingError


class ServedRequestError(UserError):
    """The server refused a request: the message is the server's reason (what to send instead)."""


@dataclass
class ServedResult:
    labels: np.ndarray  # uint8 [H, W] at the frame's size
    counts: list[int]  # active patch tokens per encoder stage
    stage_ms: list[float]
    cost: float  # fraction of the full encoder's compute spent


def reason(message: str) -> str:
    """The server's one-line reason out of a Triton error (PyTriton wraps it in tracebacks: take its line)."""
    lines = [t.strip() for t in message.strip().splitlines() if t.strip()]
    for line in reversed(lines):
        if "RequestError: " in line:
            return line.split("RequestError: ", 1)[1]
    if any(t.startswith("Traceback") or "Traceback (most recent" in t for t in lines):
        raised = [t for t in lines if re.match(r"^[\w.]+(Error|Exception): ", t)]
        if raised:
            return f"the server failed on this request: {raised[-1]}"
    text = " ".join(lines) if lines else message
    return re.sub(r"^\[request id: [^\]]*\] ", "", text)


class SegmentClient:
    """Send frames (RGB arrays or encoded bytes) to a served model over gRPC or HTTP; get labels back."""

    def __init__(self, url: str = "grpc://127.0.0.1:8001", model: str = "paumer", timeout_s: float = 60.0,
                 retries: int = 2):
        self.model, self.timeout_s, self.retries = model, timeout_s, retries
        scheme, _, address = url.partition("://")
        if not address:
            scheme, address = "grpc", url
        if scheme not in ("grpc", "http"):
            raise ServingError(f"server URL '{url}': use grpc://HOST:PORT or http://HOST:PORT")
        try:
            if scheme == "grpc":
                import tritonclient.grpc as tc
            else:
                import tritonclient.http as tc  # type: ignore[no-redef]
        except ImportError:
            raise ServingError(f"tritonclient is not installed here: {INSTALL_HINT}") from None
        self._tc: Any = tc
        self.client: Any = tc.InferenceServerClient(address)
        self.scheme = scheme

    def ready(self) -> bool:
        try:
            return bool(self.client.is_model_ready(self.model))
        except Exception:  # noqa: BLE001  (a server not up yet answers with connection errors of many kinds)
            return False

    def inputs(self, frames: np.ndarray | bytes | list[bytes], camera_id: str | None = None,
               budget: float | None = None, threshold: float | None = None) -> list[Any]:
        """The request's input tensors for one frame (array or bytes) or a batch (array [B,H,W,C] or list of bytes)."""
        tc = self._tc
        if isinstance(frames, bytes | list):
            blobs = [frames] if isinstance(frames, bytes) else list(frames)
            data = np.array([[b] for b in blobs], dtype=np.object_)
            tensors = [("image", data, "BYTES")]
        else:
            arr = np.asarray(frames)
            data = arr[None] if arr.ndim in (2, 3) else arr
            if data.size == 0:  # refused here: PyTriton cannot even pass an empty tensor on
                raise ServedRequestError(empty_frame(data.shape[1:]))
            if data.ndim == 3:
                data = data[..., None]
            tensors = [("frame", data, str(tc.np_to_triton_dtype(data.dtype)))]
        n = len(data)
        if camera_id is not None:
            tensors.append(("camera_id", np.array([[camera_id.encode()]] * n, dtype=np.object_), "BYTES"))
        for name, value in (("budget", budget), ("threshold", threshold)):
            if value is not None:
                tensors.append((name, np.full((n, 1), value, np.float32), "FP32"))
        out = []
        for name, array, dtype in tensors:
            t = tc.InferInput(name, list(array.shape), dtype)
            t.set_data_from_numpy(array)
            out.append(t)
        return out

    def infer(self, inputs: list[Any]) -> dict[str, np.ndarray]:
        """Send prepared inputs; the outputs by name. Resends a request failed only by a refused batch-mate."""
        tc = self._tc
        for attempt in range(self.retries + 1):
            try:
                kwargs = {"client_timeout": self.timeout_s} if self.scheme == "grpc" else {}
                result = self.client.infer(self.model, inputs, **kwargs)
                return {name: result.as_numpy(name) for name in ("labels", "counts", "stage_ms", "cost")}
            except tc.InferenceServerException as e:
                text = e.message() or str(e)
                if BATCH_MATE in text and attempt < self.retries:
                    continue  # a bad request sent again comes back alone, with its own reason
                raise ServedRequestError(reason(text)) from None
        raise AssertionError("unreachable")

    def segment(self, frame: np.ndarray | bytes, camera_id: str | None = None, budget: float | None = None,
                threshold: float | None = None) -> ServedResult:
        out = self.infer(self.inputs(frame, camera_id, budget, threshold))
        return ServedResult(out["labels"][0], [int(c) for c in out["counts"][0]],
                            [float(t) for t in out["stage_ms"][0]], float(out["cost"][0, 0]))

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> SegmentClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
