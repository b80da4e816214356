"""A CPU stand-in for the TensorRT 10 Python API (`import tensorrt`), for tests of the code that drives it.

What paumer-edge calls is here, with TensorRT's names, signatures and behaviour: a `Builder` that parses an
ONNX graph (`OnnxParser`), takes precision flags, DLA settings, a timing cache, optimisation profiles and an
INT8 calibrator (driven as TensorRT drives one: `get_batch` until None, then `write_calibration_cache`) and
serialises an engine; a `Runtime` that refuses a plan from another TensorRT version; engines whose execution
contexts take one optimisation profile each, refuse input shapes outside it, need every tensor's address, and
run the graph with ONNX Runtime on the CPU, reading and writing the fake GPU's memory (`fake_cudart`), with
fp16 engines rounding their outputs to half precision (those live in `fake_trt_runtime`). The classes derive
from the `tensorrt-stubs` classes when type-checked, so mypy holds the fakes to TensorRT's real signatures
(tests/test_gpu_fakes.py runs it); the enum values are TensorRT's own (a test reads them from the stubs).

`STATE` records what happened (builds, parses, calibration batches, executions) and lets a test make a parse
or a build fail, or give the device DLA cores.
"""

from __future__ import annotations

import enum
import json
import struct
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import fake_cudart as cudart
import numpy as np

from paumer_edge.runtime.onnx_scan import scan_onnx

if TYPE_CHECKING:  # mypy checks every fake against TensorRT's own classes
    import tensorrt as trt
    from tensorrt import (
        BuilderFlag,
        DataType,
        DeviceType,
        Dims,
        IInt8Calibrator,
        ILogger,
        INetworkDefinition,
        IOptimizationProfile,
        ITimingCache,
        MemoryPoolType,
        NetworkDefinitionCreationFlag,
        TensorIOMode,
    )

    _Builder = trt.Builder
    _IBuilderConfig = trt.IBuilderConfig
    _IHostMemory = trt.IHostMemory
    _IInt8EntropyCalibrator2 = trt.IInt8EntropyCalibrator2
    _Logger = trt.Logger
    _OnnxParser = trt.OnnxParser
else:
    _Builder = _IBuilderConfig = _IHostMemory = _IInt8EntropyCalibrator2 = _Logger = _OnnxParser = object
    IInt8Calibrator = ILogger = INetworkDefinition = object
    IOptimizationProfile = ITimingCache = object

    class Dims(tuple):
        """Behaves like a tuple, as TensorRT's does."""

    class TensorIOMode(enum.IntEnum):
        NONE, INPUT, OUTPUT = 0, 1, 2

    class DataType(enum.IntEnum):
        FLOAT, HALF, INT8, INT32, BOOL, UINT8 = 0, 1, 2, 3, 4, 5
        INT64 = 8

    class BuilderFlag(enum.IntEnum):
        FP16, INT8, GPU_FALLBACK = 0, 1, 3

    class DeviceType(enum.IntEnum):
        GPU, DLA = 0, 1

    class MemoryPoolType(enum.IntEnum):
        WORKSPACE = 0

    class NetworkDefinitionCreationFlag(enum.IntEnum):
        EXPLICIT_BATCH, STRONGLY_TYPED = 0, 1

__version__ = "10.3.0"
MAGIC = b"FAKETRT\0"
NUMPY = {"float32": np.float32, "float16": np.float16, "int8": np.int8, "int32": np.int32, "bool": np.bool_,
         "uint8": np.uint8, "int64": np.int64}
TYPES = {"float32": "FLOAT", "float16": "HALF", "int8": "INT8", "int32": "INT32", "bool": "BOOL", "uint8": "UINT8",
         "int64": "INT64"}


@dataclass
class State:
    """What the fake TensorRT saw, and the failures a test asks of it."""

    dla_cores: int = 0
    fail_parse: set[str] = field(default_factory=set)  # the parser rejects graphs with an output of these names
    fail_build: bool = False
    builds: list[dict[str, Any]] = field(default_factory=list)  # one per engine built: its header
    network_flags: list[int] = field(default_factory=list)
    parsed: list[bytes] = field(default_factory=list)  # the ONNX models given to the parser
    timing_caches_in: list[bytes] = field(default_factory=list)  # what each build started its timing cache from
    calibration_batches: list[dict[str, np.ndarray]] = field(default_factory=list)
    cache_reads: int = 0
    executions: list[tuple[str, int, dict[str, tuple[int, ...]]]] = field(default_factory=list)  # graph, profile


STATE = State()


