"""`Pipeline` as a PyTriton model: request decoding, per-camera state, batched inference, response packing.

Triton's dynamic batcher gathers requests (from any cameras) into one call of an instance's callable;
the callable decodes and checks every request, claims the cameras named, runs the frames grouped by
plan (`batch.run_jobs`) and answers each request with its own outputs. Each instance owns a Pipeline
(its own sessions); all share one camera registry (see `cameras.py` for the routing).

PyTriton answers a whole call with one error, so a refused request fails the requests batched with it;
the message says which one was refused and that the others may be sent again (`client.py` does so).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..pipeline import Pipeline
from .batch import FrameOutput, run_jobs
from .cameras import CameraRegistry
from .protocol import INPUTS, OUTPUTS, FrameJob, RequestError, decode_request

LOG = logging.getLogger("paumer_edge.serve")
BATCH_MATE = "refused with a batch-mate"  # in the message of requests failed only for sharing a batch


def pack(outputs: list[FrameOutput]) -> dict[str, np.ndarray]:
    """The frames of one request -> its output tensors, each with the request's batch dimension first."""
    return {
        "labels": np.stack([o.labels for o in outputs]).astype(np.uint8, copy=False),
        "counts": np.array([o.counts for o in outputs], np.int32),
        "stage_ms": np.array([o.stage_ms for o in outputs], np.float32),
        "cost": np.array([[o.cost] for o in outputs], np.float32),
    }


def refusal(errors: list[tuple[int, str]], total: int) -> str:
    """One message for a call whose requests `errors` (index, reason) were refused, out of `total`."""
    if total == 1:
        return errors[0][1]
    reasons = "; ".join(f"request {i + 1} of {total}: {msg}" for i, msg in errors)
    return f"{reasons} (the other requests of this batch were {BATCH_MATE}: send them again)"


class ServedPipelines:
    """The inference callables of one served model: one per instance, each with its own Pipeline."""

    def __init__(self, pipelines: Sequence[Pipeline], budget: float = 1.0, threshold: float | None = None,
                 cameras: CameraRegistry | None = None):
        self.pipelines = list(pipelines)
        self.budget, self.threshold = budget, threshold
        self.cameras = cameras if cameras is not None else CameraRegistry()

    def infer(self, pipe: Pipeline, requests: Sequence[Any]) -> list[dict[str, np.ndarray]]:
        """PyTriton requests (each a mapping of input name -> array with a batch dimension) -> responses."""
        decoded: list[list[FrameJob]] = []
        errors: list[tuple[int, str]] = []
        for i, request in enumerate(requests):
            try:
                decoded.append(decode_request({k: request[k] for k in request.keys()}))
            except RequestError as e:
                errors.append((i, str(e)))
        if errors:
            message = refusal(errors, len(requests))
            LOG.warning("refused: %s", message)
            raise RequestError(message)
        jobs = [job for request_jobs in decoded for job in request_jobs]
        with self.cameras.claim(job.camera_id for job in jobs):
            outputs = run_jobs(pipe, jobs, self.budget, self.threshold)
        responses, start = [], 0
        for request_jobs in decoded:
            responses.append(pack(outputs[start:start + len(request_jobs)]))
            start += len(request_jobs)
        return responses

    def callables(self) -> list[Callable[[list[Any]], list[dict[str, np.ndarray]]]]:
        def bound(pipe: Pipeline) -> Callable[[list[Any]], list[dict[str, np.ndarray]]]:
            def infer_func(requests: list[Any]) -> list[dict[str, np.ndarray]]:
                return self.infer(pipe, requests)
            return infer_func
        return [bound(p) for p in self.pipelines]


def bind(triton: Any, name: str, served: ServedPipelines, max_batch: int, max_delay_us: int) -> None:
    """Bind the served pipelines to a `pytriton.triton.Triton` as model `name` with dynamic batching."""
    from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor

    batcher = DynamicBatcher(max_queue_delay_microseconds=max_delay_us)
    triton.bind(
        model_name=name,
        infer_func=served.callables(),
        inputs=[Tensor(name=n, dtype=d, shape=s, optional=o) for n, d, s, o in INPUTS],
        outputs=[Tensor(name=n, dtype=d, shape=s) for n, d, s in OUTPUTS],
        config=ModelConfig(max_batch_size=max_batch, batcher=batcher),
        strict=True,
    )
