"""TensorRT engines for a bundle: one per graph, optimisation profiles on the token count n, a timing
cache kept in the bundle, every engine keyed by graph sha256 + TensorRT version + GPU + precision +
profiles and recorded in the manifest.

Follows the TensorRT 10 API (weakly typed network, builder precision flags; TensorRT 8.6 on JetPack needs the
explicit-batch flag) and the TensorRT 11 one (strongly typed network: the precision comes from the ONNX graph,
so fp16 builds an fp16 copy of it first). INT8 is explicit quantization on both: the engines are built from the
bundle's Q/DQ graphs (its `int8` variant, made by `export.quantize` first if the bundle has none), which
TensorRT 10 reads with the INT8 flag (and FP16 for the layers left in float) and TensorRT 11 as typed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import onnx
from tqdm import tqdm

from paumer_edge import UserError
from paumer_edge.core.atomic import write_bytes_atomic, write_json_atomic
from paumer_edge.core.contract import MANIFEST, EngineEntry, GpuSpec
from paumer_edge.core.knobs import check_budget, check_count, check_number
from paumer_edge.core.names import FULL
from paumer_edge.runtime.bundle import Bundle, load_bundle, sha256_file
from paumer_edge.runtime.gpu import GpuInfo, cuda_runtime, gpu_info, tensorrt_module
from paumer_edge.runtime.profiles import profile_shapes

from .fp16 import convert_to_fp16
from .quantize import VARIANT, QuantOptions, add_int8

if TYPE_CHECKING:
    import tensorrt as trt

PRECISIONS = ("fp32", "fp16", "int8")


@dataclass(frozen=True)
class EngineOptions:
    precision: str = "fp16"
    budgets: tuple[float, ...] = (0.5,)  # expected budgets: one optimisation profile each (opt n)
    quant: QuantOptions | None = None  # INT8: (re)make the bundle's Q/DQ graphs this way first (None: as they are,
    # or with the defaults if the bundle has none)
    dla_core: int | None = None
    workspace_gib: float = 2.0

    def validate(self) -> None:
        if self.precision not in PRECISIONS:
            raise UserError(f"precision '{self.precision}' is not one of {', '.join(PRECISIONS)}")
        if self.quant is not None:
            self.quant.validate()
        if not self.budgets:
            raise UserError("give at least one expected budget for the engine profiles")
        for b in self.budgets:
            check_budget(b, "engine budget")
        check_number(self.workspace_gib, "workspace", "a builder workspace in GiB in (0, 1024]", 0.0, 1024.0,
                     lo_open=True)
        if self.dla_core is not None:
            check_count(self.dla_core, "DLA core", 0, 15)


def trt_major(trt_mod: ModuleType) -> int:
    return int(str(trt_mod.__version__).split(".")[0])


def engine_key(sha: str, trt_version: str, gpu: GpuInfo, precision: str, profiles: list, dla: int | None) -> str:
    blob = json.dumps({"sha": sha, "trt": trt_version, "gpu": gpu.name, "cc": gpu.compute_capability,
                       "precision": precision, "profiles": profiles, "dla": dla}, sort_keys=True, default=list)
    return f"{precision}-sm{gpu.compute_capability.replace('.', '')}-trt{trt_version}-" \
           f"{hashlib.sha256(blob.encode()).hexdigest()[:12]}"


def is_engine_key(name: str) -> bool:
    """Whether a folder name under engines/ is one `engine_key` made (others, e.g. ONNX Runtime's TensorRT cache in
    engines/ort-trt, are not ours to clean up)."""
    return re.fullmatch(rf"({'|'.join(PRECISIONS)})-sm\d+-trt[\w.]+-[0-9a-f]{{12}}", name) is not None


def _parse(trt_mod: Any, network: trt.INetworkDefinition, logger: trt.ILogger, model: onnx.ModelProto,
           name: str) -> None:
    parser = trt_mod.OnnxParser(network, logger)
    if not parser.parse(model.SerializeToString()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise UserError(f"TensorRT could not parse {name}: {errors}")


def build_engines(bundle_path: str | Path, opts: EngineOptions, progress: bool = True) -> list[EngineEntry]:
    """Build (or reuse) an engine per graph; returns the manifest entries written."""
    opts.validate()
    trt_mod = tensorrt_module()
    gpu = gpu_info(cuda_runtime())
    bundle, variant = _graphs_for(Path(bundle_path), opts, progress)
    major = trt_major(trt_mod)
    strongly_typed = major >= 11
    logger = trt_mod.Logger(trt_mod.Logger.WARNING)
    root = Path(bundle_path)
    engines_dir = root / "engines"
    engines_dir.mkdir(exist_ok=True)
    cache_path = engines_dir / f"timing-sm{gpu.compute_capability.replace('.', '')}-trt{trt_mod.__version__}.cache"
    entries = []
    reuse = bundle.model.reuse_stage_names if bundle.manifest.has_reuse else []
    names = bundle.manifest.run_graphs + reuse + ([FULL] if bundle.manifest.has_full else [])
    for name in tqdm(names, desc="building engines", unit="engine", disable=not progress):
        spec = bundle.graphs[name]
        profiles = profile_shapes(bundle, name, opts.budgets)
        key = engine_key(spec.sha256, trt_mod.__version__, gpu, opts.precision, profiles, opts.dla_core)
        out = engines_dir / key / f"{name}.engine"
        t0 = time.perf_counter()
        if not out.exists():
            builder = trt_mod.Builder(logger)
            flags = 0
            if strongly_typed:
                flags |= 1 << int(trt_mod.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
            elif major < 10:
                flags |= 1 << int(trt_mod.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
            network = builder.create_network(flags)
            model = onnx.load(str(bundle.graph_path(name)))
            if strongly_typed and opts.precision == "fp16":
                model = convert_to_fp16(model)
            _parse(trt_mod, network, logger, model, spec.file)
            config = builder.create_builder_config()
            config.set_memory_pool_limit(trt_mod.MemoryPoolType.WORKSPACE, int(opts.workspace_gib * (1 << 30)))
            if not strongly_typed and opts.precision in ("fp16", "int8"):
                config.set_flag(trt_mod.BuilderFlag.FP16)
            if not strongly_typed and opts.precision == "int8":  # explicit: the Q/DQ nodes say where, no calibrator
                config.set_flag(trt_mod.BuilderFlag.INT8)
            if opts.dla_core is not None:
                if builder.num_DLA_cores <= opts.dla_core:
                    raise UserError(f"DLA core {opts.dla_core} asked for, this device has {builder.num_DLA_cores}")
                config.default_device_type = trt_mod.DeviceType.DLA
                config.DLA_core = opts.dla_core
                config.set_flag(trt_mod.BuilderFlag.GPU_FALLBACK)
            cache = config.create_timing_cache(cache_path.read_bytes() if cache_path.exists() else b"")
            config.set_timing_cache(cache, False)
            for shapes in profiles:
                profile = builder.create_optimization_profile()
                for tensor, (mn, op, mx) in shapes.items():
                    profile.set_shape(tensor, mn, op, mx)
                config.add_optimization_profile(profile)
            plan = builder.build_serialized_network(network, config)
            if plan is None:
                raise UserError(f"TensorRT failed to build an engine for {spec.file} (see its log above)")
            out.parent.mkdir(parents=True, exist_ok=True)
            write_bytes_atomic(out, bytes(plan))
            write_bytes_atomic(cache_path, bytes(config.get_timing_cache().serialize()))
        entries.append(EngineEntry(
            graph=name, key=key, file=str(out.relative_to(root)), sha256=sha256_file(out), graph_sha256=spec.sha256,
            tensorrt=trt_mod.__version__, gpu=GpuSpec(gpu.name, gpu.compute_capability, gpu.index, gpu.memory_gib),
            precision=opts.precision, variant=variant, strongly_typed=strongly_typed, dla_core=opts.dla_core,
            profiles=tuple({k: [list(s) for s in v] for k, v in p.items()} for p in profiles),
            budgets=tuple(opts.budgets), build_s=round(time.perf_counter() - t0, 2)))
    _record(root, entries)
    return entries


def _graphs_for(root: Path, opts: EngineOptions, progress: bool) -> tuple[Bundle, str]:
    """The bundle (as a bundle of the graphs to build) and the variant name of the graphs the engines come from:
    the main graphs, or for INT8 the Q/DQ ones, quantized first when asked or when the bundle has none."""
    bundle = load_bundle(root)
    if opts.precision != "int8":
        return bundle, ""
    if opts.quant is not None or VARIANT not in bundle.manifest.variant_names:
        add_int8(root, opts.quant or QuantOptions(), progress)
    return load_bundle(root).at_precision("int8"), VARIANT


def _record(root: Path, entries: list[EngineEntry]) -> None:
    """Add the engines to the manifest, replacing older entries for the same graph, precision, GPU and TensorRT."""
    manifest = load_bundle(root, check_hashes=False).manifest
    new = {e.slot for e in entries}
    engines = tuple(e for e in manifest.engines if e.slot not in new) + tuple(entries)
    write_json_atomic(root / MANIFEST, dataclasses.replace(manifest, engines=engines).to_dict())
    live = {Path(e.file).parent.name for e in engines}
    for folder in (root / "engines").iterdir():  # engines no manifest entry points to
        if folder.is_dir() and is_engine_key(folder.name) and folder.name not in live:
            shutil.rmtree(folder, ignore_errors=True)
