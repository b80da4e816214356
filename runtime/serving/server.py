"""`paumer-edge serve`: a bundle behind Triton Inference Server through PyTriton, until Ctrl-C or SIGTERM.

    from paumer_edge.runtime.serving import ServeConfig, PipelineServer
    with PipelineServer("sample.paumer", ServeConfig(grpc_port=8001)) as server:
        print(server.urls)          # HTTP, gRPC, metrics
        server.wait()               # returns on Ctrl-C / SIGTERM; leaving stops after in-flight requests finish

Triton does the serving (HTTP/gRPC, dynamic batching, instances, Prometheus metrics); this module
builds the Pipelines, binds them (`binding.py`), fixes the Python backend's environment
(`tritonserver.python_backend_environment`) and keeps Triton's own log in a file.
"""

from __future__ import annotations

import logging
import signal
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from paumer_edge.core.pausing import check_budget, check_threshold

from ..pipeline import Pipeline
from .binding import ServedPipelines, bind
from .cameras import CameraRegistry
from .tritonserver import ServingError, check_port, python_backend_environment, require_pytriton


@dataclass
class ServeConfig:
    """Where and how to serve: addresses, the model's name, instances, batching, the default knobs."""

    host: str = "127.0.0.1"  # 0.0.0.0 to listen on every interface
    http_port: int = 8000
    grpc_port: int = 8001
    metrics_port: int = 8002
    model_name: str = "paumer"
    instances: int = 1  # each its own Pipeline; more help where the device has room (GPUs, many cores)
    max_batch: int = 8
    max_delay_us: int = 2000  # how long Triton holds a request to batch it with others
    budget: float = 1.0
    threshold: float | None = None
    backend: str = "auto"
    cost: str = "device"  # budgets as fractions of this device's latency, as `paumer-edge run`; or "macs"
    threads: int = 0
    shared_threads: bool = True  # see Pipeline: one ONNX Runtime pool for the process (about 15% faster on CPUs)
    max_cameras: int = 1024
    exit_timeout_s: int = 30  # how long Ctrl-C waits for in-flight requests
    log_file: str | None = None  # Triton's own log (default: a file in the temp folder)

    def check(self) -> None:
        check_budget(self.budget)
        if self.threshold is not None:
            check_threshold(self.threshold)
        for what, value, low in (("instances", self.instances, 1), ("max batch", self.max_batch, 1),
                                 ("max delay", self.max_delay_us, 0), ("max cameras", self.max_cameras, 1)):
            if value < low:
                raise ServingError(f"{what} {value}: give at least {low}")
        ports = [self.http_port, self.grpc_port, self.metrics_port]
        if len(set(ports)) != 3 or not all(0 < p < 65536 for p in ports):
            raise ServingError(f"ports {ports}: give three different ports in 1..65535 (HTTP, gRPC, metrics)")


class PipelineServer:
    """A bundle served by Triton via PyTriton (see the module docstring)."""

    def __init__(self, bundle: str | Path, config: ServeConfig | None = None):
        self.config = cfg = config or ServeConfig()
        cfg.check()
        require_pytriton()
        from pytriton.triton import Triton, TritonConfig
        for port, what in ((cfg.http_port, "HTTP"), (cfg.grpc_port, "gRPC"), (cfg.metrics_port, "metrics")):
            check_port(cfg.host, port, what)
        # the server's ONNX Runtime is its own: one thread pool for every stage (and instance), as `run` does
        self.pipelines = [Pipeline(bundle, backend=cfg.backend, budget=cfg.budget, threshold=cfg.threshold,
                                   threads=cfg.threads, cost=cfg.cost, shared_threads=cfg.shared_threads)
                          for _ in range(cfg.instances)]
        for p in self.pipelines:
            p.warmup()
        self.cameras = CameraRegistry(cfg.max_cameras)
        self.served = ServedPipelines(self.pipelines, cfg.budget, cfg.threshold, self.cameras)
        self.log_file = Path(cfg.log_file or Path(tempfile.gettempdir()) / f"paumer-serve-{cfg.grpc_port}.log")
        self._triton: Any = Triton(config=TritonConfig(
            http_address=cfg.host, http_port=cfg.http_port, grpc_address=cfg.host, grpc_port=cfg.grpc_port,
            metrics_address=cfg.host, metrics_port=cfg.metrics_port, exit_timeout_secs=cfg.exit_timeout_s,
            log_file=self.log_file))
        self._stop = threading.Event()

    @property
    def urls(self) -> dict[str, str]:
        c = self.config
        host = "127.0.0.1" if c.host in ("0.0.0.0", "") else c.host
        return {"http": f"http://{host}:{c.http_port}", "grpc": f"grpc://{host}:{c.grpc_port}",
                "metrics": f"http://{host}:{c.metrics_port}/metrics"}

    def start(self) -> PipelineServer:
        c = self.config
        # a refused request is one line from binding.py, not PyTriton's traceback per request
        logging.getLogger("pytriton.proxy.inference").setLevel(logging.ERROR)
        bind(self._triton, c.model_name, self.served, c.max_batch, c.max_delay_us)
        try:
            with python_backend_environment():
                self._triton.run()
        except Exception as e:
            self._triton.stop()
            raise ServingError(f"Triton did not start ({e}); its log: {self.log_file}") from None
        return self

    def describe(self) -> str:
        c = self.config
        u = self.urls
        return (f"serving {self.pipelines[0].describe()} as model '{c.model_name}' on Triton: HTTP {u['http']}, "
                f"gRPC {u['grpc']}, metrics {u['metrics']}; {c.instances} instance(s), dynamic batching up to "
                f"{c.max_batch}; Triton's log: {self.log_file}")

    def wait(self) -> None:
        """Block until Ctrl-C or SIGTERM (or `request_stop()` from another thread)."""
        def on_signal(signum: int, frame: FrameType | None) -> None:
            self._stop.set()

        main = threading.current_thread() is threading.main_thread()
        old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)} if main else {}
        try:
            while not self._stop.wait(0.5):
                if not self._triton.is_alive():
                    raise ServingError(f"Triton stopped unexpectedly; its log: {self.log_file}")
        finally:
            for s, h in old.items():
                signal.signal(s, h)

    def request_stop(self) -> None:
        self._stop.set()

    def stop(self) -> None:
        """Stop taking requests, let the in-flight ones finish (up to exit_timeout_s), shut Triton down."""
        self._triton.stop()

    def __enter__(self) -> PipelineServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
