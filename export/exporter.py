"""Checkpoint -> deployment bundle: every graph exported, checked and hashed, the manifest written,
the whole directory swapped into place atomically.
"""

from __future__ import annotations

import datetime
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnx
import torch
from tqdm import tqdm

from paumer_edge import UserError, __version__
from paumer_edge.config_check import check_model_memory
from paumer_edge.core.atomic import write_json_atomic
from paumer_edge.core.knobs import check_size
from paumer_edge.core.pausing import CostModel
from paumer_edge.model import PausingSegmenter
from paumer_edge.model.vit import unfused_attention
from paumer_edge.runtime.bundle import FORMAT, FORMAT_VERSION, MANIFEST, sha256_file

from . import GRAPHS_REVISION
from .graphs import Decoder, Full, Stage0, StageK, at_image_size
from .onnx_graph import DIM_BATCH, DIM_TOKENS, export_module, tensor_specs

SUPPORTED_OPSETS = (17, 18)


@dataclass(frozen=True)
class ExportOptions:
    image_size: tuple[int, int] | None = None  # None: the checkpoint's
    opset: int = 18
    batch: tuple[int, int, int] = (1, 1, 8)  # min, opt, max (engine profiles; ONNX batch is dynamic)
    scores: bool = False  # decoder also outputs per-class probabilities

    def validate(self) -> None:
        if self.opset not in SUPPORTED_OPSETS:
            raise UserError(f"opset {self.opset} is not supported; use one of {SUPPORTED_OPSETS} "
                            "(the ones TensorRT 10 parses)")
        if self.image_size is not None:
            check_size(self.image_size, "image size")
        lo, opt, hi = self.batch
        if not 1 <= lo <= opt <= hi:
            raise UserError(f"batch {self.batch} must satisfy 1 <= min <= opt <= max")


def _graphs(model: PausingSegmenter, scores: bool) -> list[tuple[str, torch.nn.Module, tuple, list, list, dict]]:
    """(name, module, example args, inputs, outputs, dynamic axes) for every graph of the bundle."""
    cfg = model.cfg
    h, w = cfg.image_size
    gen = torch.Generator().manual_seed(0)
    image = torch.randn(2, 3, h, w, generator=gen)
    tokens = torch.randn(2, cfg.num_extra_tokens + cfg.num_patches, cfg.embed_dim, generator=gen)
    n = max(1, cfg.num_patches // 2)
    active = torch.stack([torch.randperm(cfg.num_patches, generator=gen)[:n].sort().values for _ in range(2)])
    batch = {0: DIM_BATCH}
    dec_out = ["labels", "scores"] if scores else ["labels"]
    items: list[tuple[str, torch.nn.Module, tuple, list, list, dict]] = []
    stage0_out = ["tokens", "entropy"] if cfg.pause_after else ["tokens"]
    items.append(("stage0", Stage0(model), (image,), ["image"], stage0_out, {"image": batch}))
    for k in range(1, cfg.num_stages):
        out = ["tokens_out", "entropy"] if k < cfg.num_stages - 1 else ["tokens_out"]
        items.append((f"stage{k}", StageK(model, k), (tokens, active), ["tokens", "active"], out,
                      {"tokens": batch, "active": {0: DIM_BATCH, 1: DIM_TOKENS}}))
    items.append(("decoder", Decoder(model, scores), (tokens,), ["tokens"], dec_out, {"tokens": batch}))
    items.append(("full", Full(model, scores), (image,), ["image"], dec_out, {"image": batch}))
    return items


def build_manifest(model: PausingSegmenter, graphs: dict[str, dict[str, Any]], opts: ExportOptions,
                   source: str) -> dict[str, Any]:
    cfg = model.cfg
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "source": source,
        "model": {
            "name": cfg.name, "class_names": list(cfg.class_names), "palette": [list(c) for c in cfg.palette],
            "mean": list(cfg.mean), "std": list(cfg.std), "input_size": list(cfg.image_size),
            "patch_size": cfg.patch_size, "grid": list(cfg.grid), "num_patches": cfg.num_patches,
            "extra_tokens": cfg.num_extra_tokens, "tokens": cfg.num_extra_tokens + cfg.num_patches,
            "embed_dim": cfg.embed_dim, "num_classes": cfg.num_classes, "pause_after": list(cfg.pause_after),
            "config": cfg.to_dict(),
        },
        "pausing": {
            "pause_after": list(cfg.pause_after),
            "stage_bounds": [list(b) for b in cfg.stage_bounds],
            "cost_model": CostModel.from_config(cfg).to_dict(),
        },
        "graphs": graphs,
        "batch": {"min": opts.batch[0], "opt": opts.batch[1], "max": opts.batch[2]},
        "exporter": {"paumer_edge": __version__, "torch": torch.__version__, "onnx": onnx.__version__,
                     "opset": opts.opset, "exporter": "torch.onnx dynamo", "graphs_revision": GRAPHS_REVISION},
        "engines": [],
    }


def replace_dir_atomic(tmp: Path, out: Path) -> None:
    """Swap a finished directory into place; an existing bundle at `out` survives until the swap."""
    old = None
    if out.exists():
        if not (out / MANIFEST).exists() and any(out.iterdir()):
            raise UserError(f"'{out}' exists and is not a paumer-edge bundle; refusing to replace it")
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, old)
    try:
        os.replace(tmp, out)
    except BaseException:
        if old is not None:
            os.replace(old, out)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def export_bundle(model: PausingSegmenter, out: Path, opts: ExportOptions, source: str = "",
                  progress: bool = True, after_graph: Callable[[str], None] | None = None) -> Path:
    """Write the bundle for `model` to `out` (a directory), atomically. Returns `out`."""
    opts.validate()
    check_model_memory(model.cfg, batch=2, image_size=opts.image_size)  # the graphs are traced on a batch of 2
    model = model.eval().float()
    if opts.image_size is not None:
        model = at_image_size(model, opts.image_size)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"'{out}' exists and is a file; give a directory for the bundle")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.partial-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        graphs: dict[str, dict[str, Any]] = {}
        items = _graphs(model, opts.scores)
        cfg = model.cfg
        bar = tqdm(items, desc="exporting", unit="graph", disable=not progress, leave=False)
        for name, module, args, inputs, outputs, dynamic in bar:
            bar.set_postfix_str(name)
            path = tmp / f"{name}.onnx"
            t0 = time.perf_counter()
            with unfused_attention(module):
                export_module(module.eval(), args, path, inputs, outputs, dynamic, opts.opset, opts.batch[2],
                              cfg.num_patches)
            proto = onnx.load(str(path))
            graphs[name] = {"file": path.name, "sha256": sha256_file(path), "inputs": tensor_specs(proto, "inputs"),
                            "outputs": tensor_specs(proto, "outputs"), "bytes": path.stat().st_size,
                            "export_s": round(time.perf_counter() - t0, 2)}
            if after_graph is not None:
                after_graph(name)
        write_json_atomic(tmp / MANIFEST, build_manifest(model, graphs, opts, source))
        replace_dir_atomic(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out
