"""The runtime half of the fake TensorRT (`fake_tensorrt`): `Runtime`, engines and execution contexts.

An engine runs its ONNX graph with ONNX Runtime on the CPU, reading its inputs from and writing its outputs to
the fake GPU's memory (`fake_cudart`) at the addresses the caller set, as TensorRT's `execute_async_v3` does.
"""

from __future__ import annotations

import json
import struct
from typing import TYPE_CHECKING, Any

import fake_cudart as cudart
import fake_tensorrt as fake
import numpy as np
import onnxruntime as ort
from fake_tensorrt import MAGIC, NUMPY, TYPES, BuilderFlag, DataType, Dims, TensorIOMode

if TYPE_CHECKING:
    import tensorrt as trt
    from tensorrt import ICudaEngine, IExecutionContext, ILogger

    _Runtime = trt.Runtime
else:
    _Runtime = ICudaEngine = IExecutionContext = object


class Runtime(_Runtime):
    def __init__(self, logger: ILogger) -> None:
        self._logger = logger

    def deserialize_cuda_engine(self, serialized_engine: Any) -> Engine:
        data = bytes(serialized_engine)
        if not data.startswith(MAGIC):
            return None  # type: ignore[return-value]  # TensorRT logs an error and returns None
        size = struct.unpack("<I", data[len(MAGIC):len(MAGIC) + 4])[0]
        header = json.loads(data[len(MAGIC) + 4:len(MAGIC) + 4 + size])
        if header["tensorrt"] != fake.__version__:  # "The engine plan file is not compatible with this version"
            return None  # type: ignore[return-value]
        return Engine(header, data[len(MAGIC) + 4 + size:])


class Engine(ICudaEngine):
    def __init__(self, header: dict[str, Any], onnx: bytes) -> None:
        self.header = header
        self.session = ort.InferenceSession(onnx, providers=["CPUExecutionProvider"])
        self.contexts: list[ExecutionContext] = []
        self._shapes: dict[tuple[tuple[str, tuple[int, ...]], ...], dict[str, tuple[int, ...]]] = {}

    @property
    def num_io_tensors(self) -> int:
        return len(self.header["io"])

    def get_tensor_name(self, index: int) -> str:
        return str(self.header["io"][index][0])

    def _io(self, name: str) -> list[str]:
        return next(x for x in self.header["io"] if x[0] == name)

    def get_tensor_mode(self, name: str) -> TensorIOMode:
        return TensorIOMode.INPUT if self._io(name)[1] == "INPUT" else TensorIOMode.OUTPUT

    def get_tensor_dtype(self, name: str) -> DataType:
        return getattr(DataType, TYPES[self._io(name)[2]])  # type: ignore[no-any-return]

    @property
    def num_optimization_profiles(self) -> int:
        return len(self.header["profiles"])

    def get_tensor_profile_shape(self, name: str, profile_index: int) -> list[Dims]:
        return [Dims(s) for s in self.header["profiles"][profile_index][name]]

    def create_execution_context(self, *args: Any, **kwargs: Any) -> ExecutionContext:
        ctx = ExecutionContext(self)
        self.contexts.append(ctx)
        return ctx

    def output_shapes(self, inputs: dict[str, tuple[int, ...]]) -> dict[str, tuple[int, ...]]:
        """The output shapes for these input shapes (TensorRT infers them once every input shape is set)."""
        key = tuple(sorted(inputs.items()))
        if key not in self._shapes:
            feeds: dict[str, np.ndarray] = {n: np.zeros(s, NUMPY[self._io(n)[2]]) for n, s in inputs.items()}
            outs = self.session.run(None, feeds)
            self._shapes[key] = {o.name: tuple(v.shape) for o, v in zip(self.session.get_outputs(), outs)}
        return self._shapes[key]


class ExecutionContext(IExecutionContext):
    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self.profile = 0
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.addresses: dict[str, int] = {}

    @property
    def engine(self) -> Engine:
        return self._engine

    @property
    def active_optimization_profile(self) -> int:
        return self.profile

    def set_optimization_profile_async(self, profile_index: int, stream_handle: int) -> bool:
        taken = {c.profile for c in self.engine.contexts if c is not self}
        if not 0 <= profile_index < max(1, self.engine.num_optimization_profiles) or profile_index in taken:
            return False  # TensorRT: out of range, or in use by another context
        int(stream_handle)
        self.profile = profile_index
        return True

    def set_input_shape(self, name: str, shape: Any) -> bool:
        shape = tuple(int(d) for d in shape)
        if self.engine.header["profiles"]:
            lo, _, hi = self.engine.header["profiles"][self.profile][name]
            if len(shape) != len(lo) or any(not a <= d <= b for a, d, b in zip(lo, shape, hi)):
                return False  # "Supplied binding dimension ... is outside the profile's [min, max]"
        self.shapes[name] = shape
        return True

    def set_tensor_address(self, name: str, memory: int) -> bool:
        self.addresses[name] = int(memory)
        return True

    def get_tensor_shape(self, name: str) -> Dims:
        if self.engine.get_tensor_mode(name) == TensorIOMode.INPUT:
            return Dims(list(self.shapes[name]))
        return Dims(list(self.engine.output_shapes(self._input_shapes())[name]))

    def _input_shapes(self) -> dict[str, tuple[int, ...]]:
        names = [n for n, mode, _ in self.engine.header["io"] if mode == "INPUT"]
        return {n: self.shapes[n] for n in names}

    def execute_async_v3(self, stream_handle: int) -> bool:
        int(stream_handle)
        io = self.engine.header["io"]
        unset = [n for n, mode, _ in io if n not in self.addresses or (mode == "INPUT" and n not in self.shapes)]
        if unset:
            return False  # TensorRT: a tensor without a shape or an address
        feeds: dict[str, np.ndarray] = {}
        for name, mode, dtype in io:
            if mode == "INPUT":
                count = int(np.prod(self.shapes[name])) * np.dtype(NUMPY[dtype]).itemsize
                raw = cudart.DEVICE.read(self.addresses[name], count)
                feeds[name] = np.frombuffer(raw, NUMPY[dtype]).reshape(self.shapes[name])
        outs = self.engine.session.run(None, feeds)
        header = self.engine.header
        half = bool(header["flags"] & (1 << int(BuilderFlag.FP16))) and not header["strongly_typed"]
        for o, value in zip(self.engine.session.get_outputs(), outs):
            if half and value.dtype == np.float32:
                value = value.astype(np.float16).astype(np.float32)
            cudart.DEVICE.write(self.addresses[o.name], np.ascontiguousarray(value).tobytes())
        fake.STATE.executions.append((self.engine.session.get_inputs()[0].name, self.profile, dict(self.shapes)))
        return True
