"""The temporal-reuse stage (`PausingSegmenter.stage_context`): a subset of rows attending to cached keys/values."""

from __future__ import annotations

import pytest
import torch

from paumer_edge.config import preset
from paumer_edge.model import PausingSegmenter
from paumer_edge.model.vit import Cache, unfused_attention


def _model() -> PausingSegmenter:
    torch.manual_seed(0)
    return PausingSegmenter(preset("tiny")).eval()


def _blank_caches(m: PausingSegmenter, k: int, b: int) -> list[Cache]:
    start, end = m.cfg.stage_bounds[k]
    return [(torch.zeros(m.cache_shape(b)), torch.zeros(m.cache_shape(b))) for _ in range(start, end)]


def _full_run(m: PausingSegmenter, x: torch.Tensor) -> tuple[torch.Tensor, list[list[Cache]]]:
    """Every stage on every patch through `stage_context`: the buffer at the end and each stage's caches."""
    b, n = x.shape[0], m.cfg.num_patches
    everything = torch.arange(n).expand(b, n)
    fresh = m.embed(x)
    tokens = torch.zeros_like(fresh)
    caches = []
    for k in range(m.cfg.num_stages):
        out = m.stage_context(k, tokens, everything, torch.zeros(b, n, dtype=torch.bool), _blank_caches(m, k, b),
                              fresh=fresh if k == 0 else None)
        tokens = out.tokens
        caches.append(out.caches)
    return tokens, caches


@pytest.mark.parametrize("fused", [True, False])
@torch.no_grad()
def test_every_patch_active_is_the_plain_stage(fused: bool) -> None:
    m = _model()
    x = torch.randn(2, 3, *m.cfg.image_size)
    with unfused_attention(m) if not fused else torch.no_grad():
        ref = m.embed(x)
        for k in range(m.cfg.num_stages):
            ref = m.stage(k, ref).tokens
        tokens, caches = _full_run(m, x)
    torch.testing.assert_close(tokens, ref, rtol=0, atol=1e-6)
    heads, length, dim = m.cache_shape(2)[1:]
    assert len(caches[0]) == m.cfg.stage_bounds[0][1] and caches[0][0][0].shape == (2, heads, length, dim)


@torch.no_grad()
def test_recomputing_some_patches_of_an_unchanged_frame_gives_the_full_result() -> None:
    """With every row's cached keys/values from a full run of the same frame, any subset recomputed attending to
    them reproduces the full computation: the cache is exactly what those rows would have offered."""
    m = _model()
    x = torch.randn(2, 3, *m.cfg.image_size)
    full, caches = _full_run(m, x)
    n = m.cfg.num_patches
    g = torch.Generator().manual_seed(1)
    active = torch.stack([torch.randperm(n, generator=g)[: n // 4].sort().values for _ in range(2)])
    context = torch.ones(2, n, dtype=torch.bool)
    fresh, tokens = m.embed(x), full.clone()
    tokens[:, 1:] += 5.0  # stale rows: whatever the recomputed rows held before must not matter
    tokens[torch.arange(2)[:, None], 1 + active] = 0.0
    for k in range(m.cfg.num_stages):
        tokens = m.stage_context(k, tokens, active, context, caches[k], fresh=fresh if k == 0 else None).tokens
    rows = 1 + active
    torch.testing.assert_close(tokens[torch.arange(2)[:, None], rows], full[torch.arange(2)[:, None], rows],
                               rtol=0, atol=1e-5)


@torch.no_grad()
def test_rows_outside_the_context_are_not_seen() -> None:
    m = _model()
    b, n = 1, m.cfg.num_patches
    tokens = torch.randn(b, n + 1, m.cfg.embed_dim)
    active = torch.tensor([[0, 5, 9]])
    context = torch.zeros(b, n, dtype=torch.bool)
    context[0, 10:20] = True
    start, end = m.cfg.stage_bounds[1]
    caches = [(torch.randn(m.cache_shape(b)), torch.randn(m.cache_shape(b))) for _ in range(start, end)]
    out = m.stage_context(1, tokens, active, context, caches)
    noisy = [(k.clone(), v.clone()) for k, v in caches]
    for k, v in noisy:  # change every cached row outside the context and the active rows
        k[:, :, 21:] += 3.0
        v[:, :, 21:] -= 3.0
    again = m.stage_context(1, tokens, active, context, noisy)
    torch.testing.assert_close(again.tokens, out.tokens, rtol=0, atol=1e-6)
    seen = [(k.clone(), v.clone()) for k, v in caches]
    seen[0][1][:, :, 15] += 3.0  # a context row's cached values do matter
    assert not torch.allclose(m.stage_context(1, tokens, active, context, seen).tokens, out.tokens)
    # the active rows' keys/values are written into the caches; every other row is kept
    written = out.caches[0][0]
    keep = [i for i in range(n + 1) if i not in (0, 1, 6, 10)]
    assert torch.equal(written[:, :, keep], caches[0][0][:, :, keep])
    assert not torch.equal(written[:, :, [0, 1, 6, 10]], caches[0][0][:, :, [0, 1, 6, 10]])
