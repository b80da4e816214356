"""INT8 graphs for a bundle by explicit quantization (Q/DQ), with ONNX Runtime's static quantizer.

Every stage and the decoder get a Q/DQ copy, calibrated on what it really sees (`calibration.CalibrationData`:
the fp32 staged pipeline run on the calibration frames at the bundle's budgets), and the copies become the
bundle's `int8` variant (`int8/*.onnx`, manifest `variants`), beside the fp32 graphs. One set of graphs serves
both backends: ONNX Runtime runs Q/DQ graphs on CPUs with its integer kernels, and TensorRT 10 / 11 builds
explicitly quantized engines from them. So the quantization follows TensorRT's rules, which ONNX Runtime also
runs fast: symmetric signed 8-bit activations (zero point 0), symmetric per-channel 8-bit weights, and the
outputs of MatMul / Conv left in float (the bias, residual and GELU that follow stay exact and cheap).

What stays in float is chosen by measurement (`benchmarks/int8_recipes.py`, whose JSON the README cites):
the groups of `qdq_groups` named in `QuantOptions.keep_float`.

ONNX Runtime quirks handled here (version 1.17 and later): graphs go through `quant_pre_process` with its
optimisation step skipped (our graphs are folded and cleaned already, and the step would rename nodes and
add contrib-op domains TensorRT does not read), keeping only its shape inference; unused opset domains it
adds are dropped again; histogram calibrators (entropy, percentile) stack each chunk of recorded tensors with
`np.asarray`, so calibration runs one feed per chunk (the token count n differs from feed to feed), which
also keeps the memory at one run's tensors; their progress prints are kept off the terminal.
"""

from __future__ import annotations

import contextlib
import io
import logging
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from paumer_edge import UserError
from paumer_edge.core.atomic import updating_dir, write_json_atomic
from paumer_edge.core.contract import MANIFEST, GraphSpec, Variant
from paumer_edge.core.knobs import (
    CALIB_METHODS,
    DEFAULT_CALIB_IMAGES,
    DEFAULT_CALIB_METHOD,
    check_budget,
    check_calib_images,
    check_calib_method,
)
from paumer_edge.runtime.backends.ort import uses_shared_pool
from paumer_edge.runtime.bundle import Bundle, load_bundle, sha256_file

from .calibration import SYNTHETIC_NOTE, CalibrationData, folder_frames, synthetic_frames
from .qdq_groups import GROUPS, quantized_nodes

VARIANT = "int8"  # the variant's name and folder
METHODS = CALIB_METHODS
# Kept in float by measurement on the sample model (benchmarks/results/int8_recipes.json): quantizing LayerNorm,
# Softmax or the residual adds costs accuracy and, on ONNX Runtime's CPU kernels, speed; int8 noise in the
# pausing heads changes which tokens pause; and the attention-values product softmax(q k^T) v loses most: its
# attention weights (~1/n each) fall below the int8 step of a [0, 1] range. With it in float, stage 0's token
# error falls from 22% to 3% and the tokens fp32 keeps at budget 0.5 that int8 keeps too rise from 91% to 99%,
# at no measurable speed cost; q k^T stays int8.
DEFAULT_KEEP_FLOAT = ("norm", "softmax", "elementwise", "pausing_head", "attention_values")
DEFAULT_BUDGETS = (1.0, 0.5, 0.25)  # calibration budgets: the budgets `verify` checks


