"""`paumer-edge triton REPO [--model MODEL]`: a Triton model repository for your own tritonserver."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..runtime.serving.repository import RepositoryOptions, write_repository
from .run import bundle_for


def triton_repository(repo: str, model: str | None = None, name: str = "paumer", max_batch: int = 8,
                      max_delay_us: int = 2000, instances: int = 1, stage_instances: int = 1,
                      stage_backend: str = "onnxruntime", device: str = "gpu", tensorrt: bool = False,
                      budget: float = 1.0, threshold: float | None = None, quiet: bool = False) -> Path:
    """Write the repository for MODEL (bundle or checkpoint; the sample when None) to REPO; returns REPO."""
    opts = RepositoryOptions(name=name, max_batch=max_batch, max_delay_us=max_delay_us, instances=instances,
                             stage_instances=stage_instances, stage_backend=stage_backend, device=device,
                             tensorrt=tensorrt, budget=budget, threshold=threshold)
    opts.check()  # before a minute of export
    return write_repository(bundle_for(model, quiet), repo, opts)


def run(a: argparse.Namespace) -> int:
    repo = triton_repository(a.repo, a.model, a.name, a.max_batch, a.max_delay_us, a.instances, a.stage_instances,
                             a.stage_backend, a.device, a.tensorrt, a.budget, a.threshold, a.quiet)
    models = sorted(p.name for p in repo.iterdir() if p.is_dir())
    print(f"wrote Triton model repository {repo}: {', '.join(models)}; start it with "
          f"`tritonserver --model-repository={repo.resolve()}` and send requests to model '{a.name}'")
    return 0
