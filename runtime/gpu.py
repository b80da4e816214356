"""Finding TensorRT, cuda-python and the GPU, with one clear line when any of them is missing."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from paumer_edge import UserError

INSTALL_HINT = ("on a desktop GPU: pip install 'paumer-edge[gpu]'; on a Jetson: JetPack's TensorRT "
                "(python3-libnvinfer) in a venv made with --system-site-packages")


@dataclass(frozen=True)
class GpuInfo:
    index: int
    name: str
    compute_capability: str  # "8.7"
    memory_gib: float


def tensorrt_module() -> ModuleType:
    """The TensorRT Python module, or a clear error (type stubs alone do not count)."""
    try:
        trt = importlib.import_module("tensorrt")
    except ImportError:
        trt = None
    if trt is None or not hasattr(trt, "Builder"):
        raise UserError(f"TensorRT is not installed ({INSTALL_HINT})")
    return trt


def cuda_runtime() -> ModuleType:
    """cuda-python's runtime API module (cuda.bindings.runtime, or cuda.cudart before 12.6)."""
    for name in ("cuda.bindings.runtime", "cuda.cudart"):
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    raise UserError(f"cuda-python is not installed ({INSTALL_HINT})")


def check(cudart: Any, result: Any, what: str) -> Any:
    """Unpack a cuda-python call's (error, value...) tuple; raise a clear error on failure."""
    err, *values = result if isinstance(result, tuple) else (result,)
    if err != cudart.cudaError_t.cudaSuccess:
        name = getattr(err, "name", str(err))
        raise UserError(f"CUDA error in {what}: {name} (is an NVIDIA GPU present and its driver loaded? "
                        "check nvidia-smi)")
    return values[0] if len(values) == 1 else tuple(values)


def gpu_info(cudart: ModuleType, index: int = 0) -> GpuInfo:
    count = check(cudart, cudart.cudaGetDeviceCount(), "cudaGetDeviceCount")
    if count <= index:
        raise UserError(f"no NVIDIA GPU {index}: this machine has {count}")
    props = check(cudart, cudart.cudaGetDeviceProperties(index), "cudaGetDeviceProperties")
    name = props.name.decode(errors="replace") if isinstance(props.name, bytes) else str(props.name)
    return GpuInfo(index, name.rstrip("\x00").strip(), f"{props.major}.{props.minor}",
                   round(props.totalGlobalMem / 2**30, 1))
