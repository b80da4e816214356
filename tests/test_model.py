"""The PAUMER network: shapes, budget-1 exactness, real token reduction, pause map, key names."""

from __future__ import annotations

import pytest
import torch

from paumer_edge.config import preset
from paumer_edge.core.pausing import PolicyError, plan_budget
from paumer_edge.model import PausingSegmenter
from paumer_edge.model.vit import Attention, Gelu, written_out

MASK = preset("tiny").replace(name="tiny-mask", decoder="mask_transformer", decoder_depth=1)


@pytest.fixture(params=["linear", "mask_transformer"])
def model(request: pytest.FixtureRequest) -> PausingSegmenter:
    torch.manual_seed(0)
    cfg = preset("tiny") if request.param == "linear" else MASK
    return PausingSegmenter(cfg).eval()


def images(cfg, b: int = 2, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, 3, *cfg.image_size, generator=g)


def block_token_counts(model: PausingSegmenter, x: torch.Tensor, **kw) -> tuple[list[int], object]:
    seen: list[int] = []
    hooks = [blk.register_forward_hook(lambda m, i, o: seen.append(i[0].shape[1])) for blk in model.encoder.blocks]
    try:
        out = model(x, **kw)
    finally:
        for h in hooks:
            h.remove()
    return seen, out


@torch.no_grad()
def test_output_shapes(model: PausingSegmenter) -> None:
    cfg = model.cfg
    out = model(images(cfg), budget=0.5)
    assert out.logits.shape == (2, cfg.num_classes, *cfg.image_size)
    assert out.stage_map.shape == (2, *cfg.grid) and out.stage_map.dtype == torch.int64
    assert len(out.counts) == cfg.num_stages


@torch.no_grad()
def test_budget_one_is_exactly_the_unpaused_network(model: PausingSegmenter) -> None:
    x = images(model.cfg)
    out = model(x, budget=1.0)
    assert torch.equal(out.logits, model.forward_unpaused(x))
    assert out.counts == (model.cfg.num_patches,) * model.cfg.num_stages
    assert out.cost_fraction == 1.0
    assert (out.stage_map == model.cfg.num_stages - 1).all()


@torch.no_grad()
def test_unpaused_reference_is_plain_segmenter_forward() -> None:
    """forward_unpaused = encoder (embed, blocks, norm) -> drop class token -> decoder -> upsample."""
    torch.manual_seed(1)
    m = PausingSegmenter(preset("tiny")).eval()
    x = images(m.cfg)
    t = m.encoder.embed(x)
    for blk in m.encoder.blocks:
        t = blk(t)
    t = m.encoder.norm(t)[:, 1:]
    grid = m.cfg.grid
    masks = m.decoder.head(t).transpose(1, 2).reshape(2, -1, *grid)
    ref = torch.nn.functional.interpolate(masks, size=m.cfg.image_size, mode="bilinear", align_corners=False)
    assert torch.equal(m.forward_unpaused(x), ref)


@torch.no_grad()
def test_later_blocks_really_run_on_fewer_tokens() -> None:
    torch.manual_seed(0)
    m = PausingSegmenter(preset("sample")).eval()
    x = images(m.cfg, b=1)
    seen, out = block_token_counts(m, x, budget=0.5)
    plan = plan_budget(m.cost_model(), 0.5)
    assert out.counts == plan.counts
    expected = []
    for (start, end), n in zip(m.cfg.stage_bounds, plan.counts):
        expected += [n + 1] * (end - start)  # + class token, never paused
    assert seen == expected
    assert seen[-1] < seen[0] // 2
    assert out.cost_fraction <= 0.5


@torch.no_grad()
def test_pause_map_matches_counts() -> None:
    torch.manual_seed(0)
    m = PausingSegmenter(preset("sample")).eval()
    out = m(images(m.cfg, b=2), budget=0.25)
    for k, n in enumerate(out.counts):  # every image has exactly counts[k] patches reaching stage k
        reached = (out.stage_map >= k).flatten(1).sum(1)
        assert reached.tolist() == [n, n]


@torch.no_grad()
def test_paused_tokens_keep_their_features() -> None:
    """A token paused after stage 0 reaches the decoder with exactly its stage-0 features."""
    torch.manual_seed(0)
    m = PausingSegmenter(preset("tiny")).eval()
    x = images(m.cfg, b=1)
    captured = {}
    hook = m.encoder.norm.register_forward_hook(lambda mod, i, o: captured.setdefault("pre", i[0]))
    out = m(x, budget=0.3)
    hook.remove()
    t = m.encoder.embed(x)
    start, end = m.cfg.stage_bounds[0]
    for blk in m.encoder.blocks[start:end]:
        t = blk(t)
    paused = (out.stage_map.flatten(1)[0] == 0).nonzero().flatten()
    assert len(paused) > 0
    assert torch.allclose(captured["pre"][0, 1 + paused], t[0, 1 + paused], atol=1e-6)


