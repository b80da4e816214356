"""PausingSegmenter: a Segmenter-style ViT whose confident patch tokens pause at chosen blocks.

At each pausing point an auxiliary head scores the active patch tokens; the shared policy
(`paumer_edge.core.pausing`) keeps the most uncertain ones. Paused tokens keep their features and take no
further part in the encoder; later blocks really run on the gathered active tokens only. Before the
decoder every token is scattered back to its place in the grid.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from .. import UserError
from ..config import ModelConfig
from ..config_check import check_model_memory
from ..core.pausing import CostModel, Pauser, PausingPolicy
from .decoders import DecoderLinear, MaskTransformer
from .pause_head import PauseHead, normalised_entropy
from .vit import VisionTransformer


@dataclass
class AuxPrediction:
    """A pausing head's logits for the tokens active at its pausing point."""

    logits: torch.Tensor  # [B, n, K]
    positions: torch.Tensor  # [B, n] int64 patch positions in the grid (row-major)


@dataclass
class SegmenterOutput:
    logits: torch.Tensor  # [B, K, H, W] at the input image size
    stage_map: torch.Tensor  # [B, rows, cols] int64: the last encoder stage each patch ran in
    counts: tuple[int, ...]  # patch tokens active in each encoder stage
    cost_fraction: float  # modelled encoder cost of the counts / full cost
    aux: list[AuxPrediction] = field(default_factory=list)


def _take(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """x[b, idx[b, i], :] for a token tensor [B, N, C] and indices [B, n]."""
    return x.gather(1, idx.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


def _put(buf: torch.Tensor, idx: torch.Tensor, src: torch.Tensor) -> torch.Tensor:
    """Out-of-place buf[b, idx[b, i], :] = src[b, i, :] (autograd-safe)."""
    return buf.scatter(1, idx.unsqueeze(-1).expand(-1, -1, buf.shape[-1]), src)


class PausingSegmenter(nn.Module):
    def __init__(self, cfg: ModelConfig):
        check_model_memory(cfg)  # before a byte is allocated: a config cannot ask for terabytes
        super().__init__()
        self.cfg = cfg
        self.encoder = VisionTransformer(
            cfg.image_size, cfg.patch_size, cfg.embed_dim, cfg.depth, cfg.num_heads, cfg.mlp_ratio,
            cfg.class_token, cfg.norm_eps, distilled=cfg.distilled, pos_embed_interp=cfg.pos_embed_interp,
        )
        self.pause_heads = nn.ModuleList(
            PauseHead(cfg.embed_dim, cfg.num_classes, cfg.norm_eps) for _ in cfg.pause_after
        )
        self.decoder: nn.Module
        if cfg.decoder == "linear":
            self.decoder = DecoderLinear(cfg.embed_dim, cfg.num_classes)
        else:
            self.decoder = MaskTransformer(cfg.embed_dim, cfg.num_classes, cfg.mask_dim,
                                           cfg.decoder_depth, cfg.mask_heads)
        self._costs: dict[tuple[int, int], CostModel] = {}

    def cost_model(self, grid: tuple[int, int] | None = None) -> CostModel:
        key = (int(grid[0]), int(grid[1])) if grid else self.cfg.grid
        if key not in self._costs:
            self._costs[key] = CostModel.from_config(self.cfg, key)
        return self._costs[key]

    def set_cost_model(self, cost: CostModel | None) -> None:
        """What budgets are fractions of at the model's own grid: e.g. a device's latency profile, or None
        for the MAC model. Every forward without a `cost` of its own follows it."""
        self._costs.pop(self.cfg.grid, None)
        if cost is not None:
            if cost.num_patches != self.cfg.num_patches or cost.num_stages != self.cfg.num_stages:
                raise UserError(f"a cost model of {cost.num_stages} stages on {cost.num_patches} patches does not "
                                f"fit model '{self.cfg.name}' ({self.cfg.num_stages} stages, "
                                f"{self.cfg.num_patches} patches)")
            self._costs[self.cfg.grid] = cost

    def decode(self, tokens: torch.Tensor, image_hw: tuple[int, int]) -> torch.Tensor:
        """Normed tokens incl. extra tokens [B, E+N, C] -> logits [B, K, H, W]."""
        grid = self.encoder.grid_for(*image_hw)
        masks = self.decoder(tokens[:, self.encoder.num_extra_tokens :], grid)
        return F.interpolate(masks, size=image_hw, mode="bilinear", align_corners=False)

    def forward_unpaused(self, images: torch.Tensor) -> torch.Tensor:
        """The plain Segmenter forward (no pausing machinery at all): the budget-1 reference."""
        return self.decode(self.encoder(images), (images.shape[-2], images.shape[-1]))

    def forward(self, images: torch.Tensor, budget: float = 1.0, threshold: float | None = None,
                with_aux: bool | None = None, cost: CostModel | None = None) -> SegmenterOutput:
        """Segment normalised images [B, 3, H, W] at a compute budget and/or entropy threshold.

        `with_aux` (default: in training mode) evaluates every pausing head and returns its
        predictions for the auxiliary losses even where nothing pauses. `cost` replaces the MAC
        model the budget is a fraction of (e.g. a device's latency profile from the runtime).
        """
        if with_aux is None:
            with_aux = self.training
        h, w = images.shape[-2], images.shape[-1]
        grid = self.encoder.grid_for(h, w)
        pauser = Pauser(cost or self.cost_model(grid), PausingPolicy(budget, threshold))
        extra = self.encoder.num_extra_tokens
        bsz, num_patches = images.shape[0], grid[0] * grid[1]

        x = self.encoder.embed(images)
        stage_map = torch.zeros(bsz, num_patches, dtype=torch.long, device=images.device)
        active: torch.Tensor | None = None  # patch positions of the active tokens; None = all
        buf: torch.Tensor | None = None  # every patch token's latest features, once any paused
        counts = [num_patches]
        aux: list[AuxPrediction] = []
        bounds = self.cfg.stage_bounds
        for k, (start, end) in enumerate(bounds):
            if k > 0:  # every token still active runs in this stage
                stage_map = stage_map.fill_(k) if active is None else stage_map.scatter(1, active, k)
            for blk in self.encoder.blocks[start:end]:
                x = blk(x)
            if k == len(bounds) - 1:
                break
            if not (pauser.needs_entropy or with_aux):
                counts.append(counts[-1])
                continue
            patch = x[:, extra:]
            positions = active if active is not None else (
                torch.arange(num_patches, device=x.device).expand(bsz, -1))
            head_logits = self.pause_heads[k](patch)
            aux.append(AuxPrediction(head_logits, positions))
            keep = pauser.select(k, normalised_entropy(head_logits).detach().cpu().numpy()) \
                if pauser.needs_entropy else None
            if keep is None:
                counts.append(counts[-1])
                continue
            keep_t = torch.from_numpy(keep).to(x.device)
            buf = patch if buf is None else _put(buf, positions, patch)
            active = positions.gather(1, keep_t)
            x = torch.cat([x[:, :extra], _take(patch, keep_t)], dim=1)
            counts.append(keep.shape[1])

        if buf is not None and active is not None:
            x = torch.cat([x[:, :extra], _put(buf, active, x[:, extra:])], dim=1)
        logits = self.decode(self.encoder.norm(x), (h, w))
        return SegmenterOutput(logits, stage_map.reshape(bsz, *grid), tuple(counts), pauser.spent(counts), aux)
