"""Checkpoint -> deployment bundle: every graph exported, checked and hashed, the manifest written,
the whole directory swapped into place atomically.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import onnx
import torch
from tqdm import tqdm

from paumer_edge import UserError, __version__
from paumer_edge.config import ModelConfig
from paumer_edge.config_check import check_model_memory
from paumer_edge.core.atomic import replace_dir_atomic, write_json_atomic
from paumer_edge.core.contract import MANIFEST, BatchRange, ExporterInfo, GraphSpec, Manifest, ModelInfo, Variant
from paumer_edge.core.knobs import check_size
from paumer_edge.core.names import (
    ACTIVE,
    CACHE,
    CACHE_ROWS,
    CONTEXT,
    DECODER,
    DECODER_TILES,
    DIM_BATCH,
    DIM_CONTEXT,
    DIM_TOKENS,
    ENTROPY,
    EXIT_LOGP,
    EXITED,
    FULL,
    HEAD_LOGP,
    IMAGE,
    LABEL_TILES,
    LABELS,
    SCORES,
    TILES,
    TOKENS,
    TOKENS_OUT,
    reuse_stage_name,
    stage_name,
)
from paumer_edge.core.pausing import CostModel
from paumer_edge.model import PausingSegmenter
from paumer_edge.model.vit import written_out
from paumer_edge.runtime.bundle import sha256_file

from . import GRAPHS_REVISION
from .graphs import (
    Decoder,
    DecoderTiles,
    Full,
    Stage0,
    Stage0Reuse,
    StageK,
    StageKReuse,
    at_image_size,
    random_positions,
)
from .onnx_graph import export_module, tensor_specs
from .peer_graphs import COARSE, EARLY_EXIT, CoarseStage0, PeerOptions, full_peer_modules
from .quantize import QuantOptions, add_int8_variant

SUPPORTED_OPSETS = (17, 18)


@dataclass(frozen=True)
class ExportOptions:
    image_size: tuple[int, int] | None = None  # None: the checkpoint's
    opset: int = 18
    batch: tuple[int, int, int] = (1, 1, 8)  # min, opt, max (engine profiles; ONNX batch is dynamic)
    scores: bool = False  # decoder also outputs per-class probabilities
    extra_sizes: tuple[tuple[int, int], ...] = ()  # the staged graphs again at these input sizes (variants)
    int8: QuantOptions | None = None  # also INT8 Q/DQ graphs, made this way (the `int8` variant)
    peers: PeerOptions = PeerOptions()  # the peer methods' graphs (`paumer-edge compare`)
    reuse: bool = True  # the temporal-reuse stage graphs (stage<k>_reuse), so video can reuse unchanged patches

    def validate(self) -> None:
        if self.int8 is not None:
            self.int8.validate()
        if self.opset not in SUPPORTED_OPSETS:
            raise UserError(f"opset {self.opset} is not supported; use one of {SUPPORTED_OPSETS} "
                            "(the ones TensorRT 10 parses)")
        if self.image_size is not None:
            check_size(self.image_size, "image size")
        lo, opt, hi = self.batch
        if not 1 <= lo <= opt <= hi:
            raise UserError(f"batch {self.batch} must satisfy 1 <= min <= opt <= max")
        if len({tuple(s) for s in self.extra_sizes}) != len(self.extra_sizes):
            raise UserError(f"extra input sizes {[size_name(s) for s in self.extra_sizes]} repeat a size")


GraphItem = tuple[str, torch.nn.Module, tuple, list, list, dict]  # name, module, args, inputs, outputs, dynamic


def _reuse_graphs(model: PausingSegmenter, image: torch.Tensor, tokens: torch.Tensor,
                  active: torch.Tensor) -> list[GraphItem]:
    """The temporal-reuse variant of every stage: the active rows attend to cached keys/values of the context. Batch 1
    (the state is per stream, one frame at a time): every shape but the token and context counts is static."""
    cfg = model.cfg
    gen = torch.Generator().manual_seed(1)
    m = max(2, cfg.num_patches // 3)  # context patches: not the active count, so the exporter keeps both dynamic
    context = random_positions(cfg.num_patches, m, gen)
    image, tokens, active = image[:1], tokens[:1], active[:1]  # one stream's frame: batch 1, static shapes
    items: list[GraphItem] = []
    for k in range(cfg.num_stages):
        cache = torch.randn(*model.cache_shape(k, 1), generator=gen)
        first = [IMAGE] if k == 0 else []
        inputs = [*first, TOKENS, ACTIVE, CONTEXT, CACHE]
        outputs = [TOKENS_OUT, *([ENTROPY] if k < cfg.num_stages - 1 else []), CACHE_ROWS]
        module = Stage0Reuse(model) if k == 0 else StageKReuse(model, k)
        args = (*([image] if k == 0 else []), tokens, active, context, cache)
        dynamic: dict[str, dict[int, str]] = {ACTIVE: {1: DIM_TOKENS}, CONTEXT: {1: DIM_CONTEXT}}
        items.append((reuse_stage_name(k), module, args, inputs, outputs, dynamic))
    if model.tiles_decodable:  # a frame that recomputed a few patches redraws only the label tiles around them
        tiles = random_positions(cfg.num_patches, m, gen)
        items.append((DECODER_TILES, DecoderTiles(model), (tokens, tiles), [TOKENS, TILES], [LABEL_TILES],
                      {TILES: {1: DIM_TOKENS}}))
    return items


def _graphs(model: PausingSegmenter, scores: bool, kind: str = "staged",
            peers: PeerOptions | None = None, reuse: bool = True) -> list[GraphItem]:
    """(name, module, example args, inputs, outputs, dynamic axes) for every graph of the bundle; `kind` "early-exit"
    adds the heads' log-probabilities to the stages and the exits to the decoder, "coarse-stage0" runs stage 0 on
    the coarse grid (`peer_graphs`); `reuse`: the temporal-reuse stage graphs too (plain staged sets only)."""
    cfg = model.cfg
    h, w = cfg.image_size
    gen = torch.Generator().manual_seed(0)
    image = torch.randn(2, 3, h, w, generator=gen)
    tokens = torch.randn(2, cfg.num_extra_tokens + cfg.num_patches, cfg.embed_dim, generator=gen)
    n = max(1, cfg.num_patches // 2)
    active = random_positions(cfg.num_patches, n, gen, rows=2)
    batch = {0: DIM_BATCH}
    dec_out = [LABELS, SCORES] if scores else [LABELS]
    last = cfg.num_stages - 1
    exits = kind == "early-exit"
    head = [HEAD_LOGP] if exits else []
    stage0 = CoarseStage0(model) if kind == "coarse-stage0" else Stage0(model, head_scores=exits)
    items: list[GraphItem] = [(stage_name(0), stage0, (image,), [IMAGE], [TOKENS, ENTROPY, *head] if last else [TOKENS],
                               {IMAGE: batch})]
    for k in range(1, last + 1):
        items.append((stage_name(k), StageK(model, k, head_scores=exits), (tokens, active), [TOKENS, ACTIVE],
                      [TOKENS_OUT, ENTROPY, *head] if k < last else [TOKENS_OUT],
                      {TOKENS: batch, ACTIVE: {0: DIM_BATCH, 1: DIM_TOKENS}}))
    if reuse and kind == "staged":
        items += _reuse_graphs(model, image, tokens, active)
    if exits:
        logp = torch.log_softmax(torch.randn(2, cfg.num_patches, cfg.num_classes, generator=gen), -1)
        exited = (torch.rand(2, cfg.num_patches, generator=gen) < 0.5).float()
        items.append((DECODER, Decoder(model, scores), (tokens, logp, exited), [TOKENS, EXIT_LOGP, EXITED], dec_out,
                      {TOKENS: batch, EXIT_LOGP: batch, EXITED: batch}))
    else:
        items.append((DECODER, Decoder(model, scores), (tokens,), [TOKENS], dec_out, {TOKENS: batch}))
    items.append((FULL, Full(model, scores), (image,), [IMAGE], dec_out, {IMAGE: batch}))
    for name, module in full_peer_modules(model, peers, scores) if peers is not None else []:
        items.append((name, module, (image,), [IMAGE], dec_out, {IMAGE: batch}))
    return items


def model_info(cfg: ModelConfig) -> ModelInfo:
    """The bundle's view of a model config: what a runtime needs to know, without the code."""
    (h, w), (rows, cols), (m0, m1, m2), (s0, s1, s2) = cfg.image_size, cfg.grid, cfg.mean, cfg.std
    return ModelInfo(name=cfg.name, class_names=tuple(cfg.class_names),
                     palette=tuple((int(r), int(g), int(b)) for r, g, b in cfg.palette), mean=(m0, m1, m2),
                     std=(s0, s1, s2), input_size=(h, w), patch_size=cfg.patch_size, grid=(rows, cols),
                     extra_tokens=cfg.num_extra_tokens, embed_dim=cfg.embed_dim, pause_after=tuple(cfg.pause_after),
                     num_heads=cfg.num_heads)


