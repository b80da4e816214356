"""`paumer-edge import`: Segmenter, timm and mmseg checkpoints -> paumer-edge, checked against reference forwards.

The references (tests/reference_models.py) are written from the published architectures, independently of
paumer-edge's modules, and run in float64 so any mapping mistake shows far above rounding.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from reference_models import (
    SegViT,
    mmseg_checkpoint,
    randomise,
    write_segmenter,
)

from paumer_edge.checkpoint import load_model, save_checkpoint
from paumer_edge.cli import main
from paumer_edge.config import preset
from paumer_edge.data.labelsets import ADE20K_CLASSES, CITYSCAPES_CLASSES, CITYSCAPES_PALETTE
from paumer_edge.model import PausingSegmenter
from paumer_edge.model.padding import segment_any_size

TOL = 1e-9  # float64: rounding differences are ~1e-14


def run_cli(*args: str | Path) -> int:
    return main(["import", *[str(a) for a in args]])


def one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("paumer-edge import: error:"), err
    return err


def images(h: int, w: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(2, 3, h, w, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def assert_same(ours: torch.Tensor, theirs: torch.Tensor) -> None:
    assert ours.shape == theirs.shape
    assert torch.allclose(ours, theirs, atol=TOL, rtol=0), (ours - theirs).abs().max()
    assert torch.equal(ours.argmax(1), theirs.argmax(1))


# ---- Segmenter --------------------------------------------------------------------------------
def test_segmenter_linear_matches_segmenter_at_budget_1(tmp_path: Path) -> None:
    ref = write_segmenter(tmp_path / "run", "linear", 150, "ade20k").double()
    out, report = tmp_path / "seg.pt", tmp_path / "report.json"
    assert run_cli(tmp_path / "run" / "checkpoint.pth", "-o", out, "--report", report) == 0  # format detected
    model = load_model(out).double()
    cfg = model.cfg
    assert (cfg.embed_dim, cfg.depth, cfg.num_heads, cfg.patch_size, cfg.image_size) == (128, 4, 4, 8, (32, 48))
    assert cfg.decoder == "linear" and cfg.class_names == ADE20K_CLASSES and cfg.pause_after == (1, 2, 3)
    assert cfg.norm_eps == 1e-5 and cfg.pos_embed_interp == "bilinear" and cfg.mean == (0.5, 0.5, 0.5)
    with torch.no_grad():
        for h, w in [(32, 48), (30, 45), (41, 45)]:  # exact; padded; padded to another grid (pos_embed resized)
            x = images(h, w)
            assert_same(segment_any_size(model, x, budget=1.0).logits, ref(x))
        half = model(images(32, 48), budget=0.5)
        assert half.counts[-1] < half.counts[0] and half.logits.shape == (2, 150, 32, 48)

    r = json.loads(report.read_text())
    assert r["format"] == "segmenter" and r["config"]["decoder"] == "linear"
    mapped = {m["target"]: m["source"] for m in r["mapped"]}
    assert mapped["encoder.blocks.3.attn.qkv.weight"] == "encoder.blocks.3.attn.qkv.weight"
    assert mapped["decoder.head.weight"] == "decoder.head.weight" and len(mapped) == len(r["mapped"])
    assert {i["key"] for i in r["initialised"]} == {f"pause_heads.{k}.{p}.{t}" for k in range(3)
                                                    for p in ("norm", "head") for t in ("weight", "bias")}
    ignored = {i["key"] for i in r["ignored"]}
    assert {"encoder.head.weight", "encoder.head.bias", "optimizer", "epoch"} <= ignored


def test_segmenter_mask_transformer_distilled_matches_segmenter(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    ref = write_segmenter(tmp_path / "run", "mask_transformer", 19, "cityscapes", distilled=True,
                          normalization="deit").double()
    out = tmp_path / "mask.pt"
    assert run_cli(tmp_path / "run", "-o", out, "--pause-after", "2", "--format", "segmenter") == 0  # the folder
    printed = capsys.readouterr().out
    assert "mapped" in printed and "pause_heads.N.*" in printed and "encoder.head_dist.*" in printed
    model = load_model(out).double()
    cfg = model.cfg
    assert cfg.decoder == "mask_transformer" and cfg.decoder_depth == 2 and cfg.mask_heads == 2
    assert cfg.distilled and cfg.num_extra_tokens == 2 and cfg.pause_after == (2,)
    assert cfg.class_names == CITYSCAPES_CLASSES and cfg.palette == CITYSCAPES_PALETTE
    assert cfg.mean == (0.485, 0.456, 0.406) and cfg.std == (0.229, 0.224, 0.225)
    with torch.no_grad():
        for h, w in [(32, 48), (27, 50)]:
            x = images(h, w, seed=1)
            assert_same(segment_any_size(model, x).logits, ref(x))
        x = images(32, 48)
        assert torch.equal(model(x, budget=1.0).logits, model.forward_unpaused(x))


def test_segmenter_imported_at_another_size_matches_segmenter_there(tmp_path: Path) -> None:
    ref = write_segmenter(tmp_path / "run", "mask_transformer", 6, "pascal_context")
    out = tmp_path / "big.pt"
    assert run_cli(tmp_path / "run" / "checkpoint.pth", "-o", out, "--image-size", "48x64") == 0
    model = load_model(out)
    assert model.cfg.image_size == (48, 64) and model.encoder.pos_embed.shape[1] == 1 + 6 * 8
    assert model.cfg.class_names[0] == "class 0"  # pascal_context: no names known
    x = images(48, 64, seed=2).float()  # float32 throughout: the resized embedding is stored in float32
    with torch.no_grad():
        ours, theirs = model(x).logits, ref(x)  # Segmenter resizes its 4x6 position grid the same way (bilinear)
    assert torch.allclose(ours, theirs, atol=5e-4, rtol=0) and torch.equal(ours.argmax(1), theirs.argmax(1))


def test_segmenter_without_variant_and_with_a_fresh_decoder(tmp_path: Path) -> None:
    write_segmenter(tmp_path / "run", "linear", 150, "ade20k")
    (tmp_path / "run" / "variant.yml").unlink()
    out, report = tmp_path / "fresh.pt", tmp_path / "r.json"
    src = tmp_path / "run" / "checkpoint.pth"
    assert run_cli(src, "-o", out, "--num-heads", "4") == 2  # a 4x6 grid is not square: the size is asked for
    assert run_cli(src, "-o", out, "--num-heads", "4", "--source-size", "32x48", "--fresh-decoder",
                   "--decoder", "mask_transformer", "--num-classes", "19", "--report", report) == 0
    cfg = load_model(out).cfg
    assert cfg.image_size == (32, 48) and cfg.num_heads == 4
    assert cfg.decoder == "mask_transformer" and cfg.class_names == CITYSCAPES_CLASSES
    r = json.loads(report.read_text())
    assert any(i["key"] == "decoder.cls_emb" for i in r["initialised"])
    assert any(i["key"] == "decoder.head.weight" and "new decoder" in i["why"] for i in r["ignored"])


# ---- timm -------------------------------------------------------------------------------------
def timm_vit(seed: int = 3) -> SegViT:
    vit = SegViT((32, 32), 8, 128, 3, 2, eps=1e-6)  # timm: LayerNorm eps 1e-6
    randomise(vit, seed)
    return vit.double().eval()


def test_timm_encoder_lands_and_matches(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    vit = timm_vit()
    src = tmp_path / "vit.pth"
    torch.save({k: v.float() for k, v in vit.state_dict().items()}, src)  # a raw timm state dict
    out = tmp_path / "vit-paumer.pt"
    assert run_cli(src, "-o", out, "--num-classes", "7") == 0
    assert "width // 64" in capsys.readouterr().out  # heads: the default is said
    model = load_model(out).double()
    assert model.cfg.num_heads == 2 and model.cfg.norm_eps == 1e-6 and model.cfg.pos_embed_interp == "bicubic"
    assert model.cfg.pause_after == (1, 2) and model.cfg.num_classes == 7 and model.cfg.decoder == "linear"
    assert torch.equal(model.encoder.blocks[2].mlp.fc1.weight, vit.blocks[2].mlp.fc1.weight.float().double())
    x = images(32, 32, seed=4)
    with torch.no_grad():
        assert torch.allclose(model.encoder(x), vit(x), atol=TOL, rtol=0)


def test_timm_safetensors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    safetensors = pytest.importorskip("safetensors.torch", reason="safetensors is an optional reader")
    vit = timm_vit(seed=10)
    safetensors.save_file({k: v.float().contiguous() for k, v in vit.state_dict().items()}, tmp_path / "m.safetensors")
    assert run_cli(tmp_path / "m.safetensors", "--num-classes", "2") == 0  # default output: beside the source
    model = load_model(tmp_path / "m-paumer-edge.pt").double()
    with torch.no_grad():
        assert torch.allclose(model.encoder(images(32, 32)), vit(images(32, 32)), atol=TOL, rtol=0)
    (tmp_path / "bad.safetensors").write_bytes(b"\x00" * 16)
    assert run_cli(tmp_path / "bad.safetensors", "--num-classes", "2") == 2
    assert "not a readable safetensors file" in one_line_error(capsys)


def test_timm_without_qkv_bias_or_class_position(tmp_path: Path) -> None:
    vit = timm_vit(seed=5)
    with torch.no_grad():
        for blk in vit.blocks:
            blk.attn.qkv.bias.zero_()
        vit.pos_embed[:, 0].zero_()
    state = {k: v.float() for k, v in vit.state_dict().items() if not k.endswith("attn.qkv.bias")}
    state["pos_embed"] = state["pos_embed"][:, 1:]  # timm no_embed_class
    torch.save({"state_dict": state, "epoch": 9}, tmp_path / "vit.pth")
    out, report = tmp_path / "o.pt", tmp_path / "r.json"
    assert run_cli(tmp_path / "vit.pth", "-o", out, "--num-classes", "3", "--format", "timm", "--report", report) == 0
    r = json.loads(report.read_text())
    assert {"key": "encoder.blocks.1.attn.qkv.bias", "why": "zeros: the source has no qkv bias"} in r["initialised"]
    assert not any(m["target"].endswith("qkv.bias") for m in r["mapped"]) and r["ignored"][0]["key"] == "epoch"
    model = load_model(out).double()
    x = images(32, 32, seed=6)
    with torch.no_grad():
        assert torch.allclose(model.encoder(x), vit(x), atol=TOL, rtol=0)


# ---- mmseg ------------------------------------------------------------------------------------
@pytest.mark.parametrize("head", ["mask", "linear"])
def test_mmseg_in_proj_layout_and_heads_match(tmp_path: Path, head: str) -> None:
    backbone, decode = mmseg_checkpoint(tmp_path / "mmseg.pth", head)
    out, report = tmp_path / "m.pt", tmp_path / "r.json"
    assert run_cli(tmp_path / "mmseg.pth", "-o", out, "--report", report) == 0
    model = load_model(out).double()
    cfg = model.cfg
    assert cfg.decoder == ("mask_transformer" if head == "mask" else "linear") and cfg.num_heads == 2
    assert cfg.class_names == ("thing 0", "thing 1", "thing 2", "thing 3") and cfg.palette[3] == (3, 6, 9)
    assert torch.equal(model.encoder.blocks[1].attn.qkv.weight, backbone.layers[1].attn.attn.in_proj_weight)
    x = images(32, 32, seed=9)
    with torch.no_grad():
        features = model.encoder(x)[:, 1:].transpose(1, 2).reshape(2, 128, 4, 4)
        assert torch.allclose(features, backbone(x), atol=TOL, rtol=0)
        theirs = F.interpolate(decode(backbone(x)), size=(32, 32), mode="bilinear", align_corners=False)
        assert_same(model(x, budget=1.0).logits, theirs)
    r = json.loads(report.read_text())
    mapped = {m["target"]: m["source"] for m in r["mapped"]}
    assert mapped["encoder.blocks.2.attn.qkv.bias"] == "backbone.layers.2.attn.attn.in_proj_bias"
    assert mapped["encoder.norm.weight"] == "backbone.ln1.weight"
    assert "auxiliary_head.conv_seg.weight" in {i["key"] for i in r["ignored"]}


# ---- detection and errors ---------------------------------------------------------------------
class CodeInside:
    """Pickled by reference: loading it would import (run) this module's code."""


