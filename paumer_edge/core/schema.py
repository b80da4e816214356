"""Reading the bundle manifest (`core.contract`): every field's type and range checked, and the parts checked
against each other (token count, patch grid, cost model, graph shapes), so a malformed or hand-edited
manifest is refused with the field it got wrong instead of failing later inside a backend.
"""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import replace
from typing import Any

from .contract import (
    FORMAT,
    FORMAT_VERSION,
    LABEL_DTYPES,
    PRECISIONS,
    READS_VERSIONS,
    REEXPORT,
    REUSE_GRAPHS_VERSION,
    VARIANT_KINDS,
    BatchRange,
    EngineEntry,
    ExporterInfo,
    GpuSpec,
    GraphSpec,
    Manifest,
    ModelInfo,
    TensorSpec,
    Variant,
)
from .cost import CostModel
from .errors import BundleError
from .graph_io import expected_io
from .knobs import show_value
from .names import (
    DECODER,
    FULL,
    is_peer_graph,
    reuse_stage_index,
)

_SHA256 = re.compile(r"[0-9a-f]{64}")


class _Reader:
    """Typed reads of manifest fields; each failure names the field (a dotted path) and what it should be."""

    def __init__(self, where: str):
        self.where = where
        self.version = FORMAT_VERSION  # the manifest's format version, once read

    def fail(self, path: str, problem: str) -> BundleError:
        return BundleError(f"{self.where}: '{path}' {problem}; {REEXPORT}")

    def get(self, d: dict[str, Any], key: str, path: str) -> Any:
        if key not in d:
            raise self.fail(f"{path}{key}", "is missing")
        return d[key]

    def obj(self, d: dict[str, Any], key: str, path: str = "") -> dict[str, Any]:
        v = self.get(d, key, path)
        if not isinstance(v, dict):
            raise self.fail(f"{path}{key}", f"must be an object, not {_kind(v)}")
        return v

    def text(self, d: dict[str, Any], key: str, path: str = "") -> str:
        v = self.get(d, key, path)
        if not isinstance(v, str):
            raise self.fail(f"{path}{key}", f"must be a string, not {_kind(v)}")
        return v

    def integer(self, d: dict[str, Any], key: str, path: str = "", lo: int = 0, hi: int = 1 << 31) -> int:
        return self.int_value(self.get(d, key, path), f"{path}{key}", lo, hi)

    def int_value(self, v: Any, path: str, lo: int = 0, hi: int = 1 << 31) -> int:
        if not isinstance(v, int) or isinstance(v, bool):
            raise self.fail(path, f"must be an integer, not {_kind(v)}")
        if not lo <= v <= hi:
            raise self.fail(path, f"is {show_value(v)}, outside [{lo}, {hi}]")
        return v

    def number(self, v: Any, path: str, lo: float = -math.inf, positive: bool = False) -> float:
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not _finite(v):
            raise self.fail(path, f"must be a finite number, not {_kind(v)}")
        if v < lo or (positive and v <= 0):
            raise self.fail(path, f"is {show_value(v)}, which is out of range")
        return float(v)

    def items(self, d: dict[str, Any], key: str, path: str = "", length: int | None = None,
              nonempty: bool = False) -> list[Any]:
        v = self.get(d, key, path)
        if not isinstance(v, list):
            raise self.fail(f"{path}{key}", f"must be a list, not {_kind(v)}")
        if length is not None and len(v) != length:
            raise self.fail(f"{path}{key}", f"must have {length} entries, not {len(v)}")
        if nonempty and not v:
            raise self.fail(f"{path}{key}", "must not be empty")
        return v

    def ints(self, d: dict[str, Any], key: str, path: str = "", length: int | None = None, lo: int = 0) -> list[int]:
        return [self.int_value(x, f"{path}{key}[{i}]", lo) for i, x in enumerate(self.items(d, key, path, length))]

    def numbers(self, d: dict[str, Any], key: str, path: str = "", length: int | None = None,
                positive: bool = False) -> list[float]:
        return [self.number(x, f"{path}{key}[{i}]", positive=positive)
                for i, x in enumerate(self.items(d, key, path, length))]


def _finite(v: float) -> bool:
    try:
        return math.isfinite(v)
    except OverflowError:  # an integer beyond float range
        return False


