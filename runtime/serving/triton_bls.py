"""The BLS model of a generated Triton repository (Python backend): requests in, labels out.

Per call: decode and check every request (`protocol.py`; a refused request gets its own error
response, the others go on), claim the cameras named, run the frames grouped by plan through the
staged graphs with the shared pausing policy (`batch.run_jobs` over a `StagedRunner` whose sessions
are the graph models, `bls.py`), and answer each request. Budgets are fractions of the bundle's MAC
cost model (the same on every device).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from paumer_edge.core.errors import UserError
from paumer_edge.core.pausing import CostModel

from ..bundle import Bundle, ModelInfo, load_bundle
from ..staged import StagedRunner
from .batch import run_jobs
from .binding import pack
from .bls import BlsBackend
from .cameras import CameraRegistry
from .protocol import FrameJob, RequestError, decode_request


@dataclass
class BlsSegmenter:
    bundle: Bundle
    runner: StagedRunner
    cost: CostModel
    letterbox: bool = False

    @property
    def info(self) -> ModelInfo:
        return self.bundle.model


def _parameters(config: dict[str, Any]) -> dict[str, str]:
    return {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}


def _inputs(pb: Any, request: Any) -> dict[str, Any]:
    names = ("image", "frame", "camera_id", "budget", "threshold")
    tensors = {n: pb.get_input_tensor_by_name(request, n) for n in names}
    return {n: t.as_numpy() for n, t in tensors.items() if t is not None}


class TritonPythonModel:
    def initialize(self, args: dict[str, Any]) -> None:
        import triton_python_backend_utils as pb

        self.pb = pb
        config = json.loads(args["model_config"])
        params = _parameters(config)
        here = Path(args["model_repository"])
        folder = here / args["model_version"] / "bundle"
        if not folder.is_dir():  # older backends give the repository's root
            folder = here / config["name"] / args["model_version"] / "bundle"
        bundle = load_bundle(folder)
        runner = StagedRunner(bundle, BlsBackend(pb, params.get("graph_prefix", f"{config['name']}_")))
        self.model = BlsSegmenter(bundle, runner, bundle.cost)
        self.budget = float(params.get("budget") or 1.0)
        self.threshold = float(params["threshold"]) if params.get("threshold") else None
        self.cameras = CameraRegistry()

    def execute(self, requests: list[Any]) -> list[Any]:
        pb = self.pb
        responses: list[Any] = [None] * len(requests)
        decoded: list[tuple[int, list[FrameJob]]] = []
        for i, request in enumerate(requests):
            try:
                decoded.append((i, decode_request(_inputs(pb, request))))
            except RequestError as e:  # this request only; its batch-mates go on
                responses[i] = pb.InferenceResponse(error=pb.TritonError(str(e)))
        jobs = [job for _, request_jobs in decoded for job in request_jobs]
        try:
            with self.cameras.claim(job.camera_id for job in jobs):
                outputs = run_jobs(self.model, jobs, self.budget, self.threshold)
        except (UserError, pb.TritonModelException) as e:
            for i, _ in decoded:
                responses[i] = pb.InferenceResponse(error=pb.TritonError(str(e)))
            return responses
        start = 0
        for i, request_jobs in decoded:
            tensors = pack(outputs[start:start + len(request_jobs)])
            responses[i] = pb.InferenceResponse(output_tensors=[pb.Tensor(n, v) for n, v in tensors.items()])
            start += len(request_jobs)
        return responses
