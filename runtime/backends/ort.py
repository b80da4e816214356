"""ONNX Runtime backend: the CPU, and the CUDA and TensorRT execution providers of onnxruntime-gpu.

On a GPU the sessions use I/O binding, so the token buffer stays in device memory from one stage to
the next; only entropies, indices and labels cross to the host. The TensorRT EP gets the profile
shapes for `n` from the manifest and keeps its engine cache inside the bundle.
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path
from typing import Any

import numpy as np

from paumer_edge import UserError
from paumer_edge.core.errors import BundleError

from ..bundle import Bundle
from ..profiles import profile_shapes

KINDS = {
    "ort": ["CPUExecutionProvider"],
    "ort-cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "ort-trt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
}


def import_ort() -> Any:
    try:
        import onnxruntime as ort
    except ImportError:
        raise UserError("onnxruntime is not installed: pip install 'paumer-edge[cpu]' "
                        "(or 'paumer-edge[gpu]' for onnxruntime-gpu on an NVIDIA machine)") from None
    return ort


_shared: dict[str, bool] = {}


def shared_arena(ort: Any) -> bool:
    """One CPU memory arena for all our sessions (registered once per process; others are unaffected).

    The stages run one after another; with an arena per session every stage works in buffers that are
    cold in the cache. Returns False where this ONNX Runtime cannot register one.
    """
    if "arena" not in _shared:
        try:
            info = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT)
            ort.create_and_register_allocator(info, ort.OrtArenaCfg(0, -1, -1, -1))
            _shared["arena"] = True
        except Exception:  # older or differently built ONNX Runtime
            _shared["arena"] = False
    return _shared["arena"]


def shared_thread_pool(threads: int) -> bool:
    """One intra-op thread pool for all our sessions: the fastest way to run stages back to back.

    Process-wide and irreversible: afterwards ONNX Runtime refuses sessions that ask for their own pool
    (the default), so this is opt-in for embedding (`Pipeline(..., shared_threads=True)`) and on for the
    CLI, which owns its process. Must happen before the first session in the process is created.
    """
    if "pool" not in _shared:
        try:
            from onnxruntime.capi import _pybind_state

            _pybind_state.set_global_thread_pool_sizes(threads, 1)
            _shared["pool"] = True
        except Exception:  # too late (sessions exist) or not supported
            _shared["pool"] = False
    return _shared["pool"]


def uses_shared_pool() -> bool:
    """Whether this process runs ONNX Runtime on the shared thread pool (then it accepts no session with a pool of
    its own, such as the ones ONNX Runtime's quantization tools create)."""
    return bool(_shared.get("pool"))


class OrtSession:
    def __init__(self, ort: Any, session: Any, device: str, device_id: int):
        self._ort, self._session = ort, session
        self.device, self.device_id = device, device_id
        self.input_names = [i.name for i in session.get_inputs()]
        self.output_names = [o.name for o in session.get_outputs()]

    def run(self, inputs: dict[str, Any], keep: Collection[str] = ()) -> list[Any]:
        if self.device == "cpu":  # numpy in, numpy out: nothing to bind
            return self._session.run(self.output_names, inputs)
        io = self._session.io_binding()
        for name, value in inputs.items():
            if isinstance(value, self._ort.OrtValue):
                io.bind_ortvalue_input(name, value)
            else:
                io.bind_cpu_input(name, np.ascontiguousarray(value))
        for name in self.output_names:
            io.bind_output(name, self.device if name in keep else "cpu", self.device_id if name in keep else 0)
        self._session.run_with_iobinding(io)
        return [v if name in keep else v.numpy() for name, v in zip(self.output_names, io.get_outputs())]


class OrtBackend:
    """ONNX Runtime sessions on one kind of device: `ort` (CPU), `ort-cuda` or `ort-trt`."""

    def __init__(self, kind: str = "ort", threads: int = 0, device_id: int = 0, fp16: bool = False,
                 budgets: tuple[float, ...] = (0.5,), shared_threads: bool = False, int8: bool = False):
        if kind not in KINDS:
            raise UserError(f"unknown ONNX Runtime backend '{kind}'; use one of {', '.join(KINDS)}")
        ort = import_ort()
        available = ort.get_available_providers()
        if KINDS[kind][0] not in available:
            raise UserError(f"backend '{kind}' needs ONNX Runtime's {KINDS[kind][0]}, this install has "
                            f"{', '.join(available)}; install onnxruntime-gpu (pip install 'paumer-edge[gpu]')")
        self._ort = ort
        self.name = kind
        self.threads, self.device_id, self.fp16, self.budgets = threads, device_id, fp16, budgets
        self.int8 = int8  # the graphs are Q/DQ (the bundle's int8 variant): the TensorRT EP builds them in INT8
        self.shared_threads = shared_threads
        self.device = "cpu" if kind == "ort" else "cuda"

    def describe(self) -> str:
        return f"{self.name} (ONNX Runtime {self._ort.__version__}, {KINDS[self.name][0]})"

    def _providers(self, bundle: Bundle, graph: str) -> list[Any]:
        if self.name == "ort":
            return ["CPUExecutionProvider"]
        cuda = ("CUDAExecutionProvider", {"device_id": self.device_id})
        if self.name == "ort-cuda":
            return [cuda, "CPUExecutionProvider"]
        shapes = profile_shapes(bundle, graph, self.budgets)[0]

        def fmt(i: int) -> str:
            return ",".join(f"{name}:{'x'.join(str(d) for d in s[i])}" for name, s in shapes.items())

        cache = Path(bundle.path) / "engines" / "ort-trt"
        cache.mkdir(parents=True, exist_ok=True)
        trt = ("TensorrtExecutionProvider", {
            "device_id": self.device_id, "trt_fp16_enable": self.fp16 or self.int8, "trt_int8_enable": self.int8,
            "trt_engine_cache_enable": True, "trt_engine_cache_path": str(cache),
            "trt_timing_cache_enable": True, "trt_timing_cache_path": str(cache),
            "trt_profile_min_shapes": fmt(0), "trt_profile_opt_shapes": fmt(1), "trt_profile_max_shapes": fmt(2),
        })
        return [trt, cuda, "CPUExecutionProvider"]

    def open(self, bundle: Bundle, graph: str) -> OrtSession:
        opts = self._ort.SessionOptions()
        opts.graph_optimization_level = self._ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        if self.device == "cpu":
            if shared_arena(self._ort):
                opts.add_session_config_entry("session.use_env_allocators", "1")
            # once the process has the shared pool, ONNX Runtime accepts no other kind of session
            if (self.shared_threads and shared_thread_pool(self.threads)) or _shared.get("pool"):
                opts.use_per_session_threads = False
            else:
                if self.threads:
                    opts.intra_op_num_threads = self.threads
                # sessions run in turn: idle pools must not spin on the cores the next one needs
                opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            session = self._ort.InferenceSession(str(bundle.graph_path(graph)), opts,
                                                 providers=self._providers(bundle, graph))
        except Exception as e:  # ONNX Runtime's own exception types derive from Exception only
            if not type(e).__module__.startswith("onnxruntime"):
                raise
            detail = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
            raise BundleError(f"ONNX Runtime cannot open graph '{graph}' ({bundle.graphs[graph].file}): {detail}; "
                              "if the bundle was edited or comes from another version, re-export it") from None
        return OrtSession(self._ort, session, self.device, self.device_id)
