"""One staged graph as a Triton Python-backend model, run by ONNX Runtime in the backend's process.

For servers without Triton's onnxruntime backend (the tritonserver of the nvidia-pytriton wheel has
only the Python backend); on NGC containers the repository's graph models use the onnxruntime backend
instead. The session is set up as the runtime's CPU/CUDA ONNX Runtime backend sets up its own.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..backends.ort import import_ort


class TritonPythonModel:
    def initialize(self, args: dict[str, Any]) -> None:
        import triton_python_backend_utils as pb

        self.pb = pb
        config = json.loads(args["model_config"])
        device = config.get("parameters", {}).get("device", {}).get("string_value", "cpu")
        here = Path(args["model_repository"])
        path = here / args["model_version"] / "model.onnx"
        if not path.is_file():
            path = here / config["name"] / args["model_version"] / "model.onnx"
        ort = import_ort()
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        providers = ["CPUExecutionProvider"]
        if device == "gpu" and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        self.session = ort.InferenceSession(str(path), opts, providers=providers)
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.outputs = [o.name for o in self.session.get_outputs()]

    def execute(self, requests: list[Any]) -> list[Any]:
        pb = self.pb
        responses = []
        for request in requests:
            feeds = {n: pb.get_input_tensor_by_name(request, n).as_numpy() for n in self.inputs}
            try:
                outs = self.session.run(self.outputs, feeds)
            except Exception as e:  # noqa: BLE001  (ONNX Runtime's errors derive from Exception only)
                responses.append(pb.InferenceResponse(error=pb.TritonError(f"{type(e).__name__}: {e}")))
                continue
            responses.append(pb.InferenceResponse(output_tensors=[pb.Tensor(n, v) for n, v in zip(self.outputs, outs)]))
        return responses
