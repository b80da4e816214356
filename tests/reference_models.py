"""Reference implementations of published segmenters, written independently of paumer-edge, and writers of
their checkpoints: the ground truth `tests/test_import.py` checks imports against.

From the published architectures (rstrudel/segmenter segm/model/*.py, timm's VisionTransformer, mmseg's
VisionTransformer + SegmenterMaskTransformerHead): manual attention for Segmenter, torch's
nn.MultiheadAttention for mmseg. The tests run them in float64, so any mapping mistake shows far above rounding.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
import yaml
from torch import nn


# ---- Segmenter, as published ------------------------------------------------------------------
class SegAttention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads, self.scale = heads, (dim // heads) ** -0.5
        self.qkv, self.proj = nn.Linear(dim, dim * 3), nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))


class SegFeedForward(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class SegBlock(nn.Module):
    def __init__(self, dim: int, heads: int, eps: float = 1e-5):  # Segmenter: nn.LayerNorm(dim)
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim, eps=eps), nn.LayerNorm(dim, eps=eps)
        self.attn, self.mlp = SegAttention(dim, heads), SegFeedForward(dim, 4 * dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PatchEmbedding(nn.Module):
    def __init__(self, patch: int, dim: int):
        super().__init__()
        self.proj = nn.Conv2d(3, dim, kernel_size=patch, stride=patch)


class SegViT(nn.Module):
    """Segmenter's VisionTransformer (= timm's key names); `eps` 1e-5 as Segmenter, 1e-6 as timm."""

    def __init__(self, image_size: tuple[int, int], patch: int, dim: int, depth: int, heads: int,
                 distilled: bool = False, eps: float = 1e-5):
        super().__init__()
        self.patch, self.grid, self.distilled = patch, (image_size[0] // patch, image_size[1] // patch), distilled
        self.patch_embed = PatchEmbedding(patch, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        if distilled:
            self.dist_token = nn.Parameter(torch.zeros(1, 1, dim))
            self.head_dist = nn.Linear(dim, 1000)
        self.pos_embed = nn.Parameter(torch.zeros(1, self.grid[0] * self.grid[1] + 1 + distilled, dim))
        self.blocks = nn.ModuleList(SegBlock(dim, heads, eps) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=eps)
        self.head = nn.Linear(dim, 1000)

    def forward(self, im: torch.Tensor) -> torch.Tensor:
        b, _, h, w = im.shape
        x = self.patch_embed.proj(im).flatten(2).transpose(1, 2)
        extra = [self.cls_token.expand(b, -1, -1)] + ([self.dist_token.expand(b, -1, -1)] if self.distilled else [])
        x = torch.cat([*extra, x], dim=1)
        pos = self.pos_embed
        if x.shape[1] != pos.shape[1]:  # segm/model/utils.py resize_pos_embed: bilinear
            n = len(extra)
            grid = pos[0, n:].reshape(1, *self.grid, -1).permute(0, 3, 1, 2)
            grid = F.interpolate(grid, size=(h // self.patch, w // self.patch), mode="bilinear")
            pos = torch.cat([pos[:, :n], grid.permute(0, 2, 3, 1).reshape(1, -1, pos.shape[-1])], dim=1)
        x = x + pos
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x)


class SegDecoderLinear(nn.Module):
    def __init__(self, n_cls: int, patch: int, dim: int):
        super().__init__()
        self.patch, self.head = patch, nn.Linear(dim, n_cls)

    def forward(self, x: torch.Tensor, im_size: tuple[int, int]) -> torch.Tensor:
        x = self.head(x)
        return x.transpose(1, 2).reshape(x.shape[0], -1, im_size[0] // self.patch, im_size[1] // self.patch)


class SegMaskTransformer(nn.Module):
    def __init__(self, n_cls: int, patch: int, dim: int, n_layers: int):
        super().__init__()
        self.n_cls, self.patch, self.scale = n_cls, patch, dim**-0.5
        self.blocks = nn.ModuleList(SegBlock(dim, dim // 64) for _ in range(n_layers))  # heads = d_model // 64
        self.cls_emb = nn.Parameter(torch.randn(1, n_cls, dim))
        self.proj_dec = nn.Linear(dim, dim)
        self.proj_patch = nn.Parameter(self.scale * torch.randn(dim, dim))
        self.proj_classes = nn.Parameter(self.scale * torch.randn(dim, dim))
        self.decoder_norm, self.mask_norm = nn.LayerNorm(dim), nn.LayerNorm(n_cls)

    def forward(self, x: torch.Tensor, im_size: tuple[int, int]) -> torch.Tensor:
        x = self.proj_dec(x)
        x = torch.cat((x, self.cls_emb.expand(x.size(0), -1, -1)), 1)
        for blk in self.blocks:
            x = blk(x)
        x = self.decoder_norm(x)
        patches, cls_seg_feat = x[:, : -self.n_cls], x[:, -self.n_cls :]
        patches, cls_seg_feat = patches @ self.proj_patch, cls_seg_feat @ self.proj_classes
        patches = patches / patches.norm(dim=-1, keepdim=True)
        cls_seg_feat = cls_seg_feat / cls_seg_feat.norm(dim=-1, keepdim=True)
        masks = self.mask_norm(patches @ cls_seg_feat.transpose(1, 2))
        return masks.transpose(1, 2).reshape(x.shape[0], self.n_cls, im_size[0] // self.patch, -1)


class RefSegmenter(nn.Module):
    def __init__(self, encoder: SegViT, decoder: nn.Module):
        super().__init__()
        self.encoder, self.decoder, self.patch = encoder, decoder, encoder.patch

    def forward(self, im: torch.Tensor) -> torch.Tensor:
        h0, w0 = im.shape[-2:]
        ph, pw = -h0 % self.patch, -w0 % self.patch
        im = F.pad(im, (0, pw, 0, ph), value=0) if ph or pw else im  # segm/model/utils.py padding
        h, w = im.shape[-2:]
        x = self.encoder(im)[:, 1 + self.encoder.distilled :]
        masks = F.interpolate(self.decoder(x, (h, w)), size=(h, w), mode="bilinear")
        return masks[:, :, :h0, :w0]  # unpadding


def randomise(module: nn.Module, seed: int) -> None:
    """Every weight random (LayerNorms around 1), so a mis-mapped tensor cannot go unnoticed."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            noise = torch.randn(p.shape, generator=gen, dtype=p.dtype)
            is_norm_weight = name.endswith("weight") and p.dim() == 1
            p.copy_(1 + 0.2 * noise if is_norm_weight else 0.3 * noise)