@dataclass(frozen=True)
class QuantOptions:
    """How the INT8 graphs are made: calibration frames, budgets and method, and what stays in float."""

    calib_dir: str | None = None  # a folder of typical frames; None: rendered street scenes (with a note)
    calib_images: int = DEFAULT_CALIB_IMAGES
    method: str = DEFAULT_CALIB_METHOD  # minmax | entropy | percentile (ONNX Runtime's calibrators)
    budgets: tuple[float, ...] = DEFAULT_BUDGETS  # the pipeline runs the frames at each: stages see what they will
    keep_float: tuple[str, ...] = DEFAULT_KEEP_FLOAT  # groups of `qdq_groups` left in float
    per_channel: bool = True  # weight scales per output channel

    def validate(self) -> None:
        check_calib_method(self.method)
        check_calib_images(self.calib_images)
        unknown = sorted(set(self.keep_float) - set(GROUPS))
        if unknown:
            raise UserError(f"unknown graph part(s) {', '.join(unknown)} to keep in float; use {', '.join(GROUPS)}")
        if not self.budgets:
            raise UserError("give at least one calibration budget")
        for b in self.budgets:
            check_budget(b)
        if self.calib_dir is not None and not Path(self.calib_dir).is_dir():
            raise UserError(f"calibration folder '{self.calib_dir}' does not exist")

    def frames(self, size: tuple[int, int], progress: bool = True) -> list[np.ndarray]:
        """The calibration frames: the folder's images, or street scenes rendered at the model's `size`."""
        if self.calib_dir is not None:
            return folder_frames(self.calib_dir, self.calib_images)
        if progress:
            print(SYNTHETIC_NOTE)
        return synthetic_frames(self.calib_images, size)


def _quantization() -> Any:
    try:
        from onnxruntime import quantization
    except ImportError:
        raise UserError("INT8 quantization needs ONNX Runtime: pip install 'paumer-edge[cpu]' "
                        "(or onnxruntime-gpu)") from None
    return quantization


class FeedReader:
    """ONNX Runtime's calibration data reader over recorded feeds, with the range interface of its chunked
    (`CalibStridedMinMax`) calibration."""

    def __init__(self, feeds: list[dict[str, np.ndarray]]):
        self.feeds = feeds
        self.start, self.end = 0, len(feeds)
        self._next = 0

    def __len__(self) -> int:
        return len(self.feeds)

    def set_range(self, start_index: int, end_index: int) -> None:
        self.start, self.end, self._next = start_index, end_index, start_index

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._next >= self.end:
            return None
        self._next += 1
        return self.feeds[self._next - 1]

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        return iter(self.feeds[self.start:self.end])


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """ONNX Runtime's quantizer prints progress and logs advice on every call: keep the terminal for ours."""
    log = logging.getLogger()
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        log.setLevel(level)


def _drop_unused_domains(model: onnx.ModelProto) -> onnx.ModelProto:
    used = {n.domain for n in model.graph.node} | {""}
    keep = [o for o in model.opset_import if o.domain in used]
    del model.opset_import[:]
    model.opset_import.extend(keep)
    return model


def quantize_graph(src: Path, dst: Path, graph: str, feeds: list[dict[str, np.ndarray]], opts: QuantOptions,
                   work: Path, cache: Path | None = None) -> int:
    """Write the Q/DQ form of the graph file `src` (named `graph` in the bundle) to `dst`, calibrated on `feeds`;
    returns the number of nodes quantized. `cache` keeps the calibrated ranges (per graph and method) so other
    recipes can be tried without calibrating again (benchmarks)."""
    q = _quantization()
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if uses_shared_pool():
        raise UserError("INT8 quantization cannot run in a process whose ONNX Runtime uses the shared thread pool "
                        "(a Pipeline with shared_threads=True came first): quantize before, or in another process")

    pre = work / f"{graph}.pre.onnx"
    with _quiet():
        try:
            quant_pre_process(str(src), str(pre), skip_optimization=True)
        except Exception:  # symbolic shape inference is the fragile part; ONNX's own is enough for these graphs
            quant_pre_process(str(src), str(pre), skip_optimization=True, skip_symbolic_shape=True)
    model = onnx.load(str(pre))
    nodes = quantized_nodes(model, graph, opts.keep_float)
    if not nodes:  # everything kept in float: the graph as it is
        shutil.copyfile(src, dst)
        return 0
    method = {"minmax": q.CalibrationMethod.MinMax, "entropy": q.CalibrationMethod.Entropy,
              "percentile": q.CalibrationMethod.Percentile}[opts.method]
    ops = sorted({n.op_type for n in model.graph.node if n.name in set(nodes)})
    extra = {"ActivationSymmetric": True, "WeightSymmetric": True, "CalibStridedMinMax": 1,
             "OpTypesToExcludeOutputQuantization": ["MatMul", "Gemm", "Conv"],
             "QDQOpTypePerChannelSupportToAxis": {"MatMul": -1}}
    with _quiet():
        q.quantize_static(str(pre), str(dst), FeedReader(feeds), quant_format=q.QuantFormat.QDQ,
                          op_types_to_quantize=ops, nodes_to_quantize=nodes, per_channel=opts.per_channel,
                          reduce_range=False, activation_type=q.QuantType.QInt8, weight_type=q.QuantType.QInt8,
                          calibrate_method=method, extra_options=extra,
                          calibration_cache_path=None if cache is None else str(cache))
    out = _drop_unused_domains(onnx.load(str(dst)))
    onnx.checker.check_model(out, full_check=True)
    onnx.save(out, str(dst))
    return len(nodes)


