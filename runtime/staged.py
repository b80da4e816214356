"""Run a bundle's staged graphs on normalised image tensors, with the shared pausing policy between stages.

This is the orchestration at the heart of the runtime: stage 0 on every token, then at each pausing
point read the entropies, let the policy pick the active tokens, hand their indices to the next stage,
and finally decode. The host touches only entropies (down) and indices (up).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from paumer_edge.pausing import Pauser, PausingPolicy

from .backends.base import Backend, GraphSession
from .bundle import Bundle


@dataclass
class StageStats:
    """What one call cost: per stage time and active patch tokens, the decoder, the policy."""

    stage_ms: list[float] = field(default_factory=list)
    counts: list[int] = field(default_factory=list)
    decoder_ms: float = 0.0
    policy_ms: float = 0.0
    budget: float = 1.0
    threshold: float | None = None
    cost_fraction: float = 1.0

    @property
    def total_ms(self) -> float:
        return sum(self.stage_ms) + self.decoder_ms + self.policy_ms


class StagedRunner:
    """Sessions for stage0..stageS-1 and the decoder of one bundle on one backend."""

    def __init__(self, bundle: Bundle, backend: Backend):
        self.bundle = bundle
        self.stages: list[GraphSession] = [backend.open(bundle, name) for name in bundle.stage_names]
        self.decoder = backend.open(bundle, "decoder")
        self._all = np.arange(bundle.model.num_patches, dtype=np.int64)[None]

    def run(self, images: np.ndarray, policy: PausingPolicy) -> tuple[list[np.ndarray], StageStats]:
        """Normalised images [B,3,H,W] float32 -> decoder outputs (labels first) and stats."""
        pauser = Pauser(self.bundle.cost, policy)
        stats = StageStats(budget=policy.budget, threshold=policy.threshold)
        b = images.shape[0]
        t0 = time.perf_counter()
        outs = self.stages[0].run({"image": images})
        stats.stage_ms.append((time.perf_counter() - t0) * 1000)
        tokens = outs[0]
        entropy = outs[1] if len(outs) > 1 else None
        active = np.broadcast_to(self._all, (b, self._all.shape[1]))
        stats.counts.append(active.shape[1])
        for k, session in enumerate(self.stages[1:]):
            t0 = time.perf_counter()
            if pauser.needs_entropy and entropy is not None:
                keep = pauser.select(k, entropy)
                if keep is not None:
                    active = np.take_along_axis(active, keep, axis=1)
            t1 = time.perf_counter()
            outs = session.run({"tokens": tokens, "active": np.ascontiguousarray(active)})
            t2 = time.perf_counter()
            stats.policy_ms += (t1 - t0) * 1000
            stats.stage_ms.append((t2 - t1) * 1000)
            stats.counts.append(active.shape[1])
            tokens = outs[0]
            entropy = outs[1] if len(outs) > 1 else None
        t0 = time.perf_counter()
        result = self.decoder.run({"tokens": tokens})
        stats.decoder_ms = (time.perf_counter() - t0) * 1000
        stats.cost_fraction = self.bundle.cost.encoder_macs(stats.counts, pausing=pauser.needs_entropy) / \
            self.bundle.cost.full_macs
        return result, stats
