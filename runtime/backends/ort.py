"""ONNX Runtime backend (CPU here; CUDA and TensorRT execution providers with onnxruntime-gpu)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from paumer_edge import UserError

from ..bundle import Bundle


class OrtSession:
    def __init__(self, session):  # onnxruntime.InferenceSession
        self._session = session
        self.input_names = [i.name for i in session.get_inputs()]
        self.output_names = [o.name for o in session.get_outputs()]

    def run(self, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        return self._session.run(self.output_names, inputs)


class OrtBackend:
    """Sessions on the given execution providers (default: CPU), one per graph."""

    name = "ort"

    def __init__(self, providers: Sequence[str] = ("CPUExecutionProvider",), threads: int = 0):
        try:
            import onnxruntime as ort
        except ImportError:
            raise UserError("onnxruntime is not installed: pip install onnxruntime "
                            "(or onnxruntime-gpu on an NVIDIA machine)") from None
        available = ort.get_available_providers()
        missing = [p for p in providers if p not in available]
        if missing:
            raise UserError(f"ONNX Runtime here lacks {missing} (it has {available}); "
                            "install onnxruntime-gpu for CUDA/TensorRT")
        self._ort = ort
        self.providers = list(providers)
        self.threads = threads

    def open(self, bundle: Bundle, graph: str) -> OrtSession:
        opts = self._ort.SessionOptions()
        opts.graph_optimization_level = self._ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if self.threads:
            opts.intra_op_num_threads = self.threads
        opts.log_severity_level = 3
        return OrtSession(self._ort.InferenceSession(str(bundle.graph_path(graph)), opts, providers=self.providers))