def build_manifest(model: PausingSegmenter, graphs: dict[str, GraphSpec], opts: ExportOptions,
                   source: str) -> Manifest:
    cfg = model.cfg
    exporter = ExporterInfo(paumer_edge=__version__, torch=torch.__version__, onnx=onnx.__version__, opset=opts.opset,
                            exporter="torch.onnx dynamo", graphs_revision=GRAPHS_REVISION)
    return Manifest(model=model_info(cfg), cost=CostModel.from_config(cfg), graphs=graphs,
                    batch=BatchRange(*opts.batch), exporter=exporter, source=source,
                    created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))


def export_graphs(model: PausingSegmenter, bundle: Path, opts: ExportOptions, folder: str = "", full: bool = True,
                  after_graph: Callable[[str], None] | None = None, progress: bool = True,
                  kind: str = "staged") -> dict[str, GraphSpec]:
    """Every graph of `model` (at its config's input size) into `bundle`/`folder`; their specs, with file names
    relative to the bundle. The main graphs (no folder) include the peer graphs `opts.peers` asks for."""
    (bundle / folder).mkdir(parents=True, exist_ok=True)
    prefix = f"{folder}/" if folder else ""
    graphs: dict[str, GraphSpec] = {}
    peers = None if folder else opts.peers
    items = [item for item in _graphs(model, opts.scores, kind, peers, opts.reuse) if full or item[0] != FULL]
    bar = tqdm(items, desc=f"exporting {folder}".strip(), unit="graph", disable=not progress, leave=False)
    for name, module, args, inputs, outputs, dynamic in bar:
        bar.set_postfix_str(name)
        path = bundle / folder / f"{name}.onnx"
        t0 = time.perf_counter()
        with written_out(module):
            export_module(module.eval(), args, path, inputs, outputs, dynamic, opts.opset, opts.batch[2],
                          model.cfg.num_patches)
        proto = onnx.load(str(path))
        graphs[name] = GraphSpec(f"{prefix}{path.name}", sha256_file(path), tensor_specs(proto, "inputs"),
                                 tensor_specs(proto, "outputs"))
        bar.set_postfix_str(f"{name} {time.perf_counter() - t0:.1f} s")
        if after_graph is not None:
            after_graph(name)
    return graphs


