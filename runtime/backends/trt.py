"""Native TensorRT backend: the bundle's engines, device memory and a stream through cuda-python,
`set_input_shape` per call, `execute_async_v3`.

Engines are only loaded when their manifest entry matches the installed TensorRT version and this GPU
and the file's sha256 matches; otherwise the error says how to rebuild them.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from paumer_edge import UserError
from paumer_edge.core.contract import EngineEntry
from paumer_edge.core.names import ACTIVE

from ..bundle import Bundle, confined, sha256_file
from ..gpu import GpuInfo, check, cuda_runtime, gpu_info, tensorrt_module


def find_engine(bundle: Bundle, graph: str, precision: str | None, trt_version: str, gpu: GpuInfo) -> EngineEntry:
    """The manifest entry of an engine for `graph` that fits this TensorRT and GPU, or a clear error."""
    entries = [e for e in bundle.engines if e.graph == graph and (not precision or e.precision == precision)]
    build = f"`paumer-edge build {bundle.path}" + (f" --{precision}`" if precision in ("fp16", "int8") else "`")
    if not entries:
        raise UserError(f"bundle '{bundle.path}' has no {f'{precision} ' if precision else ''}TensorRT engine for "
                        f"{graph}; build them with {build}")
    sha = bundle.graphs[graph].sha256
    fits = [e for e in entries if e.tensorrt == trt_version and e.gpu.name == gpu.name
            and e.gpu.compute_capability == gpu.compute_capability]
    if not fits:
        built = ", ".join(sorted({f"{e.gpu.name} (sm {e.gpu.compute_capability}) / TensorRT {e.tensorrt}"
                                  for e in entries}))
        raise UserError(f"the {graph} engine was built for {built}, not this {gpu.name} (sm {gpu.compute_capability}) "
                        f"/ TensorRT {trt_version}; rebuild with {build}")
    current = [e for e in fits if e.graph_sha256 == sha]
    if not current:
        raise UserError(f"the {graph} engine was built from another version of {bundle.graphs[graph].file} (the graph "
                        f"changed since); rebuild with {build}")
    return current[-1]


@dataclass(frozen=True)
class DeviceTensor:
    """A tensor left in device memory by one engine for the next (valid until that session runs again)."""

    ptr: int
    shape: tuple[int, ...]
    dtype: np.dtype


class TrtSession:
    """One engine, one execution context per optimisation profile, device buffers grown on demand."""

    def __init__(self, trt: Any, cudart: Any, engine: Any, stream: Any, profiles: list[dict[str, Any]]):
        self.trt, self.cudart, self.engine, self.stream = trt, cudart, engine, stream
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        self.input_names = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.output_names = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        self.contexts = []
        for i in range(max(1, engine.num_optimization_profiles)):
            ctx = engine.create_execution_context()
            ctx.set_optimization_profile_async(i, stream)
            self.contexts.append(ctx)
        # opt token count of each profile, to pick the context tuned nearest to the current n
        self.opt_n = [p[ACTIVE][1][1] if ACTIVE in p else 0 for p in profiles] or [0]
        self.buffers: dict[str, tuple[int, int]] = {}

    def _device(self, key: str, nbytes: int) -> int:
        ptr, size = self.buffers.get(key, (0, 0))
        if size < nbytes:
            if ptr:
                check(self.cudart, self.cudart.cudaFree(ptr), "cudaFree")
            ptr = int(check(self.cudart, self.cudart.cudaMalloc(max(nbytes, 1)), "cudaMalloc"))
            self.buffers[key] = (ptr, nbytes)
        return ptr

    def run(self, inputs: dict[str, Any], keep: Collection[str] = ()) -> list[Any]:
        cu, trt = self.cudart, self.trt
        index = 0
        if ACTIVE in inputs and len(self.contexts) > 1:
            n = inputs[ACTIVE].shape[1]
            index = int(np.argmin([abs(n - o) for o in self.opt_n]))
        ctx = self.contexts[index]
        h2d, d2h = cu.cudaMemcpyKind.cudaMemcpyHostToDevice, cu.cudaMemcpyKind.cudaMemcpyDeviceToHost
        for name in self.input_names:
            value = inputs[name]
            if isinstance(value, DeviceTensor):  # already on the device: hand over the pointer
                ok = ctx.set_input_shape(name, value.shape)
                ctx.set_tensor_address(name, value.ptr)
            else:
                arr = np.ascontiguousarray(value, dtype=trt.nptype(self.engine.get_tensor_dtype(name)))
                ok = ctx.set_input_shape(name, arr.shape)
                ptr = self._device(f"{index}:{name}", arr.nbytes)
                check(cu, cu.cudaMemcpyAsync(ptr, arr.ctypes.data, arr.nbytes, h2d, self.stream), "cudaMemcpyAsync")
                ctx.set_tensor_address(name, ptr)
            if not ok:
                raise UserError(f"input {name} of shape {tuple(value.shape)} is outside the engine's profile")
        outputs: list[tuple[str, tuple[int, ...], np.dtype, int]] = []
        for name in self.output_names:
            shape = tuple(ctx.get_tensor_shape(name))
            dtype = np.dtype(trt.nptype(self.engine.get_tensor_dtype(name)))
            ptr = self._device(f"{index}:{name}", int(np.prod(shape)) * dtype.itemsize)
            ctx.set_tensor_address(name, ptr)
            outputs.append((name, shape, dtype, ptr))
        if not ctx.execute_async_v3(self.stream):
            raise UserError("TensorRT execution failed (see the TensorRT log)")
        results: list[Any] = []
        for name, shape, dtype, ptr in outputs:
            if name in keep:
                results.append(DeviceTensor(ptr, shape, dtype))
            else:
                host = np.empty(shape, dtype)
                check(cu, cu.cudaMemcpyAsync(host.ctypes.data, ptr, host.nbytes, d2h, self.stream), "cudaMemcpyAsync")
                results.append(host)
        check(cu, cu.cudaStreamSynchronize(self.stream), "cudaStreamSynchronize")
        return results

    def __del__(self) -> None:
        for ptr, _ in getattr(self, "buffers", {}).values():
            self.cudart.cudaFree(ptr)


class TrtBackend:
    """Sessions over a bundle's prebuilt engines for this GPU and TensorRT version."""

    name = "trt"

    def describe(self) -> str:
        return f"trt (TensorRT {self.trt.__version__} on {self.gpu.name}, {self.precision or 'any'} engines)"

    def __init__(self, precision: str | None = None, device: int = 0):
        self.trt = tensorrt_module()
        self.cudart = cuda_runtime()
        check(self.cudart, self.cudart.cudaSetDevice(device), "cudaSetDevice")
        self.gpu = gpu_info(self.cudart, device)
        self.precision = precision
        self.logger = self.trt.Logger(self.trt.Logger.WARNING)
        self.runtime = self.trt.Runtime(self.logger)
        self.stream = check(self.cudart, self.cudart.cudaStreamCreate(), "cudaStreamCreate")

    def open(self, bundle: Bundle, graph: str) -> TrtSession:
        entry = find_engine(bundle, graph, self.precision, self.trt.__version__, self.gpu)
        path = confined(Path(bundle.path), entry.file, "engine file")
        if not path.is_file() or sha256_file(path) != entry.sha256:
            raise UserError(f"engine file {entry.file} is missing or does not match its sha256; "
                            f"rebuild with `paumer-edge build {bundle.path}`")
        engine = self.runtime.deserialize_cuda_engine(path.read_bytes())
        if engine is None:
            raise UserError(f"TensorRT could not load {entry.file}; rebuild with `paumer-edge build {bundle.path}`")
        return TrtSession(self.trt, self.cudart, engine, self.stream, list(entry.profiles))
