"""`paumer-edge serve [MODEL]`: a bundle behind Triton Inference Server (PyTriton) until Ctrl-C / SIGTERM."""

from __future__ import annotations

import logging
import sys
from typing import Any

import click

from .bundles import bundle_for
from .params import backend_option, cost_option, quiet, threads_option


@click.command("serve", help="Serve MODEL (a bundle or checkpoint; default: the bundled sample) on NVIDIA Triton "
               "Inference Server through PyTriton: HTTP, gRPC and Prometheus metrics, dynamic batching of requests "
               "at the same plan, several model instances, one state slot per camera id. Ctrl-C finishes the "
               "requests in flight and stops. Needs the serve extra: pip install 'paumer-edge[serve]'.")
@click.argument("model", required=False, envvar="PAUMER_EDGE_MODEL")
@click.option("--host", default="127.0.0.1", help="Address to listen on; 0.0.0.0 for every interface (your choice "
              "to expose it: there is no authentication).")
@click.option("--http-port", type=int, default=8000, help="Port of the HTTP/REST endpoint.")
@click.option("--grpc-port", type=int, default=8001, help="Port of the gRPC endpoint.")
@click.option("--metrics-port", type=int, default=8002, help="Prometheus metrics port.")
@click.option("--name", default="paumer", help="The model's name on the server.")
@click.option("--instances", type=int, default=1, help="Model instances, each with its own pipeline.")
@click.option("--max-batch", type=int, default=8, help="Largest dynamic batch of frames.")
@click.option("--max-delay-us", type=int, default=2000, help="How long Triton may hold a request to batch it, in µs.")
@click.option("--budget", type=float, default=1.0, help="Budget for requests that send none.")
@click.option("--threshold", type=float, help="Entropy threshold for requests that send none.")
@backend_option
@cost_option("measured once and cached")
@threads_option
@click.option("--log-file", metavar="FILE", help="Triton's own log [default: a file in the temp folder].")
@quiet
def command(**options: Any) -> int:
    return serve(**options)


def serve(model: str | None = None, host: str = "127.0.0.1", http_port: int = 8000, grpc_port: int = 8001,
          metrics_port: int = 8002, instances: int = 1, max_batch: int = 8, max_delay_us: int = 2000,
          budget: float = 1.0, threshold: float | None = None, backend: str = "auto", cost: str = "device",
          threads: int = 0, name: str = "paumer", log_file: str | None = None, quiet: bool = False) -> int:
    """Serve MODEL (bundle or checkpoint; the sample when None) until interrupted; returns the exit code."""
    from ..runtime.serving.server import ServeConfig
    from ..runtime.serving.tritonserver import require_pytriton

    config = ServeConfig(host=host, http_port=http_port, grpc_port=grpc_port, metrics_port=metrics_port,
                         model_name=name, instances=instances, max_batch=max_batch, max_delay_us=max_delay_us,
                         budget=budget, threshold=threshold, backend=backend, cost=cost, threads=threads,
                         log_file=log_file)
    config.check()  # before a minute of export
    require_pytriton()
    from ..runtime.serving.server import PipelineServer

    logging.basicConfig(level=logging.WARNING, format="paumer-edge serve: %(message)s", stream=sys.stderr)
    server = PipelineServer(bundle_for(model, quiet), config)
    with server:
        print(server.describe() + "; Ctrl-C stops", flush=True)
        server.wait()
        if not quiet:
            print("stopping: finishing the requests in flight ...", flush=True)
    print(f"served {server.cameras.frames} frames from {len(server.cameras)} cameras; stopped")
    return 0