def size_name(size: tuple[int, int]) -> str:
    """A variant's name (and folder) for an input size: "96x192"."""
    return f"{size[0]}x{size[1]}"


def export_bundle(model: PausingSegmenter, out: Path, opts: ExportOptions, source: str = "",
                  progress: bool = True, after_graph: Callable[[str], None] | None = None,
                  finalize: Callable[[Path], None] | None = None) -> Path:
    """Write the bundle for `model` to `out` (a directory), atomically. Returns `out`.

    `opts.extra_sizes` adds the staged graphs at other input sizes as variants (folder and name "HxW"; no
    full graph), for budgets that are cheaper at a lower resolution. `finalize(folder)` sees the finished bundle
    in its temporary folder before it takes `out`'s place (measuring its plans, `paumer_edge.planning`; the
    export verb verifies it there): if it raises, nothing is written and a bundle already at `out` stays."""
    opts.validate()
    check_model_memory(model.cfg, batch=2, image_size=opts.image_size)  # the graphs are traced on a batch of 2
    model = model.eval().float()
    if opts.image_size is not None:
        model = at_image_size(model, opts.image_size)
    opts.peers.validate(model)
    patch = model.cfg.patch_size
    odd = [size_name(s) for s in opts.extra_sizes if s[0] % patch or s[1] % patch or min(s) < patch]
    if odd:
        raise UserError(f"extra input sizes {', '.join(odd)} are not multiples of the patch size {patch}")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"'{out}' exists and is a file; give a directory for the bundle")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.partial-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        graphs = export_graphs(model, tmp, opts, after_graph=after_graph, progress=progress)
        variants = []
        for size in opts.extra_sizes:
            at = at_image_size(model, size)
            name = size_name(size)
            found = export_graphs(at, tmp, opts, folder=name, full=False, progress=progress)
            variants.append(Variant(name, (int(size[0]), int(size[1])), "fp32", found, CostModel.from_config(at.cfg)))
        for name, kind, wanted in ((EARLY_EXIT, "early-exit", opts.peers.early_exit),
                                   (COARSE, "coarse-stage0", opts.peers.coarse_stage0)):
            if wanted:  # the same network with other stage graphs, in a folder of its own
                found = export_graphs(model, tmp, opts, folder=name, full=False, progress=progress, kind=kind)
                variants.append(Variant(name, model.cfg.image_size, "fp32", found, CostModel.from_config(model.cfg),
                                        kind))
        manifest = dataclasses.replace(build_manifest(model, graphs, opts, source), variants=tuple(variants))
        write_json_atomic(tmp / MANIFEST, manifest.to_dict())
        if opts.int8 is not None:  # quantized from the graphs just written, before the bundle is swapped in
            add_int8_variant(tmp, opts.int8, progress)
        if finalize is not None:  # measured and verified as it will be, before it replaces anything
            finalize(tmp)
        replace_dir_atomic(tmp, out, lambda p: (p / MANIFEST).exists(), "paumer-edge bundle")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out
