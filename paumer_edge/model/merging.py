"""Token merging (ToMe) on the PAUMER encoder, training-free, with the tokens unmerged before the decoder.

ToMe (Bolya et al., "Token Merging: Your ViT But Faster", ICLR 2023; github.com/facebookresearch/ToMe) merges
the `r` most similar pairs of tokens in every block, between attention and MLP: the tokens are split into two
alternating sets, each token of the first set is matched to its most similar token of the second (cosine
similarity of the attention keys, averaged over heads), and the `r` best-matched ones are averaged into their
match, weighted by how many patches each already stands for. Attention is proportional (each key's logit is
raised by the log of its size), so a merged token counts as the patches it holds. The class token never merges.

Segmentation needs a token per patch, so, as Segformer++ (Kienzle et al., MIPR 2024) does for SegFormer, the
merged tokens are unmerged before the decoder: every patch takes the features of the token it was merged into
(tracked as one index per patch, not ToMe's N x N source matrix).

With `r` fixed every shape is static, so the whole network exports to one ONNX graph (`export --peers tome`).
The merge is written without scatter-with-reduction: the sum of each destination's sources is a matrix product
with a one-hot assignment (Equal, Cast, MatMul), because TensorRT's scatter layer has no reduction (a
`ScatterElements` with `reduction` goes to a plugin, `ScatterND` with one is refused by its ONNX parser). The
graph needs MatMul, ReduceMax, ArgMax, TopK (the arg-sort), GatherElements, ScatterElements without reduction
(the index bookkeeping), Equal, Cast, Log, Softmax: all in TensorRT's ONNX operator support (TensorRT 10).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from .. import UserError
from .segmenter import PausingSegmenter
from .vit import Attention, Block


class Merged(NamedTuple):
    tokens: torch.Tensor  # [B, T', C] extra tokens, then the unmerged tokens of the first set, then the second set
    size: torch.Tensor  # [B, T', 1] patches each token stands for
    where: torch.Tensor  # [B, N] int64: for every original patch, its token's row among the patch tokens


def max_merge(num_patches: int, depth: int) -> int:
    """The largest r every block can merge: at most half the patch tokens left, at least one token at the end."""
    r = 0
    while True:
        n = num_patches
        ok = True
        for _ in range(depth):
            if r + 1 > n // 2:
                ok = False
                break
            n -= r + 1
        if not ok:
            return r
        r += 1


def sized_attention(attn: Attention, x: torch.Tensor, log_size: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """`attn` on the normalised tokens x [B, T, C] with proportional attention (key logits + log size [B, T]);
    also returns the keys averaged over heads [B, T, head_dim], ToMe's similarity metric."""
    b, n, c = x.shape
    q, k, v = attn.qkv(x).reshape(b, n, 3 * attn.num_heads, attn.head_dim).transpose(1, 2).chunk(3, dim=1)
    logits = (q * attn.scale) @ k.transpose(-2, -1) + log_size[:, None, None, :]
    out = attn.proj((logits.softmax(dim=-1) @ v).transpose(1, 2).reshape(b, n, c))
    return out, k.mean(1)