def nptype(trt_type: DataType) -> type:
    """The numpy type of a TensorRT data type."""
    return {DataType.FLOAT: np.float32, DataType.HALF: np.float16, DataType.INT8: np.int8, DataType.INT32: np.int32,
            DataType.BOOL: np.bool_, DataType.UINT8: np.uint8, DataType.INT64: np.int64}[trt_type]


class _Severity(enum.IntEnum):
    INTERNAL_ERROR, ERROR, WARNING, INFO, VERBOSE = 0, 1, 2, 3, 4


class Logger(_Logger):
    if not TYPE_CHECKING:  # TensorRT's own enum when type-checked
        Severity = _Severity
        WARNING = _Severity.WARNING

    def __init__(self, min_severity: Any = _Severity.WARNING) -> None:
        self.min_severity = min_severity
        self.messages: list[str] = []

    def log(self, severity: Any, msg: str) -> None:
        if severity <= self.min_severity:
            self.messages.append(msg)


class HostMemory(_IHostMemory):
    """A serialised engine or timing cache: a buffer (bytes(plan) works)."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __bytes__(self) -> bytes:
        return self.data

    @property
    def nbytes(self) -> int:
        return len(self.data)


class Network(INetworkDefinition):
    def __init__(self, flags: int) -> None:
        self.creation_flags = flags
        self.onnx = b""
        self.io: list[tuple[str, str, list[int | str]]] = []  # name, "INPUT" / "OUTPUT", shape
        self.dtypes: dict[str, str] = {}

    @property
    def num_inputs(self) -> int:
        return sum(1 for _, mode, _ in self.io if mode == "INPUT")


class OnnxParser(_OnnxParser):
    def __init__(self, network: INetworkDefinition, logger: ILogger) -> None:
        assert isinstance(network, Network)
        self.network = network
        self.errors: list[str] = []

    def parse(self, model: Any, path: str | None = None) -> bool:
        data = bytes(model)
        STATE.parsed.append(data)
        summary = scan_onnx(data)
        if not summary.has_graph or STATE.fail_parse & {o.name for o in summary.outputs}:
            self.errors.append("In node 0 (importModel): INVALID_GRAPH: Assertion failed: the fake parser refuses it")
            return False
        self.network.onnx = data
        for mode, specs in (("INPUT", summary.inputs), ("OUTPUT", summary.outputs)):
            for s in specs:
                self.network.io.append((s.name, mode, list(s.shape)))
                self.network.dtypes[s.name] = s.dtype
        return True

    @property
    def num_errors(self) -> int:
        return len(self.errors)

    def get_error(self, index: int) -> str:
        return self.errors[index]


class OptimizationProfile(IOptimizationProfile):
    def __init__(self) -> None:
        self.shapes: dict[str, list[list[int]]] = {}

    def set_shape(self, input: str, min: Dims, opt: Dims, max: Dims) -> None:  # noqa: A002 (TensorRT's names)
        self.shapes[input] = [list(min), list(opt), list(max)]  # type: ignore[call-overload]


class TimingCache(ITimingCache):
    def __init__(self, data: bytes) -> None:
        self.entries = json.loads(data) if data else []

    def serialize(self) -> HostMemory:
        return HostMemory(json.dumps(self.entries).encode())


class BuilderConfig(_IBuilderConfig):
    def __init__(self) -> None:
        self.flags = 0  # a bit mask, as TensorRT's: 1 << BuilderFlag.FP16 | ...
        self.pools: dict[int, int] = {}
        self.profiles: list[OptimizationProfile] = []
        self.timing_cache: TimingCache | None = None
        self.int8_calibrator = None  # type: ignore[assignment]
        self.default_device_type = DeviceType.GPU
        self.DLA_core = -1

    def set_memory_pool_limit(self, pool: MemoryPoolType, pool_size: int) -> None:
        self.pools[int(pool)] = pool_size

    def set_flag(self, flag: BuilderFlag) -> None:
        self.flags |= 1 << int(flag)

    def create_timing_cache(self, serialized_timing_cache: Any) -> TimingCache:
        data = bytes(serialized_timing_cache)
        STATE.timing_caches_in.append(data)
        return TimingCache(data)

    def set_timing_cache(self, cache: ITimingCache, ignore_mismatch: bool) -> bool:
        assert isinstance(cache, TimingCache)
        self.timing_cache = cache
        return True

    def get_timing_cache(self) -> TimingCache:
        assert self.timing_cache is not None, "get_timing_cache before set_timing_cache"
        return self.timing_cache

    def add_optimization_profile(self, profile: IOptimizationProfile) -> int:
        assert isinstance(profile, OptimizationProfile)
        self.profiles.append(profile)
        return len(self.profiles) - 1


def _calibrate(calibrator: IInt8Calibrator, network: Network, profile: OptimizationProfile) -> dict[str, float]:
    """What TensorRT does with a calibrator: use its cache, or read every batch from the device (at the opt shapes
    of the first profile, the batch size the calibrator's) and write one."""
    cache = calibrator.read_calibration_cache()
    STATE.cache_reads += 1
    if cache:
        return dict(json.loads(bytes(cache)))
    names = [n for n, mode, _ in network.io if mode == "INPUT"]
    batch, ranges = calibrator.get_batch_size(), {n: 0.0 for n in names}
    while (pointers := calibrator.get_batch(names)) is not None:
        seen = {}
        for name, ptr in zip(names, pointers):
            shape = (batch, *profile.shapes[name][1][1:])
            dtype = np.dtype(NUMPY[network.dtypes[name]])
            raw = cudart.DEVICE.read(int(ptr), int(np.prod(shape)) * dtype.itemsize)
            seen[name] = np.frombuffer(raw, dtype).reshape(shape).copy()
            ranges[name] = max(ranges[name], float(np.abs(seen[name]).max(initial=0.0)))
        STATE.calibration_batches.append(seen)
    calibrator.write_calibration_cache(json.dumps(ranges).encode())
    return ranges


class Builder(_Builder):
    def __init__(self, logger: ILogger) -> None:
        self._logger = logger

    @property
    def num_DLA_cores(self) -> int:  # noqa: N802
        return STATE.dla_cores

    def create_network(self, flags: int = 0) -> Network:
        STATE.network_flags.append(flags)
        return Network(flags)

    def create_builder_config(self) -> BuilderConfig:
        return BuilderConfig()

    def create_optimization_profile(self) -> OptimizationProfile:
        return OptimizationProfile()

    def build_serialized_network(self, network: INetworkDefinition, config: _IBuilderConfig) -> HostMemory:
        assert isinstance(network, Network) and isinstance(config, BuilderConfig)
        inputs = [(n, shape) for n, mode, shape in network.io if mode == "INPUT"]
        dynamic = [n for n, shape in inputs if any(not isinstance(d, int) for d in shape)]
        covered = all(all(n in p.shapes for n in dynamic) for p in config.profiles)
        if STATE.fail_build or not network.onnx or not covered or (dynamic and not config.profiles):
            return None  # type: ignore[return-value]  # TensorRT returns None when a build fails
        calibration = None
        if config.flags & (1 << int(BuilderFlag.INT8)) and config.int8_calibrator is not None:
            calibration = _calibrate(config.int8_calibrator, network, config.profiles[0])
        header = {"tensorrt": __version__, "io": [[n, mode, network.dtypes[n]] for n, mode, _ in network.io],
                  "profiles": [p.shapes for p in config.profiles], "flags": config.flags,
                  "strongly_typed": bool(network.creation_flags
                                         & (1 << int(NetworkDefinitionCreationFlag.STRONGLY_TYPED))),
                  "device": int(config.default_device_type), "dla_core": config.DLA_core, "calibration": calibration}
        STATE.builds.append(header)
        if config.timing_cache is not None:
            config.timing_cache.entries.append(len(STATE.builds))
        blob = json.dumps(header).encode()
        return HostMemory(MAGIC + struct.pack("<I", len(blob)) + blob + network.onnx)


class IInt8EntropyCalibrator2(_IInt8EntropyCalibrator2):
    """The base class user calibrators derive from (TensorRT's binding calls the overridden methods)."""

    def __init__(self) -> None:
        pass

    def get_batch_size(self) -> int:
        return 1

    def get_batch(self, names: list[str]) -> list[int]:
        return None  # type: ignore[return-value]  # None ends calibration, as in TensorRT

    def read_calibration_cache(self) -> Any:
        return None

    def write_calibration_cache(self, cache: Any) -> None:
        pass


from fake_trt_runtime import Engine, ExecutionContext, Runtime  # noqa: E402  (the runtime half; it imports this)

__all__ = ["Builder", "BuilderConfig", "BuilderFlag", "DataType", "DeviceType", "Dims", "Engine", "ExecutionContext",
           "HostMemory", "IInt8EntropyCalibrator2", "Logger", "MemoryPoolType", "Network",
           "NetworkDefinitionCreationFlag", "OnnxParser", "OptimizationProfile", "Runtime", "STATE", "TensorIOMode",
           "TimingCache", "nptype"]
