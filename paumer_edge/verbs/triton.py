"""`paumer-edge triton REPO [--model MODEL]`: a Triton model repository for your own tritonserver."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from .bundles import bundle_for
from .params import model_option, quiet


@click.command("triton", help="Write a Triton model repository to REPO for your own tritonserver (e.g. NGC "
               "containers on GPUs): a Python-backend (BLS) model running the staged graphs with the shared "
               "pausing policy, one model per graph, config.pbtxt with dynamic batching and instance groups, and "
               "the bundle.")
@click.argument("repo")
@model_option("Bundle directory or checkpoint [default: the bundled sample].")
@click.option("--name", default="paumer", help="The model's name on the server.")
@click.option("--max-batch", type=int, default=8, help="Largest dynamic batch of frames.")
@click.option("--max-delay-us", type=int, default=2000, help="Dynamic batcher queue delay in µs.")
@click.option("--instances", type=int, default=1, help="Instances of the BLS model.")
@click.option("--stage-instances", type=int, default=1, help="Instances of each graph model.")
@click.option("--stage-backend", type=click.Choice(["onnxruntime", "python"]), default="onnxruntime",
              help="Triton backend of the graph models: onnxruntime (NGC containers) or python (ONNX Runtime inside "
                   "the Python backend, for servers without the onnxruntime backend).")
@click.option("--device", type=click.Choice(["gpu", "cpu"]), default="gpu", help="Where the graph models run.")
@click.option("--tensorrt", is_flag=True, help="TensorRT (FP16) as the onnxruntime backend's accelerator.")
@click.option("--budget", type=float, default=1.0, help="Budget (a fraction of MACs) for requests that send none.")
@click.option("--threshold", type=float, help="Entropy threshold for requests that send none.")
@quiet
def command(**options: Any) -> int:
    repo = triton_repository(**options)
    models = sorted(p.name for p in repo.iterdir() if p.is_dir())
    print(f"wrote Triton model repository {repo}: {', '.join(models)}; start it with "
          f"`tritonserver --model-repository={repo.resolve()}` and send requests to model '{options['name']}'")
    return 0


def triton_repository(repo: str, model: str | None = None, name: str = "paumer", max_batch: int = 8,
                      max_delay_us: int = 2000, instances: int = 1, stage_instances: int = 1,
                      stage_backend: str = "onnxruntime", device: str = "gpu", tensorrt: bool = False,
                      budget: float = 1.0, threshold: float | None = None, quiet: bool = False) -> Path:
    """Write the repository for MODEL (bundle or checkpoint; the sample when None) to REPO; returns REPO."""
    from ..runtime.serving.repository import RepositoryOptions, write_repository

    opts = RepositoryOptions(name=name, max_batch=max_batch, max_delay_us=max_delay_us, instances=instances,
                             stage_instances=stage_instances, stage_backend=stage_backend, device=device,
                             tensorrt=tensorrt, budget=budget, threshold=threshold)
    opts.check()  # before a minute of export
    return write_repository(bundle_for(model, quiet), repo, opts)

