"""INT8 calibration data for every graph of a bundle (TensorRT 10's entropy calibrator).

Stage k > 0 is calibrated on what it really sees: the token buffers and active indices that the
staged pipeline produces from the calibration images at the expected budget (run with ONNX Runtime
on the CPU), so activation ranges match deployment.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from paumer_edge import UserError
from paumer_edge.core.atomic import write_bytes_atomic
from paumer_edge.core.imread import imread
from paumer_edge.core.names import FULL, IMAGE
from paumer_edge.core.pausing import Pauser, PausingPolicy
from paumer_edge.runtime.backends import OrtBackend
from paumer_edge.runtime.bundle import Bundle
from paumer_edge.runtime.gpu import check, cuda_runtime
from paumer_edge.runtime.preprocess import resize_normalise, to_rgb_uint8
from paumer_edge.runtime.staged import StagedRunner

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


class CalibrationData:
    def __init__(self, bundle: Bundle, folder: str | Path, count: int, budget: float):
        files = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)[:count]
        if not files:
            raise UserError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in calibration folder '{folder}'")
        m = bundle.model
        self.inputs: dict[str, list[dict[str, np.ndarray]]] = {}
        runner = StagedRunner(bundle, OrtBackend())  # host copies of what each stage sees, at the budget
        for f in files:
            frame = imread(f)
            if frame is None:
                raise UserError(f"calibration image '{f}' cannot be read")
            x = resize_normalise(to_rgb_uint8(frame, bgr=frame.ndim == 3), m.input_size, m.mean, m.std)[None]
            self._add(FULL, {IMAGE: x}, [])
            runner.forward(x, Pauser(bundle.cost, PausingPolicy(budget)), observe=self._add)

    def _add(self, graph: str, feeds: dict[str, np.ndarray], outputs: list) -> None:
        self.inputs.setdefault(graph, []).append({k: np.ascontiguousarray(v) for k, v in feeds.items()})

    def calibrator(self, trt_mod: Any, graph: str, cache: Path) -> Any:
        return make_calibrator(trt_mod, self.inputs[graph], cache)


def make_calibrator(trt_mod: Any, batches: list[dict[str, np.ndarray]], cache: Path) -> Any:
    """An IInt8EntropyCalibrator2 feeding `batches` through device memory, caching its table at `cache`."""
    cudart = cuda_runtime()

    class EntropyCalibrator(trt_mod.IInt8EntropyCalibrator2):  # type: ignore[name-defined,misc]
        def __init__(self) -> None:
            trt_mod.IInt8EntropyCalibrator2.__init__(self)
            self.index = 0
            self.device: dict[str, tuple[int, int]] = {}  # name -> (pointer, bytes)

        def get_batch_size(self) -> int:
            return int(next(iter(batches[0].values())).shape[0])

        def get_batch(self, names: list[str]) -> list[int] | None:
            if self.index >= len(batches):
                return None
            feeds = batches[self.index]
            self.index += 1
            pointers = []
            for name in names:
                arr = feeds[name]
                ptr, size = self.device.get(name, (0, 0))
                if size < arr.nbytes:
                    if ptr:
                        check(cudart, cudart.cudaFree(ptr), "cudaFree")
                    ptr = int(check(cudart, cudart.cudaMalloc(arr.nbytes), "cudaMalloc"))
                    self.device[name] = (ptr, arr.nbytes)
                check(cudart, cudart.cudaMemcpy(ptr, arr.ctypes.data, arr.nbytes,
                                                cudart.cudaMemcpyKind.cudaMemcpyHostToDevice), "cudaMemcpy")
                pointers.append(ptr)
            return pointers

        def read_calibration_cache(self) -> bytes | None:
            return cache.read_bytes() if cache.exists() else None

        def write_calibration_cache(self, data: Any) -> None:
            write_bytes_atomic(cache, bytes(data))

        def __del__(self) -> None:
            for ptr, _ in self.device.values():
                cudart.cudaFree(ptr)

    return EntropyCalibrator()
