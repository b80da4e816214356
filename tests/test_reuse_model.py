"""The temporal-reuse stage (`PausingSegmenter.stage_context`): a subset of rows attending to cached keys/values."""

from __future__ import annotations

import pytest
import torch

from paumer_edge import UserError
from paumer_edge.config import preset
from paumer_edge.model import PausingSegmenter
from paumer_edge.model.vit import written_out


def _model() -> PausingSegmenter:
    torch.manual_seed(0)
    return PausingSegmenter(preset("tiny")).eval()


def _full_run(m: PausingSegmenter, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Every stage on every patch through `stage_context` with no context: the buffer at the end and each stage's
    cache (every row ran, so the fresh keys and values are the whole cache)."""
    b, n = x.shape[0], m.cfg.num_patches
    everything = torch.arange(n).expand(b, n)
    tokens = torch.full((b, n + 1, m.cfg.embed_dim), float("nan"))  # every row is written by stage 0
    caches = []
    for k in range(m.cfg.num_stages):
        blank = torch.full(m.cache_shape(k, b), float("nan"))  # no row of it may be read
        out = m.stage_context(k, tokens, everything, torch.zeros(b, 0, dtype=torch.long), blank,
                              image=x if k == 0 else None)
        tokens = out.tokens
        caches.append(out.cache_rows)
    return tokens, caches


@pytest.mark.parametrize("fused", [True, False])
@torch.no_grad()
def test_every_patch_active_is_the_plain_stage(fused: bool) -> None:
    m = _model()
    x = torch.randn(2, 3, *m.cfg.image_size)
    with written_out(m) if not fused else torch.no_grad():
        ref = m.embed(x)
        for k in range(m.cfg.num_stages):
            ref = m.stage(k, ref).tokens
        tokens, caches = _full_run(m, x)
    torch.testing.assert_close(tokens, ref, rtol=0, atol=1e-5)
    assert caches[0].shape == m.cache_shape(0, 2)  # [B, 2 x blocks, heads, L, head_dim]
    assert caches[-1].shape[1] == 2 * (m.cfg.stage_bounds[-1][1] - m.cfg.stage_bounds[-1][0])


@torch.no_grad()
def test_recomputing_some_patches_of_an_unchanged_frame_gives_the_full_result() -> None:
    """With every row's cached keys/values from a full run of the same frame, any subset recomputed attending to
    the others reproduces the full computation: the cache is exactly what those rows would have offered."""
    m = _model()
    x = torch.randn(2, 3, *m.cfg.image_size)
    full, caches = _full_run(m, x)
    n = m.cfg.num_patches
    g = torch.Generator().manual_seed(1)
    order = torch.stack([torch.randperm(n, generator=g) for _ in range(2)])
    active, context = order[:, : n // 4].sort().values, order[:, n // 4 :].sort().values
    tokens = full.clone()
    tokens[:, 1:] += 5.0  # stale rows: whatever the recomputed rows held before must not matter
    tokens[torch.arange(2)[:, None], 1 + active] = 0.0
    for k in range(m.cfg.num_stages):
        stale = caches[k].clone()
        stale[torch.arange(2)[:, None], :, :, 1 + active] = 7.0  # the recomputed rows' own cache is never read
        tokens = m.stage_context(k, tokens, active, context, stale, image=x if k == 0 else None).tokens
    rows = 1 + active
    torch.testing.assert_close(tokens[torch.arange(2)[:, None], rows], full[torch.arange(2)[:, None], rows],
                               rtol=0, atol=1e-5)


@torch.no_grad()
def test_rows_outside_the_context_are_not_seen() -> None:
    m = _model()
    b, n = 1, m.cfg.num_patches
    tokens = torch.randn(b, n + 1, m.cfg.embed_dim)
    active = torch.tensor([[0, 5, 9]])
    context = torch.arange(10, 20)[None]
    cache = torch.randn(m.cache_shape(1, b))
    out = m.stage_context(1, tokens, active, context, cache)
    noisy = cache.clone()
    noisy[..., 21:, :] += 3.0  # every cached row outside the context (rows 11..20) and the active rows
    noisy[..., [0, 1, 6, 10], :] -= 3.0
    again = m.stage_context(1, tokens, active, context, noisy)
    torch.testing.assert_close(again.tokens, out.tokens, rtol=0, atol=1e-6)
    seen = cache.clone()
    seen[:, 1, :, 15] += 3.0  # a context row's cached values (the stage's first block) do matter
    changed = m.stage_context(1, tokens, active, context, seen)
    assert not torch.allclose(changed.tokens, out.tokens)
    # the rows that ran (the class token, then the active patches) come back with their fresh keys and values:
    # the first block's keys depend on the rows alone, not on what the cache holds
    assert out.cache_rows.shape == (b, cache.shape[1], cache.shape[2], 4, cache.shape[4])
    torch.testing.assert_close(changed.cache_rows[:, 0], out.cache_rows[:, 0], rtol=0, atol=0)
    blk = m.encoder.blocks[m.cfg.stage_bounds[1][0]]
    x = tokens[:, [0, 1, 6, 10]]
    keys = blk.attn.qkv(blk.norm1(x))[..., m.cfg.embed_dim : 2 * m.cfg.embed_dim]
    heads = m.cfg.num_heads
    torch.testing.assert_close(out.cache_rows[:, 0], keys.reshape(b, 4, heads, -1).transpose(1, 2))


@torch.no_grad()
def test_embedding_some_rows_is_those_rows_of_the_frame_embedding() -> None:
    m = _model()
    x = torch.randn(2, 3, *m.cfg.image_size)
    rows = torch.tensor([[0, 1, 7, 30], [0, 2, 3, 32]])  # the class token, then patches (buffer rows)
    full = m.embed(x)
    want = torch.stack([full[i, rows[i]] for i in range(2)]).reshape(-1, m.cfg.embed_dim)
    torch.testing.assert_close(m.encoder.embed_rows(x, rows), want, rtol=0, atol=1e-5)


@torch.no_grad()
def test_decoding_some_tiles_is_those_tiles_of_the_whole_decode() -> None:
    m = _model()
    assert m.tiles_decodable
    tokens = m.embed(torch.randn(2, 3, *m.cfg.image_size))
    logits = m.decode(tokens, tuple(m.cfg.image_size))  # [B, K, H, W]
    rows, cols = m.cfg.grid
    p = m.cfg.patch_size
    tiles = torch.tensor([[0, cols - 1, cols + 2, rows * cols - 1], [1, 5, (rows - 1) * cols, 9]])  # corners, edges
    got = m.decode_tiles(tokens, tiles)  # [B, K, t, p, p]
    for i in range(2):
        for j, t in enumerate(tiles[i].tolist()):
            r, c = divmod(t, cols)
            torch.testing.assert_close(got[i, :, j], logits[i, :, r * p:(r + 1) * p, c * p:(c + 1) * p],
                                       rtol=0, atol=1e-5)


def test_tile_decoding_needs_a_linear_decoder() -> None:
    torch.manual_seed(0)
    m = PausingSegmenter(preset("tiny").replace(decoder="mask_transformer")).eval()
    assert not m.tiles_decodable
    with pytest.raises(UserError, match="tile decoding needs a linear decoder"):
        m.decode_tiles(m.embed(torch.randn(1, 3, *m.cfg.image_size)), torch.tensor([[0]]))
