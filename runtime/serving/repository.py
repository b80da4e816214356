"""A Triton model repository for a bundle, for people who run their own tritonserver (NGC containers).

    REPO/
      paumer/                 Python backend, BLS: decodes requests, runs the stages with the shared
        config.pbtxt          pausing policy between them (StagedRunner over `bls.py` sessions),
        1/model.py            answers labels; dynamic batching, instance group
        1/bundle/             the bundle (manifest: model, pausing points, cost model; graphs)
      paumer_stage0/ ...      one model per staged graph: `onnxruntime` backend (GPU servers; TensorRT
      paumer_decoder/         as its accelerator with --tensorrt) or `python` (ONNX Runtime inside the
        config.pbtxt          Python backend, for servers without the onnxruntime backend)
        1/model.onnx (+ 1/model.py)

The Python-backend models import `paumer_edge.runtime` (torch-free): install it in the server's Python
with `pip install --no-deps paumer-edge && pip install numpy opencv-python-headless` (+ `onnxruntime`
for `python` stage models). Requests and responses are those of `paumer-edge serve` (`protocol.py`).
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from paumer_edge import __version__
from paumer_edge.core.atomic import replace_dir_atomic
from paumer_edge.core.errors import OutputError, UserError
from paumer_edge.core.pausing import check_budget, check_threshold

from ..bundle import Bundle, GraphSpec, TensorSpec, load_bundle
from .protocol import INPUTS, OUTPUTS

MARKER = "paumer-repository.json"  # what says a folder is a repository this writer may replace
TRITON_TYPES = {"float32": "TYPE_FP32", "float16": "TYPE_FP16", "int64": "TYPE_INT64", "int32": "TYPE_INT32",
                "uint8": "TYPE_UINT8", "bool": "TYPE_BOOL"}
NUMPY_TRITON = {"bytes_": "TYPE_STRING", "uint8": "TYPE_UINT8", "int32": "TYPE_INT32", "float32": "TYPE_FP32"}
STAGE_BACKENDS = ("onnxruntime", "python")
DEVICES = ("cpu", "gpu")


@dataclass
class RepositoryOptions:
    """How the repository serves: model name, batching, instances, where the graphs run, default knobs."""

    name: str = "paumer"
    max_batch: int = 8
    max_delay_us: int = 2000
    instances: int = 1  # of the BLS model (pre/post-processing, policy)
    stage_instances: int = 1  # of each graph model
    stage_backend: str = "onnxruntime"
    device: str = "gpu"  # where the graph models run (KIND_GPU / KIND_CPU)
    tensorrt: bool = False  # onnxruntime backend on GPUs: TensorRT as its execution accelerator
    budget: float = 1.0
    threshold: float | None = None

    def check(self) -> None:
        if not self.name.replace("_", "").replace("-", "").isalnum():
            raise UserError(f"model name '{self.name}': use letters, digits, '_' and '-'")
        if self.stage_backend not in STAGE_BACKENDS:
            raise UserError(f"stage backend '{self.stage_backend}': use one of {', '.join(STAGE_BACKENDS)}")
        if self.device not in DEVICES:
            raise UserError(f"device '{self.device}': use cpu or gpu")
        if self.tensorrt and (self.stage_backend != "onnxruntime" or self.device != "gpu"):
            raise UserError("TensorRT acceleration needs the onnxruntime stage backend on gpu")
        for what, value, low in (("max batch", self.max_batch, 1), ("max delay", self.max_delay_us, 0),
                                 ("instances", self.instances, 1), ("stage instances", self.stage_instances, 1)):
            if value < low:
                raise UserError(f"{what} {value}: give at least {low}")
        check_budget(self.budget)
        if self.threshold is not None:
            check_threshold(self.threshold)


def _dims(shape: tuple[int | str, ...]) -> str:
    """A graph's shape without its batch dimension, named dimensions as -1."""
    return ", ".join(str(d) if isinstance(d, int) else "-1" for d in shape[1:])


def _tensor(kind: str, t: TensorSpec) -> str:
    return f'{kind} {{ name: "{t.name}" data_type: {TRITON_TYPES[t.dtype]} dims: [ {_dims(t.shape)} ] }}'


def _params(values: dict[str, str]) -> str:
    return "\n".join(f'parameters {{ key: "{k}" value {{ string_value: "{v}" }} }}' for k, v in values.items())