def quantize_graphs(bundle: Bundle, root: Path, data: CalibrationData, opts: QuantOptions, folder: str = VARIANT,
                    cache_dir: Path | None = None, progress: bool = True) -> dict[str, GraphSpec]:
    """Q/DQ copies of the bundle's stages and decoder in `root`/`folder`; their specs (I/O as the fp32 graphs)."""
    from tqdm import tqdm

    (root / folder).mkdir(parents=True, exist_ok=True)
    graphs: dict[str, GraphSpec] = {}
    names = bundle.manifest.run_graphs
    with tempfile.TemporaryDirectory(prefix="paumer-int8-") as tmp:
        bar = tqdm(names, desc="quantizing", unit="graph", disable=not progress, leave=False)
        for name in bar:
            bar.set_postfix_str(name)
            if name not in data.inputs:
                raise UserError(f"no calibration feeds were recorded for {name}")
            dst = root / folder / f"{name}.onnx"
            cache = None if cache_dir is None else cache_dir / f"{name}-{opts.method}.json"
            quantize_graph(bundle.graph_path(name), dst, name, data.inputs[name], opts, Path(tmp), cache)
            fp32 = bundle.graphs[name]
            graphs[name] = GraphSpec(f"{folder}/{dst.name}", sha256_file(dst), fp32.inputs, fp32.outputs)
    return graphs


def add_int8_variant(root: Path, opts: QuantOptions, progress: bool = True) -> Variant:
    """Quantize the fp32 graphs of the bundle directory `root` in place (an export's temporary directory, or a
    working copy) and record them as its `int8` variant, replacing an older one and the engines built from it."""
    opts.validate()
    bundle = load_bundle(root)
    m = bundle.model
    t0 = time.perf_counter()
    frames = opts.frames(m.input_size, progress)
    data = CalibrationData(bundle, frames, opts.budgets, progress=progress)
    shutil.rmtree(root / VARIANT, ignore_errors=True)
    graphs = quantize_graphs(bundle, root, data, opts, progress=progress)
    variant = Variant(VARIANT, m.input_size, "int8", graphs, bundle.cost.macs)
    manifest = bundle.manifest
    others = tuple(v for v in manifest.variants if v.name != VARIANT)
    engines = tuple(e for e in manifest.engines if e.variant != VARIANT)
    write_json_atomic(root / MANIFEST, replace(manifest, variants=(*others, variant), engines=engines).to_dict())
    load_bundle(root)  # the new graphs against the manifest: files, hashes, inputs and outputs
    if progress:
        print(f"INT8 graphs: {len(graphs)} quantized ({opts.method} calibration on {len(frames)} frames at budgets "
              f"{', '.join(f'{b:g}' for b in data.budgets)}; float: {', '.join(opts.keep_float) or 'nothing'}) "
              f"in {time.perf_counter() - t0:.1f} s")
    return variant


def add_int8(bundle_path: str | Path, opts: QuantOptions, progress: bool = True) -> Variant:
    """Give an existing bundle its `int8` variant (or a new one), atomically: the bundle is changed in a working
    copy that replaces it only when everything is written and checked."""
    opts.validate()
    load_bundle(bundle_path)  # a clear error for a missing or broken bundle before any copying
    with updating_dir(bundle_path, MANIFEST, "paumer-edge bundle") as work:
        variant = add_int8_variant(work, opts, progress)
    return variant