def test_auto_detection(tmp_path: Path) -> None:
    from paumer_edge.weights import detect_format

    write_segmenter(tmp_path / "run", "linear", 5, "x")
    mmseg_checkpoint(tmp_path / "mm.pth", "mask")
    seg = torch.load(tmp_path / "run" / "checkpoint.pth", weights_only=True)["model"]
    mm = torch.load(tmp_path / "mm.pth", weights_only=True)["state_dict"]
    assert detect_format(seg, tmp_path) == "segmenter"
    assert detect_format(mm, tmp_path) == "mmseg"
    assert detect_format({k[len("backbone."):]: v for k, v in mm.items() if k.startswith("backbone.")},
                         tmp_path) == "mmseg"  # a bare mmseg backbone
    assert detect_format(timm_vit().state_dict(), tmp_path) == "timm"


def test_user_errors_are_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_segmenter(tmp_path / "run", "linear", 5, "x")
    seg = tmp_path / "run" / "checkpoint.pth"
    (tmp_path / "notes.txt").write_text("not a checkpoint\n")
    torch.save({"model": CodeInside()}, tmp_path / "code.pth")
    torch.save({"foo.weight": torch.zeros(2), "bar.bias": torch.zeros(2)}, tmp_path / "odd.pth")
    bad = {k: v.float() for k, v in timm_vit().state_dict().items()}
    bad["blocks.1.mlp.fc1.weight"] = torch.zeros(96, 128)
    torch.save(bad, tmp_path / "bad.pth")
    scaled = {k: v.float() for k, v in timm_vit().state_dict().items()} | {"blocks.0.ls1.gamma": torch.ones(128)}
    torch.save(scaled, tmp_path / "ls.pth")
    model = PausingSegmenter(preset("tiny"))
    save_checkpoint(tmp_path / "ours.pt", model)
    cases = [
        ((tmp_path / "notes.txt",), "not a readable PyTorch checkpoint"),
        ((tmp_path / "code.pth",), "holds code"),
        ((tmp_path / "odd.pth",), "unknown layout"),
        ((tmp_path / "bad.pth", "--num-classes", "3"), "inconsistent shapes"),
        ((tmp_path / "ls.pth", "--num-classes", "3"), "blocks.0.ls1.gamma"),
        ((tmp_path / "missing.pth",), "does not exist"),
        ((tmp_path / "ours.pt",), "already a paumer-edge checkpoint"),
        ((seg, "--format", "timm"), "looks like a segmenter checkpoint"),
        ((seg, "--num-classes", "7"), "--fresh-decoder"),
        ((tmp_path / "bad.pth",), "--num-classes"),  # no decoder in a timm checkpoint
        ((seg, "--pause-after", "2,x"), "--pause-after"),
        ((seg, "--pause-after", "4"), "pause_after"),
        ((seg, "--image-size", "30x48"), "multiple of the patch size"),
        ((seg, "--classes", "cityscapes"), "cityscapes has 19 classes"),
        ((seg, "-o", seg), "is the source checkpoint"),
    ]
    for args, message in cases:
        out = () if "-o" in args else ("-o", tmp_path / "out.pt")
        assert run_cli(*args, *out) == 2, args
        assert message in one_line_error(capsys), (args, message)
    assert not (tmp_path / "out.pt").exists()