def graph_config(model: str, graph: GraphSpec, opts: RepositoryOptions) -> str:
    """config.pbtxt of one staged graph's model (no batcher: the BLS model sends whole batches)."""
    kind = "KIND_GPU" if opts.device == "gpu" else "KIND_CPU"
    lines = [f'name: "{model}"', f'backend: "{opts.stage_backend}"', f"max_batch_size: {opts.max_batch}",
             *(_tensor("input", t) for t in graph.inputs), *(_tensor("output", t) for t in graph.outputs),
             f"instance_group [ {{ count: {opts.stage_instances} kind: {kind} }} ]"]
    if opts.stage_backend == "python":
        lines.append(_params({"device": opts.device}))
    if opts.tensorrt:
        lines.append('optimization { execution_accelerators { gpu_execution_accelerator : [ { name : "tensorrt" '
                     'parameters { key: "precision_mode" value: "FP16" } } ] } }')
    return "\n".join(lines) + "\n"


def bls_config(bundle: Bundle, opts: RepositoryOptions) -> str:
    """config.pbtxt of the BLS model: the request protocol, dynamic batching, its instances, its knobs."""
    inputs = [f'input {{ name: "{n}" data_type: {NUMPY_TRITON[d.__name__]} dims: [ {", ".join(map(str, s))} ] '
              f'optional: {"true" if o else "false"} }}' for n, d, s, o in INPUTS]
    outputs = [f'output {{ name: "{n}" data_type: {NUMPY_TRITON[d.__name__]} dims: [ {", ".join(map(str, s))} ] }}'
               for n, d, s in OUTPUTS]
    params = {"budget": str(opts.budget), "threshold": "" if opts.threshold is None else str(opts.threshold),
              "graph_prefix": f"{opts.name}_", "paumer_edge_version": __version__}
    return "\n".join([
        f'name: "{opts.name}"', 'backend: "python"', f"max_batch_size: {opts.max_batch}", *inputs, *outputs,
        f"dynamic_batching {{ max_queue_delay_microseconds: {opts.max_delay_us} }}",
        f"instance_group [ {{ count: {opts.instances} kind: KIND_CPU }} ]", _params(params)]) + "\n"


MODEL_PY = '''"""Triton Python-backend model by paumer-edge {version}: {what} (paumer_edge.runtime.serving)."""
from paumer_edge.runtime.serving.{module} import TritonPythonModel  # noqa: F401
'''


def _write_graph_model(root: Path, bundle: Bundle, graph: str, opts: RepositoryOptions) -> None:
    name = f"{opts.name}_{graph}"
    version = root / name / "1"
    version.mkdir(parents=True)
    shutil.copyfile(bundle.graph_path(graph), version / "model.onnx")
    if opts.stage_backend == "python":
        (version / "model.py").write_text(MODEL_PY.format(version=__version__, module="triton_graph",
                                                          what=f"the graph {graph} in ONNX Runtime"))
    (root / name / "config.pbtxt").write_text(graph_config(name, bundle.graphs[graph], opts))


def write_repository(bundle_path: str | Path, repo: str | Path, opts: RepositoryOptions | None = None) -> Path:
    """Write (atomically: built beside, then swapped in) the model repository for a bundle. Returns its path."""
    opts = opts or RepositoryOptions()
    opts.check()
    bundle = load_bundle(bundle_path)
    out = Path(repo)
    if out.exists() and not out.is_dir():
        raise OutputError(f"'{out}' is a file; give a folder for the model repository")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.partial-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        version = tmp / opts.name / "1"
        shutil.copytree(bundle.path, version / "bundle", ignore=shutil.ignore_patterns("engines", ".*"))
        (version / "model.py").write_text(MODEL_PY.format(version=__version__, module="triton_bls",
                                                          what="decode, stages with the pausing policy, labels"))
        (tmp / opts.name / "config.pbtxt").write_text(bls_config(bundle, opts))
        for graph in [*bundle.stage_names, "decoder"]:
            _write_graph_model(tmp, bundle, graph, opts)
        (tmp / MARKER).write_text(json.dumps({"paumer_edge": __version__, "bundle": str(bundle.path),
                                              "options": asdict(opts)}, indent=1))
        replace_dir_atomic(tmp, out, lambda p: (p / MARKER).exists(), "paumer-edge Triton repository")
    except OSError as e:
        if isinstance(e, OutputError):
            raise
        raise OutputError(f"cannot write the repository '{out}' ({e.strerror or e})") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out
