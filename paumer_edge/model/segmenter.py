"""PausingSegmenter: a Segmenter-style ViT whose confident patch tokens pause at chosen blocks.

A stage is defined once, here: `embed` (image -> token buffer), `stage(k, tokens, active)` (gather the
active rows of the buffer, run stage k's blocks on them, scatter them back, score them with the pausing
head) and `decode` (buffer -> logits). Training's `forward` is a loop over them with a token selector
from the shared policy (`paumer_edge.core.pausing`); the exporter wraps the same methods into the
deployment graphs, so what is trained is what is exported. Paused tokens keep their features in the
buffer and take no further part in the encoder.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from .. import UserError
from ..config import ModelConfig
from ..config_check import check_model_memory
from ..core.pausing import CostModel, Pauser, PausingPolicy, TokenSelector
from .decoders import DecoderLinear, MaskTransformer
from .pause_head import PauseHead, normalised_entropy
from .vit import Block, VisionTransformer


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


class StageOutput(NamedTuple):
    tokens: torch.Tensor  # [B, L, C] the token buffer with this stage's rows updated
    logits: torch.Tensor | None  # [B, n, K] the pausing head's logits for the active patches (None: no head ran)


class ContextOutput(NamedTuple):
    tokens: torch.Tensor  # [B, L, C] the token buffer with the active rows updated
    logits: torch.Tensor | None  # [B, n, K] the pausing head's logits for the active patches (None: no head ran)
    cache_rows: torch.Tensor  # [B, 2 x blocks, heads, extra + n, head_dim] the fresh keys, values of the rows that ran


def token_rows(active: torch.Tensor, extra: int) -> torch.Tensor:
    """Rows of the token buffer [B, extra + n] that run: per image the extra tokens (always active), then the
    active patches."""
    idx = active + extra
    if extra:
        b = active.shape[0]
        idx = torch.cat([torch.arange(extra, device=active.device).unsqueeze(0).expand(b, extra), idx], dim=1)
    return idx


def buffer_rows(active: torch.Tensor, extra: int, length: int) -> torch.Tensor:
    """Flat row indices into a [B*L, C] view of the token buffer: per image, the extra tokens (always active)
    then the active patches. Index ops (Gather / ScatterND of whole rows) move each token once each way and
    export without data-dependent shapes."""
    idx = token_rows(active, extra)
    return (idx + torch.arange(active.shape[0], device=active.device).unsqueeze(1) * length).reshape(-1)


def context_rows(cache: torch.Tensor, seen: torch.Tensor, slot: int) -> torch.Tensor:
    """The cached keys (or values) at `slot` of a temporal-reuse cache [B, slots, heads, L, head_dim] for the buffer
    rows `seen` [B, m]: [B, heads, m, head_dim]. One gather of flat rows straight from the cache: an exported graph
    materialises every view, so indexing the image, then the rows, then the slot would copy the cache three times
    (the image's whole cache first)."""
    b, slots, heads, length, head_dim = cache.shape
    flat = cache.reshape(-1, head_dim)
    images = torch.arange(b, device=cache.device).reshape(b, 1, 1)
    first = ((images * slots + slot) * heads + torch.arange(heads, device=cache.device).reshape(1, heads, 1)) * length
    return flat.index_select(0, (first + seen.unsqueeze(1)).reshape(-1)).reshape(b, heads, -1, head_dim)


def tile_weights(patch: int, dtype: torch.dtype = torch.float32, device: torch.device | None = None) -> torch.Tensor:
    """[9, p * p]: how bilinear upsampling by `patch` (align_corners=False) weighs a patch and its 8 neighbours
    (row-major, -1..1 in each direction) at every pixel of the patch's tile."""
    taps = torch.zeros(patch, 3, dtype=torch.float64)
    for i in range(patch):
        s = (i + 0.5) / patch - 0.5  # the pixel's source coordinate, from the patch's centre
        if s < 0:
            taps[i, 0], taps[i, 1] = -s, 1 + s
        else:
            taps[i, 1], taps[i, 2] = 1 - s, s
    # weight[(dy, dx), (i, j)] = taps[i, dy] * taps[j, dx]
    weight = torch.einsum("ia,jb->abij", taps, taps).reshape(9, patch * patch)
    return weight.to(dtype=dtype, device=device)


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

    # ---- the stage definition: training, export and the runtime all run these ---------------------
    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """Normalised images [B, 3, H, W] -> the token buffer [B, L, C] (extra tokens first)."""
        return self.encoder.embed(images)

    def stage(self, k: int, tokens: torch.Tensor, active: torch.Tensor | None = None,
              head: bool = True) -> StageOutput:
        """Run encoder stage k on the token buffer [B, L, C].

        `active` [B, n] int64: the patch positions that run (None: every token, with no gather at all);
        their rows and the extra tokens are gathered, run through the stage's blocks and scattered back,
        so paused rows keep their features. `head`: also score the active patches with the pausing head
        after the stage (there is none after the last stage).
        """
        start, end = self.cfg.stage_bounds[k]
        e = self.encoder.num_extra_tokens
        if active is None:
            x = out = self._blocks(tokens, start, end)
        else:
            b, length, c = tokens.shape
            flat = buffer_rows(active, e, length)
            rows = tokens.reshape(b * length, c)
            x = self._blocks(rows.index_select(0, flat).reshape(b, -1, c), start, end)
            out = rows.index_put((flat,), x.reshape(-1, c)).reshape(b, length, c)
        # the head scores every row and the (small) logits are sliced, not the (large) tokens
        logits = self.pause_heads[k](x)[:, e:] if head and k < len(self.pause_heads) else None
        return StageOutput(out, logits)

    def stage_context(self, k: int, tokens: torch.Tensor, active: torch.Tensor, context: torch.Tensor,
                      cache: torch.Tensor, image: torch.Tensor | None = None, head: bool = True) -> ContextOutput:
        """Run encoder stage k on the `active` rows only, as temporal reuse does: they attend to their own fresh
        keys and values and to the cached ones of the `context` patches, so a changed patch still sees the image
        while unchanged ones cost nothing.

        `context` [B, m] int64: patch positions whose cached keys and values are seen (m may be 0; none active);
        `cache` [B, 2 x blocks, heads, L, head_dim]: every row's keys and values at each block of the stage (keys,
        values, keys, ... in block order) from its last computation; only the context rows are read. `image`
        (stage 0): the rows start from its embedding (of those rows only) instead of `tokens`; the results are
        written into `tokens` either way. Returns the buffer, the head's logits and the fresh keys and values
        of the rows that ran (`cache_rows`, rows as `token_rows`), which the caller writes into its cache: the
        cache itself is never copied. With every patch active and no context it is `stage(k, ...)`.
        """
        start, end = self.cfg.stage_bounds[k]
        e = self.encoder.num_extra_tokens
        b, length, c = tokens.shape
        flat = buffer_rows(active, e, length)
        buffer = tokens.reshape(b * length, c)
        # the rows stay flat [B * n, C] through the blocks (attention alone groups them by image)
        x = buffer.index_select(0, flat) if image is None else self.encoder.embed_rows(image, token_rows(active, e))
        seen = context + e
        fresh_kv: list[torch.Tensor] = []
        for j, i in enumerate(range(start, end)):
            blk: Block = self.encoder.blocks[i]  # type: ignore[assignment]
            x, (keys, values) = blk.forward_context(x, b, context_rows(cache, seen, 2 * j),
                                                    context_rows(cache, seen, 2 * j + 1))
            fresh_kv += [keys, values]
        out = buffer.index_put((flat,), x).reshape(b, length, c)
        logits = None
        if head and k < len(self.pause_heads):
            scores = self.pause_heads[k](x)
            logits = scores.reshape(b, -1, scores.shape[-1])[:, e:]
        return ContextOutput(out, logits, torch.stack(fresh_kv, dim=1))

    def cache_shape(self, k: int, batch: int) -> tuple[int, int, int, int, int]:
        """Shape of stage k's cache for temporal reuse: [B, 2 x blocks, heads, L, head_dim] (every row's keys and
        values at each block of the stage)."""
        cfg = self.cfg
        start, end = cfg.stage_bounds[k]
        length = cfg.num_patches + cfg.num_extra_tokens
        return batch, 2 * (end - start), cfg.num_heads, length, cfg.embed_dim // cfg.num_heads

    def _blocks(self, x: torch.Tensor, start: int, end: int) -> torch.Tensor:
        for blk in self.encoder.blocks[start:end]:
            x = blk(x)
        return x

    def decode(self, tokens: torch.Tensor, image_hw: tuple[int, int],
               exits: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """The token buffer after the last stage [B, L, C] -> logits [B, K, H, W]: the encoder's final norm,
        the decoder over the patch grid, upsampling to the image size.

        `exits` (early-exit policies such as DToP): (log-probabilities [B, N, K], exited [B, N] 0/1) of patches
        whose prediction was final at an earlier head. Their log-probabilities replace the decoder's at patch
        level, before upsampling; with no patch exited the labels are the decoder's own (log-softmax keeps
        each patch's arg-max and the upsampled arg-max)."""
        grid = self.encoder.grid_for(*image_hw)
        masks = self._patch_logits(tokens, grid)
        if exits is not None:
            logp, exited = exits
            b, k = masks.shape[:2]
            masks = torch.lerp(torch.log_softmax(masks, dim=1), logp.transpose(1, 2).reshape(b, k, *grid),
                               exited.to(masks.dtype).reshape(b, 1, *grid))
        return F.interpolate(masks, size=image_hw, mode="bilinear", align_corners=False)

    def _patch_logits(self, tokens: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """The buffer [B, L, C] -> the decoder's logits on the patch grid [B, K, rows, cols] (the final norm first)."""
        return self.decoder(self.encoder.norm(tokens)[:, self.encoder.num_extra_tokens :], grid)

    @property
    def tiles_decodable(self) -> bool:
        """Whether `decode_tiles` applies: a linear decoder (each patch's logits its own token's) on an input that is
        a whole number of patches."""
        h, w = self.cfg.image_size
        return self.cfg.decoder == "linear" and h % self.cfg.patch_size == 0 and w % self.cfg.patch_size == 0

    def decode_tiles(self, tokens: torch.Tensor, tiles: torch.Tensor) -> torch.Tensor:
        """`decode`'s logits on the p x p pixel tiles of the patches `tiles` [B, t] only: [B, K, t, p, p].

        With a linear decoder a tile's pixels depend only on the decoder's output at its patch and the 8 around it
        (bilinear upsampling by the patch size, the border replicated as `F.interpolate` clamps it), with the same
        weights for every tile: a frame that recomputed a few patches (temporal reuse) redraws only the tiles
        around them instead of upsampling the whole image."""
        if not self.tiles_decodable:
            raise UserError("tile decoding needs a linear decoder on an input of whole patches")
        rows, cols = self.cfg.grid
        p = self.cfg.patch_size
        masks = self._patch_logits(tokens, (rows, cols))
        b, k = masks.shape[:2]
        padded = F.pad(masks, (1, 1, 1, 1), mode="replicate").reshape(b, k, (rows + 2) * (cols + 2))
        centre = (tiles // cols + 1) * (cols + 2) + tiles % cols + 1  # [B, t] in the padded grid
        around = torch.tensor([dy * (cols + 2) + dx for dy in (-1, 0, 1) for dx in (-1, 0, 1)], device=tiles.device)
        where = (centre.unsqueeze(-1) + around).reshape(b, 1, -1).expand(b, k, -1)
        near = torch.gather(padded, 2, where).reshape(b, k, -1, 9)  # [B, K, t, 9]
        weights = tile_weights(p, masks.dtype, masks.device)  # [9, p * p]
        return (near @ weights).reshape(b, k, -1, p, p)

    def forward_unpaused(self, images: torch.Tensor) -> torch.Tensor:
        """The plain Segmenter forward (every block on every token, no pausing heads): the budget-1 reference."""
        tokens = self._blocks(self.embed(images), 0, len(self.encoder.blocks))
        return self.decode(tokens, (images.shape[-2], images.shape[-1]))

    def forward(self, images: torch.Tensor, budget: float = 1.0, threshold: float | None = None,
                with_aux: bool | None = None, cost: CostModel | None = None,
                selector: TokenSelector | None = None) -> SegmenterOutput:
        """Segment normalised images [B, 3, H, W] at a compute budget and/or entropy threshold.

        `with_aux` (default: in training mode) evaluates every pausing head and returns its
        predictions for the auxiliary losses even where nothing pauses. `cost` replaces the MAC
        model the budget is a fraction of (e.g. a device's latency profile from the runtime).
        `selector` replaces budget, threshold and cost with another way of choosing the active tokens.
        """
        if with_aux is None:
            with_aux = self.training
        h, w = images.shape[-2], images.shape[-1]
        grid = self.encoder.grid_for(h, w)
        pick = selector or Pauser(cost or self.cost_model(grid), PausingPolicy(budget, threshold))
        bsz, num_patches, last = images.shape[0], grid[0] * grid[1], self.cfg.num_stages - 1
        device = images.device

        tokens = self.embed(images)
        stage_map = torch.zeros(bsz, num_patches, dtype=torch.long, device=device)
        active: torch.Tensor | None = None  # patch positions of the active tokens; None = all
        counts = [num_patches]
        aux: list[AuxPrediction] = []
        for k in range(last + 1):
            if k > 0:  # every token still active runs in this stage
                stage_map = stage_map.fill_(k) if active is None else stage_map.scatter(1, active, k)
            tokens, logits = self.stage(k, tokens, active, head=k < last and (pick.needs_entropy or with_aux))
            if k == last:
                break
            if logits is not None:
                positions = active if active is not None else torch.arange(num_patches, device=device).expand(bsz, -1)
                aux.append(AuxPrediction(logits, positions))
                if pick.wants_head_scores:  # early-exit policies read the head's class prediction itself
                    logp = torch.log_softmax(logits.detach().float(), -1)
                    pick.see_head(k, positions.cpu().numpy(), logp.cpu().numpy())
                keep = pick.select(k, normalised_entropy(logits).detach().cpu().numpy()) if pick.needs_entropy else None
                if keep is not None:
                    active = positions.gather(1, torch.from_numpy(keep).to(device))
            counts.append(num_patches if active is None else active.shape[1])
        exits = pick.exit_predictions()
        logits = self.decode(tokens, (h, w), None if exits is None else
                             tuple(torch.from_numpy(a).to(device) for a in exits))  # type: ignore[arg-type]
        return SegmenterOutput(logits, stage_map.reshape(bsz, *grid), tuple(counts), pick.spent(counts), aux)