def test_variant_yml_checks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_segmenter(tmp_path / "run", "linear", 5, "x")
    variant = tmp_path / "run" / "variant.yml"
    text = variant.read_text()
    assert "!!python/tuple" in text  # what Segmenter's yaml.dump writes, read safely
    variant.write_text(text.replace("d_model: 128", "d_model: 256"))
    assert run_cli(tmp_path / "run", "-o", tmp_path / "o.pt") == 2
    assert "is it the variant.yml of this checkpoint" in one_line_error(capsys)
    variant.write_text("net_kwargs: !!python/object/apply:os.system ['echo hi']\n")
    assert run_cli(tmp_path / "run", "-o", tmp_path / "o.pt") == 2
    assert "not a readable Segmenter variant.yml" in one_line_error(capsys)


def test_default_pause_points_and_labelsets() -> None:
    from paumer_edge.data.labelsets import ADE20K_PALETTE, CITYSCAPES_PALETTE
    from paumer_edge.weights import default_pause_points

    assert default_pause_points(12) == (3, 6, 9) and default_pause_points(24) == (6, 12, 18)
    assert default_pause_points(2) == (1,) and default_pause_points(1) == ()
    assert len(ADE20K_CLASSES) == len(set(ADE20K_CLASSES)) == len(ADE20K_PALETTE) == 150
    assert len(CITYSCAPES_CLASSES) == len(CITYSCAPES_PALETTE) == 19 and CITYSCAPES_CLASSES[0] == "road"
    assert all(0 <= c <= 255 for rgb in ADE20K_PALETTE + CITYSCAPES_PALETTE for c in rgb)