def merge(x: torch.Tensor, size: torch.Tensor, where: torch.Tensor, metric: torch.Tensor, r: int,
          extra: int) -> Merged:
    """Bipartite soft matching: merge the `r` best-matched patch tokens of the first (even) set into the second.

    x [B, T, C] (extra tokens first), size [B, T, 1], where [B, N], metric [B, T, D]."""
    ex, ex_size = x[:, :extra], size[:, :extra]
    m = F.normalize(metric[:, extra:], dim=-1)
    a_x, b_x = x[:, extra::2], x[:, extra + 1 :: 2]
    a_s, b_s = size[:, extra::2], size[:, extra + 1 :: 2]
    n_a, n_b, c = a_x.shape[1], b_x.shape[1], x.shape[-1]
    scores = m[:, ::2] @ m[:, 1::2].transpose(-1, -2)  # [B, Na, Nb]
    best, match = scores.max(dim=-1)
    order = best.argsort(dim=-1, descending=True)  # the best-matched first
    src, unm = order[:, :r], order[:, r:].sort(dim=-1).values  # unmerged tokens keep their order
    dst = match.gather(1, src)  # [B, r] where each merged token goes

    def rows(t: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        return t.gather(1, idx[..., None].expand(-1, -1, t.shape[-1]))

    assign = (dst[:, :, None] == torch.arange(n_b, device=x.device)).to(x.dtype)  # [B, r, Nb] one-hot
    sent = assign.transpose(1, 2) @ torch.cat([rows(a_x, src) * rows(a_s, src), rows(a_s, src)], dim=-1)
    total = b_s + sent[..., c:]
    b_x = (b_x * b_s + sent[..., :c]) / total
    tokens = torch.cat([ex, rows(a_x, unm), b_x], dim=1)
    sizes = torch.cat([ex_size, rows(a_s, unm), total], dim=1)
    # where every token of the two sets is now, among the patch tokens: unmerged ones in order, merged ones at
    # their destination, the second set after the unmerged ones
    kept = n_a - r
    now_a = torch.zeros_like(best, dtype=torch.long)
    now_a = now_a.scatter(1, unm, torch.arange(kept, device=x.device).expand(x.shape[0], -1))
    now_a = now_a.scatter(1, src, kept + dst)
    now_b = (kept + torch.arange(n_b, device=x.device)).expand(x.shape[0], -1)
    now = torch.stack([now_a, now_b], dim=2).reshape(x.shape[0], -1) if n_a == n_b else \
        torch.cat([torch.stack([now_a[:, :n_b], now_b], dim=2).reshape(x.shape[0], -1), now_a[:, n_b:]], dim=1)
    return Merged(tokens, sizes, now.gather(1, where))


def merged_block(blk: Block, state: Merged, r: int, extra: int) -> Merged:
    """One block with ToMe: attention on all tokens, merge `r` of them, MLP on what is left."""
    x, size, where = state
    y, metric = sized_attention(blk.attn, blk.norm1(x), size[..., 0].log())
    x = x + y
    if r > 0:
        x, size, where = merge(x, size, where, metric, r, extra)
    return Merged(x + blk.mlp(blk.norm2(x)), size, where)


def merged_encoder(model: PausingSegmenter, images: torch.Tensor, r: int) -> torch.Tensor:
    """The encoder with `r` tokens merged per block, unmerged at the end: the token buffer [B, L, C] the decoder
    reads (extra tokens, then one row per patch)."""
    depth = len(model.encoder.blocks)
    tokens = model.embed(images)
    b, length, _ = tokens.shape
    extra = model.encoder.num_extra_tokens
    patches = length - extra
    if not 0 <= r <= max_merge(patches, depth):
        raise UserError(f"ToMe merges at most {max_merge(patches, depth)} tokens per block on {patches} patches "
                         f"over {depth} blocks, not {r}")
    state = Merged(tokens, tokens.new_ones(b, length, 1),
                   torch.arange(patches, device=tokens.device).expand(b, -1))
    for blk in model.encoder.blocks:
        state = merged_block(blk, state, r, extra)  # type: ignore[arg-type]
    x = state.tokens
    back = x[:, extra:].gather(1, state.where[..., None].expand(-1, -1, x.shape[-1]))
    return torch.cat([x[:, :extra], back], dim=1)


def merged_forward(model: PausingSegmenter, images: torch.Tensor, r: int) -> torch.Tensor:
    """Logits [B, K, H, W] of the network with ToMe (`r` per block): the encoder merged, the decoder on every patch."""
    return model.decode(merged_encoder(model, images, r), (images.shape[-2], images.shape[-1]))


def merged_counts(num_patches: int, depth: int, r: int) -> list[int]:
    """Patch tokens each block's MLP runs on (its attention runs on the previous block's count)."""
    counts, n = [], num_patches
    for _ in range(depth):
        n -= min(r, n // 2)
        counts.append(n)
    return counts