SEG = {"image_size": (32, 48), "patch": 8, "dim": 128, "depth": 4, "heads": 4}


def write_segmenter(folder: Path, decoder: str, n_cls: int, dataset: str, distilled: bool = False,
                    normalization: str = "vit") -> RefSegmenter:
    """A Segmenter run folder: checkpoint.pth (model + training state) and variant.yml, as segm/train.py writes."""
    enc = SegViT(SEG["image_size"], SEG["patch"], SEG["dim"], SEG["depth"], SEG["heads"], distilled)
    dec: nn.Module = SegDecoderLinear(n_cls, SEG["patch"], SEG["dim"]) if decoder == "linear" else \
        SegMaskTransformer(n_cls, SEG["patch"], SEG["dim"], 2)
    ref = RefSegmenter(enc, dec)
    randomise(ref, seed=len(decoder) + n_cls)
    folder.mkdir(parents=True, exist_ok=True)
    torch.save({"model": ref.state_dict(), "optimizer": {"state": {}, "param_groups": [{"lr": 0.001}]},
                "n_cls": n_cls, "lr_scheduler": {"last_epoch": 3}, "epoch": 3}, folder / "checkpoint.pth")
    dec_cfg = {"name": decoder, "n_cls": n_cls} | ({"drop_path_rate": 0.0, "dropout": 0.1, "n_layers": 2}
                                                   if decoder == "mask_transformer" else {})
    variant = {
        "net_kwargs": {"backbone": "vit_test", "image_size": SEG["image_size"], "patch_size": SEG["patch"],
                       "d_model": SEG["dim"], "n_heads": SEG["heads"], "n_layers": SEG["depth"],
                       "normalization": normalization, "distilled": distilled, "dropout": 0.0,
                       "drop_path_rate": 0.1, "decoder": dec_cfg, "n_cls": n_cls},
        "dataset_kwargs": {"dataset": dataset, "image_size": 64, "crop_size": SEG["image_size"][0],
                           "normalization": normalization, "split": "train", "batch_size": 8},
        "inference_kwargs": {"im_size": 64, "window_size": 32, "window_stride": 24},
    }
    (folder / "variant.yml").write_text(yaml.dump(variant))  # yaml.dump, as Segmenter: tuples get python tags
    return ref.eval()


