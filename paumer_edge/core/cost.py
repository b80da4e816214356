"""The cost model: what running the encoder with `counts[k]` active patch tokens in stage k costs.

A budget is a fraction of the full encoder's cost, so this model decides what a budget means. Two forms,
one interface (`encoder_cost`, `full_cost`):

- *MACs* (the default, from the model config): multiply-accumulates per block, linear layers linear in
  the token count, attention quadratic. Device-independent: training and `eval` use it.
- *Measured* (a latency profile of one device): each stage's time as `a + b*n + c*n^2` milliseconds,
  fitted to timings of the deployed graphs. With it, budget 0.5 means half of this device's encoder
  time, whatever its balance of attention against linear layers or its per-call overhead.

Plain Python + numpy: the PyTorch model and the torch-free runtime share it.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import UserError

Poly = tuple[float, float, float]  # milliseconds = p[0] + p[1] * n + p[2] * n^2


@dataclass(frozen=True)
class CostModel:
    """Encoder cost as a function of the active token count per stage: MACs, or measured milliseconds.

    MACs per block on n tokens (class token included): qkv + proj + MLP are linear in n, attention (QK^T
    and AV) is quadratic. Pausing heads (LayerNorm + Linear to the classes) run at every pausing point on
    the tokens active there, whenever the policy can pause.
    """

    embed_dim: int
    mlp_ratio: float
    num_patches: int
    extra_tokens: int
    stage_blocks: tuple[int, ...]  # blocks per stage
    num_classes: int
    patch_size: int
    decoder_macs: float = 0.0  # for reporting the encoder's share; not part of the budget
    # A measured latency profile (see `measured`): per-stage polynomials in n, the decoder's time, and
    # the device they were measured on. When present they, not the MACs, are the cost.
    stage_ms: tuple[Poly, ...] | None = None
    decoder_ms: float = 0.0
    device: str = ""

    @classmethod
    def from_config(cls, cfg: Any, grid: tuple[int, int] | None = None) -> CostModel:
        """MAC model of a `ModelConfig` (duck-typed: the runtime passes the manifest's view of it)."""
        rows, cols = grid if grid is not None else cfg.grid
        patches = rows * cols
        if cfg.decoder == "linear":
            dec = patches * cfg.embed_dim * cfg.num_classes
        else:  # mask transformer: projection, blocks over patches + class embeddings, mask products
            d, n = cfg.mask_dim, patches + cfg.num_classes
            dec = patches * cfg.embed_dim * d + cfg.decoder_depth * (n * 12 * d * d + 2 * n * n * d)
            dec += 2 * n * d * d + patches * cfg.num_classes * d
        return cls(
            embed_dim=cfg.embed_dim,
            mlp_ratio=float(cfg.mlp_ratio),
            num_patches=patches,
            extra_tokens=cfg.num_extra_tokens,
            stage_blocks=tuple(end - start for start, end in cfg.stage_bounds),
            num_classes=cfg.num_classes,
            patch_size=cfg.patch_size,
            decoder_macs=float(dec),
        )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["stage_blocks"] = list(self.stage_blocks)
        if self.stage_ms is None:  # MAC models keep the manifest's original form
            for key in ("stage_ms", "decoder_ms", "device"):
                d.pop(key)
        else:
            d["stage_ms"] = [list(p) for p in self.stage_ms]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CostModel:
        stage_ms = d.get("stage_ms")
        return cls(**{**d, "stage_blocks": tuple(d["stage_blocks"]),
                      "stage_ms": None if stage_ms is None else tuple(tuple(float(v) for v in p) for p in stage_ms)})

    # ---- the two forms --------------------------------------------------------------------
    @property
    def measured(self) -> bool:
        """True for a latency profile of a device, False for the MAC count."""
        return self.stage_ms is not None

    @property
    def macs(self) -> CostModel:
        """The MAC form of this model (drops any latency profile)."""
        return dataclasses.replace(self, stage_ms=None, decoder_ms=0.0, device="")

    def with_latency(self, stage_ms: Sequence[Poly], decoder_ms: float, device: str) -> CostModel:
        """This model with a measured latency profile of `device` as its cost."""
        if len(stage_ms) != self.num_stages:
            raise ValueError(f"a latency profile needs one polynomial per stage ({self.num_stages}), "
                             f"got {len(stage_ms)}")
        polys = tuple((float(a), float(b), float(c)) for a, b, c in stage_ms)
        if min(min(p) for p in polys) < 0 or not sum(sum(p) for p in polys) > 0:
            raise ValueError("a latency profile needs non-negative coefficients and a positive total")
        return dataclasses.replace(self, stage_ms=polys, decoder_ms=max(0.0, float(decoder_ms)), device=device)

    @property
    def unit(self) -> str:
        return "ms" if self.measured else "MACs"

    # ---- MACs -----------------------------------------------------------------------------
    @property
    def num_stages(self) -> int:
        return len(self.stage_blocks)

    def block_macs(self, patches: int) -> float:
        n = patches + self.extra_tokens
        c = self.embed_dim
        return n * (4 + 2 * self.mlp_ratio) * c * c + 2.0 * n * n * c

    def head_macs(self, patches: int) -> float:
        return float(patches * self.embed_dim * self.num_classes)

    @property
    def patch_embed_macs(self) -> float:
        return float(self.num_patches * 3 * self.patch_size**2 * self.embed_dim)

    # ---- the cost a budget is a fraction of ---------------------------------------------------
    def encoder_cost(self, counts: Sequence[int], pausing: bool) -> float:
        """Encoder cost (MACs, or ms when measured) with `counts[k]` patch tokens active in stage k.

        `pausing` says whether the pausing heads run (the MAC model counts them then; in measured
        profiles they are part of each stage's graph and its time).
        """
        if self.stage_ms is not None:
            return float(sum(a + b * n + c * n * n for (a, b, c), n in zip(self.stage_ms, counts)))
        total = self.patch_embed_macs
        for blocks, n in zip(self.stage_blocks, counts):
            total += blocks * self.block_macs(n)
        if pausing:
            total += sum(self.head_macs(n) for n in counts[:-1])
        return total

    @property
    def full_cost(self) -> float:
        """The unpaused encoder: every stage on every token, no pausing heads."""
        return self.encoder_cost([self.num_patches] * self.num_stages, pausing=False)

    @property
    def decoder_cost(self) -> float:
        """The decoder's cost in the same unit; the budget does not change it."""
        return self.decoder_ms if self.measured else self.decoder_macs

    @property
    def encoder_share(self) -> float:
        """Fraction of the whole network's modelled cost spent in the encoder at budget 1."""
        return self.full_cost / (self.full_cost + self.decoder_cost)

    def ideal_speedup(self, cost_fraction: float) -> float:
        """End-to-end speed-up over budget 1 this model predicts for an encoder at `cost_fraction`."""
        full, dec = self.full_cost, self.decoder_cost
        return (full + dec) / (cost_fraction * full + dec)


def fit_latency(ns: Sequence[float], ms: Sequence[float]) -> Poly:
    """Least-squares `a + b*n + c*n^2` through timings, every coefficient >= 0.

    Non-negative, so the cost never falls as tokens are added and the budget search stays monotone.
    Tries every subset of the three terms and keeps the best fit whose coefficients are all >= 0.
    """
    n = np.asarray(ns, np.float64)
    y = np.asarray(ms, np.float64)
    if n.shape != y.shape or n.size == 0:
        raise ValueError("fit_latency needs as many timings as token counts, at least one")
    columns = [np.ones_like(n), n, n * n]
    best: tuple[float, Poly] | None = None
    for size in (3, 2, 1):
        for terms in itertools.combinations(range(3), size):
            a = np.stack([columns[t] for t in terms], axis=1)
            coef = np.linalg.lstsq(a, y, rcond=None)[0]
            if (coef < 0).any():
                continue
            err = float(((a @ coef - y) ** 2).sum())
            if best is None or err < best[0] - 1e-15:
                full = [0.0, 0.0, 0.0]
                for t, c in zip(terms, coef):
                    full[t] = float(c)
                best = (err, (full[0], full[1], full[2]))
    if best is None:  # only possible when every timing is negative
        return (0.0, 0.0, 0.0)
    return best[1]


def load_cost(path: str | Path, base: CostModel) -> CostModel:
    """A latency profile from a file, for the model `base` describes.

    Takes what paumer-edge writes: a `bench --json` report (its `cost_model`) or a cached profile
    (`~/.cache/paumer-edge/latency/*.json`: `stage_ms`, `decoder_ms`, `device`).
    """
    path = Path(path)
    try:
        d = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"cannot read the latency profile '{path}' ({type(e).__name__}); give a `bench --json` "
                        "report or a profile from ~/.cache/paumer-edge/latency") from None
    try:
        if isinstance(d, dict) and isinstance(d.get("cost_model"), dict):
            d = d["cost_model"]
        cost = base.with_latency([tuple(p) for p in d["stage_ms"]], float(d.get("decoder_ms", 0.0)),
                                 str(d.get("device", "")))
    except (KeyError, TypeError, ValueError):
        raise UserError(f"'{path}' holds no latency profile of {base.num_stages} stages; give a `bench --json` "
                        "report or a profile from ~/.cache/paumer-edge/latency of this model's bundle") from None
    if isinstance(d, dict) and d.get("num_patches", base.num_patches) != base.num_patches:
        raise UserError(f"the latency profile '{path}' is of a model with {d['num_patches']} patches, this one has "
                        f"{base.num_patches}: profile this model's bundle")
    return cost