@torch.no_grad()
def test_threshold_mode() -> None:
    torch.manual_seed(0)
    m = PausingSegmenter(preset("tiny")).eval()
    x = images(m.cfg)
    assert m(x, threshold=0.0).counts == (m.cfg.num_patches,) * m.cfg.num_stages
    strict = m(x, threshold=1.0)
    assert strict.counts[1:] == (1, 1, 1)


@torch.no_grad()
def test_batch_shares_one_count() -> None:
    torch.manual_seed(0)
    m = PausingSegmenter(preset("tiny")).eval()
    out = m(images(m.cfg, b=3), threshold=0.99)
    per_image = [(out.stage_map[i] >= 1).sum().item() for i in range(3)]
    assert per_image == [out.counts[1]] * 3


def test_budget_out_of_range_raises(model: PausingSegmenter) -> None:
    with pytest.raises(PolicyError):
        model(images(model.cfg), budget=0.0)


def test_timm_and_segmenter_key_names() -> None:
    keys = set(PausingSegmenter(MASK).state_dict())
    for k in ["encoder.patch_embed.proj.weight", "encoder.cls_token", "encoder.pos_embed",
              "encoder.blocks.0.norm1.weight", "encoder.blocks.0.attn.qkv.weight", "encoder.blocks.0.attn.proj.bias",
              "encoder.blocks.3.norm2.bias", "encoder.blocks.3.mlp.fc1.weight", "encoder.blocks.3.mlp.fc2.weight",
              "encoder.norm.weight", "pause_heads.0.norm.weight", "pause_heads.2.head.weight",
              "decoder.proj_dec.weight", "decoder.cls_emb", "decoder.proj_patch", "decoder.proj_classes",
              "decoder.decoder_norm.weight", "decoder.mask_norm.weight", "decoder.blocks.0.attn.qkv.weight"]:
        assert k in keys, k
    assert "decoder.head.weight" in PausingSegmenter(preset("tiny")).state_dict()


@torch.no_grad()
def test_other_image_sizes_resize_position_embedding() -> None:
    torch.manual_seed(0)
    m = PausingSegmenter(preset("tiny")).eval()
    x = torch.randn(1, 3, 48, 80)
    out = m(x, budget=0.5)
    assert out.logits.shape == (1, m.cfg.num_classes, 48, 80)
    assert out.stage_map.shape == (1, 6, 10)
    assert out.counts[0] == 60


def test_training_mode_returns_aux_for_every_head() -> None:
    torch.manual_seed(0)
    m = PausingSegmenter(preset("tiny")).train()
    out = m(images(m.cfg), budget=1.0)
    assert len(out.aux) == len(m.cfg.pause_after)
    assert out.aux[0].logits.shape == (2, m.cfg.num_patches, m.cfg.num_classes)
    out.logits.sum().backward()  # gradients flow through the paused path too
    out = m(images(m.cfg), budget=0.4)
    (out.logits.sum() + sum(a.logits.sum() for a in out.aux)).backward()
    assert all(p.grad is not None for p in m.parameters())


@torch.no_grad()
def test_written_out_attention_and_gelu_match_the_fused_kernels(model: PausingSegmenter) -> None:
    x = images(model.cfg)
    fused = model(x, budget=0.5).logits
    layers = [m for m in model.modules() if isinstance(m, (Attention, Gelu))]
    assert {type(m) for m in layers} == {Attention, Gelu}
    with written_out(model):
        assert not any(m.fused for m in layers)
        written = model(x, budget=0.5).logits
    assert all(m.fused for m in layers)  # restored
    torch.testing.assert_close(written, fused, rtol=1e-4, atol=1e-4)
    with pytest.raises(RuntimeError), written_out(model):
        raise RuntimeError("export failed")
    assert all(m.fused for m in layers)  # restored on errors too


def test_written_out_gelu_is_the_erf_gelu() -> None:
    x = torch.linspace(-6, 6, 1001)
    gelu = Gelu()
    gelu.fused = False
    torch.testing.assert_close(gelu(x), torch.nn.functional.gelu(x), rtol=1e-6, atol=1e-6)
