"""Serving on NVIDIA Triton Inference Server (torch-free; needs the `serve` extra: nvidia-pytriton, tritonclient).

- `PipelineServer` / `ServeConfig`: a bundle behind Triton via PyTriton (`paumer-edge serve`).
- `write_repository`: a Triton model repository (Python-backend BLS model + stage graphs + the bundle) for
  a tritonserver of your own (`paumer-edge triton`).
- `SegmentClient`: send frames, get labels.
- `TritonServerProcess`: the tritonserver of the nvidia-pytriton wheel on a repository, on 127.0.0.1.

Requests and responses are defined once, in `protocol.py`.
"""

from .cameras import CameraRegistry, CameraState
from .client import SegmentClient, ServedRequestError, ServedResult
from .protocol import RequestError
from .repository import RepositoryOptions, write_repository
from .server import PipelineServer, ServeConfig
from .tritonserver import ServingError, TritonServerProcess

__all__ = ["CameraRegistry", "CameraState", "PipelineServer", "RequestError", "SegmentClient", "ServeConfig",
           "ServedRequestError", "ServedResult", "ServingError", "TritonServerProcess", "RepositoryOptions",
           "write_repository"]
