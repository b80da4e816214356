"""A runtime backend whose graph sessions are Triton models, called with BLS from a Python-backend model.

`StagedRunner` runs a bundle's stages through any backend; with this one each stage is an inference
request to the model `<prefix><graph>` of the same server (Business Logic Scripting), so the policy
between stages is the runtime's own. The token buffer passes from one graph model to the next as the
Triton tensor it came back as (renamed through DLPack, not copied); entropies and labels come to numpy.
Outputs are asked for in CPU memory where the Python backend lets a request say so.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from ..bundle import Bundle


class BlsSession:
    def __init__(self, pb: Any, model: str, inputs: list[str], outputs: list[str]):
        self.pb, self.model = pb, model
        self.input_names, self.output_names = inputs, outputs
        memory = getattr(pb, "PreferredMemory", None)
        self._memory = memory(pb.TRITONSERVER_MEMORY_CPU, 0) if memory is not None else None

    def _tensor(self, name: str, value: Any) -> Any:
        if isinstance(value, self.pb.Tensor):
            return self.pb.Tensor.from_dlpack(name, value.to_dlpack())
        return self.pb.Tensor(name, value)

    def run(self, inputs: dict[str, Any], keep: Collection[str] = ()) -> list[Any]:
        extra = {"preferred_memory": self._memory} if self._memory is not None else {}
        request = self.pb.InferenceRequest(model_name=self.model, requested_output_names=self.output_names,
                                           inputs=[self._tensor(n, v) for n, v in inputs.items()], **extra)
        response = request.exec()
        if response.has_error():
            raise self.pb.TritonModelException(f"graph model '{self.model}' failed: {response.error().message()}")
        outs = [self.pb.get_output_tensor_by_name(response, n) for n in self.output_names]
        return [t if n in keep else t.as_numpy() for n, t in zip(self.output_names, outs)]


class BlsBackend:
    """Graph sessions that are BLS calls to the graph models `<prefix><graph>`."""

    name = "triton-bls"

    def __init__(self, pb: Any, prefix: str):
        self.pb, self.prefix = pb, prefix

    def open(self, bundle: Bundle, graph: str) -> BlsSession:
        g = bundle.graphs[graph]
        return BlsSession(self.pb, f"{self.prefix}{graph}", [t.name for t in g.inputs], [t.name for t in g.outputs])

    def describe(self) -> str:
        return f"Triton graph models {self.prefix}* (BLS)"
