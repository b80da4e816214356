"""`paumer-edge serve [MODEL]`: a bundle behind Triton Inference Server (PyTriton) until Ctrl-C / SIGTERM."""

from __future__ import annotations

import argparse
import logging
import sys

from ..runtime.serving.server import PipelineServer, ServeConfig
from ..runtime.serving.tritonserver import require_pytriton
from .run import bundle_for


def serve(model: str | None = None, host: str = "127.0.0.1", http_port: int = 8000, grpc_port: int = 8001,
          metrics_port: int = 8002, instances: int = 1, max_batch: int = 8, max_delay_us: int = 2000,
          budget: float = 1.0, threshold: float | None = None, backend: str = "auto", cost: str = "device",
          threads: int = 0, name: str = "paumer", log_file: str | None = None, quiet: bool = False) -> int:
    """Serve MODEL (bundle or checkpoint; the sample when None) until interrupted; returns the exit code."""
    config = ServeConfig(host=host, http_port=http_port, grpc_port=grpc_port, metrics_port=metrics_port,
                         model_name=name, instances=instances, max_batch=max_batch, max_delay_us=max_delay_us,
                         budget=budget, threshold=threshold, backend=backend, cost=cost, threads=threads,
                         log_file=log_file)
    config.check()  # before a minute of export
    require_pytriton()
    logging.basicConfig(level=logging.WARNING, format="paumer-edge serve: %(message)s", stream=sys.stderr)
    server = PipelineServer(bundle_for(model, quiet), config)
    with server:
        print(server.describe() + "; Ctrl-C stops", flush=True)
        server.wait()
        if not quiet:
            print("stopping: finishing the requests in flight ...", flush=True)
    print(f"served {server.cameras.frames} frames from {len(server.cameras)} cameras; stopped")
    return 0


def run(a: argparse.Namespace) -> int:
    return serve(a.model, a.host, a.http_port, a.grpc_port, a.metrics_port, a.instances, a.max_batch, a.max_delay_us,
                 a.budget, a.threshold, a.backend, a.cost, a.threads, a.name, a.log_file, a.quiet)