def _kind(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, (int, float)):
        return f"the number {show_value(v)}"
    names: dict[type, str] = {str: "a string", list: "a list", dict: "an object"}
    return names.get(type(v), type(v).__name__)


def _model(r: _Reader, d: dict[str, Any]) -> ModelInfo:
    p = "model."
    names = r.items(d, "class_names", p, nonempty=True)
    for i, n in enumerate(names):
        if not isinstance(n, str):
            raise r.fail(f"{p}class_names[{i}]", f"must be a string, not {_kind(n)}")
    palette = r.items(d, "palette", p, length=len(names))
    colours = []
    for i, c in enumerate(palette):
        if not isinstance(c, list) or len(c) != 3:
            raise r.fail(f"{p}palette[{i}]", "must be a list of 3 integers (R, G, B)")
        colours.append(tuple(r.int_value(x, f"{p}palette[{i}][{j}]", 0, 255) for j, x in enumerate(c)))
    mean = r.numbers(d, "mean", p, 3)
    std = [r.number(x, f"{p}std[{i}]", lo=1e-6) for i, x in enumerate(r.items(d, "std", p, 3))]
    size = r.ints(d, "input_size", p, 2, lo=1)
    patch = r.integer(d, "patch_size", p, lo=1, hi=4096)
    grid = r.ints(d, "grid", p, 2, lo=1)
    if size[0] % patch or size[1] % patch or grid != [size[0] // patch, size[1] // patch]:
        raise r.fail(f"{p}grid", f"is {grid}, but input_size {size} / patch_size {patch} gives "
                     f"{[size[0] / patch, size[1] / patch]}")
    if size[0] * size[1] > 1 << 26:
        raise r.fail(f"{p}input_size", f"{size} is implausibly large")
    extra = r.integer(d, "extra_tokens", p, lo=0, hi=64)
    pause_after = r.ints(d, "pause_after", p, lo=1)
    if pause_after != sorted(set(pause_after)):
        raise r.fail(f"{p}pause_after", f"{pause_after} must be strictly increasing")
    embed_dim = r.integer(d, "embed_dim", p, lo=1, hi=1 << 16)
    heads = r.integer(d, "num_heads", p, lo=0, hi=embed_dim) if "num_heads" in d else 0  # format 4
    if heads and embed_dim % heads:
        raise r.fail(f"{p}num_heads", f"is {heads}, which does not divide embed_dim {embed_dim}")
    info = ModelInfo(name=r.text(d, "name", p), class_names=tuple(names),
                     palette=tuple(colours),  # type: ignore[arg-type]
                     mean=(mean[0], mean[1], mean[2]), std=(std[0], std[1], std[2]),
                     input_size=(size[0], size[1]), patch_size=patch, grid=(grid[0], grid[1]), extra_tokens=extra,
                     embed_dim=embed_dim, pause_after=tuple(pause_after), num_heads=heads)
    for key, value in (("num_patches", info.num_patches), ("tokens", info.tokens), ("num_classes", info.num_classes)):
        if key in d and r.integer(d, key, p) != value:  # written by the exporter; must agree with the rest
            raise r.fail(f"{p}{key}", f"is {show_value(d[key])}, but the grid, extra tokens and classes give {value}")
    return info


def _cost(r: _Reader, d: dict[str, Any], m: ModelInfo, p: str = "pausing.cost_model.") -> CostModel:
    blocks = r.ints(d, "stage_blocks", p, length=m.num_stages, lo=1)
    stage_ms = None
    if d.get("stage_ms") is not None:
        polys = r.items(d, "stage_ms", p, length=m.num_stages)
        stage_ms = tuple(tuple(r.numbers({"p": poly}, "p", f"{p}stage_ms[{i}].", 3)) for i, poly in enumerate(polys))
        if min(min(q) for q in stage_ms) < 0:
            raise r.fail(f"{p}stage_ms", "has negative coefficients")
    fields: dict[str, Any] = dict(
        embed_dim=r.integer(d, "embed_dim", p, lo=1, hi=1 << 16),
        mlp_ratio=r.number(r.get(d, "mlp_ratio", p), f"{p}mlp_ratio", positive=True),
        num_patches=r.integer(d, "num_patches", p, lo=1, hi=1 << 24), extra_tokens=r.integer(d, "extra_tokens", p),
        stage_blocks=tuple(blocks), num_classes=r.integer(d, "num_classes", p, lo=1),
        patch_size=r.integer(d, "patch_size", p, lo=1),
        decoder_macs=r.number(d.get("decoder_macs", 0.0), f"{p}decoder_macs", lo=0.0),
    )
    if stage_ms is not None:  # a measured latency profile (bundles carry MACs; a profile may be kept with them)
        fields.update(stage_ms=stage_ms, decoder_ms=r.number(d.get("decoder_ms", 0.0), f"{p}decoder_ms", lo=0.0),
                      device=str(d.get("device", "")))
    cost = CostModel(**fields)
    for key, want in (("embed_dim", m.embed_dim), ("num_patches", m.num_patches), ("extra_tokens", m.extra_tokens),
                      ("num_classes", m.num_classes), ("patch_size", m.patch_size)):
        if getattr(cost, key) != want:
            raise r.fail(f"{p}{key}", f"is {getattr(cost, key)}, but the model section says {want}")
    ends = list(itertools.accumulate(blocks))[:-1]
    if ends != list(m.pause_after):
        raise r.fail(f"{p}stage_blocks", f"{blocks} does not split the encoder at model.pause_after "
                     f"{list(m.pause_after)}")
    return cost


def _tensor(r: _Reader, t: Any, path: str) -> TensorSpec:
    if not isinstance(t, dict):
        raise r.fail(path, f"must be an object, not {_kind(t)}")
    shape = r.items(t, "shape", f"{path}.")
    for i, dim in enumerate(shape):
        if not (isinstance(dim, str) or (isinstance(dim, int) and not isinstance(dim, bool) and dim >= 0)):
            raise r.fail(f"{path}.shape[{i}]", f"must be a size or a dimension name, not {_kind(dim)}")
    return TensorSpec(r.text(t, "name", f"{path}."), tuple(shape), r.text(t, "dtype", f"{path}."))


def _graph(r: _Reader, name: str, g: Any, where: str = "graphs") -> GraphSpec:
    p = f"{where}.{name}"
    if not isinstance(g, dict):
        raise r.fail(p, f"must be an object, not {_kind(g)}")
    sha = r.text(g, "sha256", f"{p}.")
    if not _SHA256.fullmatch(sha):
        raise r.fail(f"{p}.sha256", "must be 64 lower-case hex digits")
    return GraphSpec(r.text(g, "file", f"{p}."), sha,
                     tuple(_tensor(r, t, f"{p}.inputs[{i}]") for i, t in enumerate(r.items(g, "inputs", f"{p}."))),
                     tuple(_tensor(r, t, f"{p}.outputs[{i}]") for i, t in enumerate(r.items(g, "outputs", f"{p}."))))


def check_io(r: _Reader, m: ModelInfo, name: str, g: GraphSpec, where: str = "graphs", kind: str = "staged",
             stage_blocks: tuple[int, ...] = ()) -> None:
    """The manifest's input/output specs of graph `name` fit the model section."""
    want = expected_io(m, name, kind, stage_blocks)
    if want is None:
        return
    if reuse_stage_index(name) is not None and not m.num_heads:
        raise r.fail("model.num_heads", f"is missing, and graph {where}.{name} needs it for the shape of its cache")
    for side, specs, expect in (("inputs", g.inputs, want[0]), ("outputs", g.outputs, want[1])):
        optional = (name in (DECODER, FULL) or is_peer_graph(name)) and side == "outputs"  # scores are optional
        if len(specs) > len(expect) or len(specs) < len(expect) - (1 if optional else 0):
            raise r.fail(f"{where}.{name}.{side}", f"lists {[s.name for s in specs]}, expected "
                         f"{[e[0] for e in expect]}")
        for i, (spec, (ename, eshape, edtype)) in enumerate(zip(specs, expect)):
            path = f"{where}.{name}.{side}[{i}]"
            if spec.name != ename:
                raise r.fail(f"{path}.name", f"is '{spec.name}', expected '{ename}'")
            if edtype == "labels" and spec.dtype not in LABEL_DTYPES or edtype != "labels" and spec.dtype != edtype:
                raise r.fail(f"{path}.dtype", f"is '{spec.dtype}', expected "
                             f"{' or '.join(LABEL_DTYPES) if edtype == 'labels' else edtype}")
            ok = len(spec.shape) == len(eshape) and all(
                e is None or (isinstance(s, str) if e == -1 else s == e) for s, e in zip(spec.shape, eshape))
            if not ok:
                show = ["any" if e is None else "n" if e == -1 else e for e in eshape]
                raise r.fail(f"{path}.shape", f"is {list(spec.shape)}, but the model section gives {show}")


def _engine(r: _Reader, e: Any, i: int, graph_sets: dict[str, dict[str, GraphSpec]]) -> EngineEntry:
    p = f"engines[{i}]."
    if not isinstance(e, dict):
        raise r.fail(f"engines[{i}]", f"must be an object, not {_kind(e)}")
    text = {key: r.text(e, key, p) for key in ("graph", "file", "sha256", "graph_sha256", "tensorrt", "precision")}
    folders = text["file"].replace("\\", "/").split("/")[:-1]  # engines/<key>/<graph>.engine
    text["key"] = r.text(e, "key", p) if "key" in e else (folders[-1] if folders else "")
    text["variant"] = r.text(e, "variant", p) if "variant" in e else ""
    if text["variant"] not in graph_sets:
        raise r.fail(f"{p}variant", f"names '{text['variant']}', which is not among the bundle's variants")
    if text["graph"] not in graph_sets[text["variant"]]:
        raise r.fail(f"{p}graph", f"names '{text['graph']}', which is not among the bundle's graphs")
    g = r.obj(e, "gpu", p)
    gpu = GpuSpec(r.text(g, "name", f"{p}gpu."), r.text(g, "compute_capability", f"{p}gpu."),
                  r.int_value(g.get("index", 0), f"{p}gpu.index"),
                  r.number(g.get("memory_gib", 0.0), f"{p}gpu.memory_gib", lo=0.0))
    profiles = e.get("profiles", [])
    if not isinstance(profiles, list) or not all(isinstance(x, dict) for x in profiles):
        raise r.fail(f"{p}profiles", "must be a list of objects (input name -> [min, opt, max] shapes)")
    dla = e.get("dla_core")
    return EngineEntry(**text, gpu=gpu, strongly_typed=bool(e.get("strongly_typed", False)),  # type: ignore[arg-type]
                       dla_core=None if dla is None else r.int_value(dla, f"{p}dla_core", 0, 64),
                       profiles=tuple(profiles),
                       budgets=tuple(r.number(b, f"{p}budgets[{j}]", positive=True)
                                     for j, b in enumerate(r.items(e, "budgets", p) if "budgets" in e else [])),
                       build_s=r.number(e.get("build_s", 0.0), f"{p}build_s", lo=0.0))


def _batch(r: _Reader, batch: Any) -> BatchRange:
    if batch is None:
        return BatchRange()
    if not isinstance(batch, dict):
        raise r.fail("batch", f"must be an object, not {_kind(batch)}")
    lo, opt, hi = (r.integer(batch, k, "batch.", lo=1, hi=1 << 16) for k in ("min", "opt", "max"))
    if not lo <= opt <= hi:
        raise r.fail("batch", f"must satisfy min <= opt <= max, got {lo}, {opt}, {hi}")
    return BatchRange(lo, opt, hi)


def _exporter(r: _Reader, d: Any) -> ExporterInfo:
    if d is None:
        return ExporterInfo()
    if not isinstance(d, dict):
        raise r.fail("exporter", f"must be an object, not {_kind(d)}")
    text = {k: str(d.get(k, "")) for k in ("paumer_edge", "torch", "onnx", "exporter")}
    return ExporterInfo(**text, opset=r.int_value(d.get("opset", 0), "exporter.opset", 0, 1000),
                        graphs_revision=r.int_value(d.get("graphs_revision", 0), "exporter.graphs_revision"))


def _graph_set(r: _Reader, model: ModelInfo, raw: Any, path: str, kind: str = "staged",
               stage_blocks: tuple[int, ...] = ()) -> dict[str, GraphSpec]:
    """Every graph of one set (the main graphs or a variant's), each checked against the model at its size."""
    if not isinstance(raw, dict):
        raise r.fail(path, f"must be an object, not {_kind(raw)}")
    if r.version < REUSE_GRAPHS_VERSION:  # format 4's reuse graphs took other caches: not run, so not read
        raw = {name: g for name, g in raw.items() if reuse_stage_index(str(name)) is None}
    graphs = {str(name): _graph(r, str(name), g, path) for name, g in raw.items()}
    missing = [n for n in [*model.stage_names, DECODER] if n not in graphs]
    if missing:
        raise r.fail(path, f"lacks {missing}")
    for name, g in graphs.items():
        check_io(r, model, name, g, path, kind, stage_blocks)
    return graphs


def _variants(r: _Reader, raw: Any, model: ModelInfo, main: dict[str, GraphSpec]) -> tuple[Variant, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise r.fail("variants", f"must be a list, not {_kind(raw)}")
    out: list[Variant] = []
    files = {g.file for g in main.values()}
    for i, v in enumerate(raw):
        p = f"variants[{i}]."
        if not isinstance(v, dict):
            raise r.fail(f"variants[{i}]", f"must be an object, not {_kind(v)}")
        name = r.text(v, "name", p)
        if not name or name in {x.name for x in out}:
            raise r.fail(f"{p}name", f"'{name}' must be a unique, non-empty name")
        size = r.ints(v, "input_size", p, 2, lo=1)
        patch = model.patch_size
        if size[0] % patch or size[1] % patch or size[0] * size[1] > 1 << 26:
            raise r.fail(f"{p}input_size", f"{size} must be a multiple of the patch size {patch}, and plausible")
        precision = r.text(v, "precision", p)
        if precision not in PRECISIONS:
            raise r.fail(f"{p}precision", f"is '{precision}', not one of {', '.join(PRECISIONS)}")
        kind = r.text(v, "kind", p) if "kind" in v else "staged"
        if kind not in VARIANT_KINDS:
            raise r.fail(f"{p}kind", f"is '{kind}', not one of {', '.join(VARIANT_KINDS)}")
        at = replace(model, input_size=(size[0], size[1]), grid=(size[0] // patch, size[1] // patch))
        cost = _cost(r, r.obj(v, "cost_model", p), at, f"{p}cost_model.")
        graphs = _graph_set(r, at, r.obj(v, "graphs", p), f"{p}graphs", kind, cost.stage_blocks)
        shared = files & {g.file for g in graphs.values()}
        if shared:
            raise r.fail(f"{p}graphs", f"reuses the files {sorted(shared)} of another set of graphs")
        files |= {g.file for g in graphs.values()}
        out.append(Variant(name, (size[0], size[1]), precision, graphs, cost, kind))
    return tuple(out)


def _version(r: _Reader, manifest: Any, where: str) -> int:
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BundleError(f"{where} is not a paumer-edge bundle manifest (no \"format\": \"{FORMAT}\"); {REEXPORT}")
    version = manifest.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise r.fail("format_version", "must be a positive integer")
    if version > FORMAT_VERSION:
        raise BundleError(f"bundle format {version} is newer than this runtime reads ({FORMAT_VERSION}); "
                          "upgrade paumer-edge")
    if version not in READS_VERSIONS:
        raise BundleError(f"bundle format {version} is no longer read by this runtime; {REEXPORT}")
    return version


def parse_manifest(manifest: Any, where: str) -> Manifest:
    """Check a manifest (already JSON-decoded) against the schema and itself; `where` names it in errors."""
    from .plans import parse_plans
    r = _Reader(where)
    version = r.version = _version(r, manifest, where)
    model = _model(r, r.obj(manifest, "model"))
    pausing = r.obj(manifest, "pausing")
    cost = _cost(r, r.obj(pausing, "cost_model", "pausing."), model)
    graphs = _graph_set(r, model, r.get(manifest, "graphs", ""), "graphs", stage_blocks=cost.stage_blocks)
    variants = _variants(r, manifest.get("variants"), model, graphs)
    entries = manifest.get("engines", [])
    if not isinstance(entries, list):
        raise r.fail("engines", f"must be a list, not {_kind(entries)}")
    sets = {"": graphs, **{v.name: v.graphs for v in variants}}
    engines = tuple(_engine(r, e, i, sets) for i, e in enumerate(entries))
    return Manifest(model, cost, graphs, _batch(r, manifest.get("batch")), _exporter(r, manifest.get("exporter")),
                    engines, source=str(manifest.get("source") or ""), created=str(manifest.get("created") or ""),
                    variants=variants, format_version=version, plans=parse_plans(r, manifest.get("plans"), variants))