# ---- mmseg ------------------------------------------------------------------------------------
class MmsegLayer(nn.Module):
    """mmseg's TransformerEncoderLayer: mmcv MultiheadAttention (= nn.MultiheadAttention) and FFN."""

    def __init__(self, dim: int, heads: int, eps: float):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(dim, eps=eps), nn.LayerNorm(dim, eps=eps)
        self.attn = nn.Module()
        self.attn.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.ffn = nn.Module()
        self.ffn.layers = nn.Sequential(nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Dropout(0.0)),
                                        nn.Linear(4 * dim, dim), nn.Dropout(0.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.ln1(x)
        x = x + self.attn.attn(h, h, h, need_weights=False)[0]
        return x + self.ffn.layers(self.ln2(x))


class MmsegViT(nn.Module):
    def __init__(self, dim: int, depth: int, heads: int, patch: int, grid: int):
        super().__init__()
        self.patch_embed = nn.Module()
        self.patch_embed.projection = nn.Conv2d(3, dim, patch, patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, grid * grid + 1, dim))
        self.layers = nn.ModuleList(MmsegLayer(dim, heads, 1e-6) for _ in range(depth))
        self.ln1 = nn.LayerNorm(dim, eps=1e-6)  # final_norm=True

    def forward(self, im: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed.projection(im)
        hw = x.shape[-2:]
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x.flatten(2).transpose(1, 2)], dim=1)
        x = x + self.pos_embed
        for layer in self.layers:
            x = layer(x)
        x = self.ln1(x)[:, 1:]
        return x.transpose(1, 2).reshape(x.shape[0], -1, *hw)


class MmsegMaskHead(nn.Module):
    """mmseg's SegmenterMaskTransformerHead."""

    def __init__(self, dim: int, n_cls: int, heads: int):
        super().__init__()
        self.n_cls = n_cls
        self.layers = nn.ModuleList(MmsegLayer(dim, heads, 1e-5) for _ in range(2))
        self.dec_proj = nn.Linear(dim, dim)
        self.cls_emb = nn.Parameter(torch.randn(1, n_cls, dim))
        self.patch_proj, self.classes_proj = nn.Linear(dim, dim, bias=False), nn.Linear(dim, dim, bias=False)
        self.decoder_norm, self.mask_norm = nn.LayerNorm(dim), nn.LayerNorm(n_cls)
        self.conv_seg = nn.Conv2d(dim, n_cls, 1)  # BaseDecodeHead's, unused by this head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        x = self.dec_proj(x.permute(0, 2, 3, 1).reshape(b, -1, c))
        x = torch.cat((x, self.cls_emb.expand(b, -1, -1)), 1)
        for layer in self.layers:
            x = layer(x)
        x = self.decoder_norm(x)
        patches, cls_seg_feat = self.patch_proj(x[:, : -self.n_cls]), self.classes_proj(x[:, -self.n_cls :])
        patches = patches / patches.norm(dim=-1, keepdim=True)
        cls_seg_feat = cls_seg_feat / cls_seg_feat.norm(dim=-1, keepdim=True)
        masks = self.mask_norm(patches @ cls_seg_feat.transpose(1, 2))
        return masks.permute(0, 2, 1).reshape(b, -1, h, w)


def mmseg_checkpoint(path: Path, head: str, n_cls: int = 4) -> tuple[MmsegViT, nn.Module]:
    backbone = MmsegViT(128, 3, 2, 8, 4)
    decode: nn.Module = MmsegMaskHead(128, n_cls, 2) if head == "mask" else nn.Conv2d(128, n_cls, 1)
    randomise(backbone, 7)
    randomise(decode, 8)
    state = {f"backbone.{k}": v for k, v in backbone.state_dict().items()}
    if head == "mask":
        state |= {f"decode_head.{k}": v for k, v in decode.state_dict().items()}
    else:  # FCNHead with num_convs=0: only conv_seg
        state |= {f"decode_head.conv_seg.{k}": v for k, v in decode.state_dict().items()}
    state |= {"auxiliary_head.conv_seg.weight": torch.randn(n_cls, 128, 1, 1)}
    names = [f"thing {i}" for i in range(n_cls)]
    torch.save({"state_dict": state, "meta": {"CLASSES": names, "PALETTE": [[i, 2 * i, 3 * i] for i in range(n_cls)]}},
               path)
    return backbone.double().eval(), decode.double().eval()
