"""The bundle manifest's schema: every field read with its type and range checked, and the parts checked
against each other (token count, patch grid, cost model, graph shapes), so a malformed or hand-edited
manifest is refused with the field it got wrong instead of failing later inside a backend.
"""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass
from typing import Any

from paumer_edge.core.errors import BundleError
from paumer_edge.core.knobs import show_value
from paumer_edge.core.pausing import CostModel

FORMAT = "paumer-edge-bundle"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
REEXPORT = "re-export the bundle with `paumer-edge export`"
LABEL_DTYPES = ("uint8", "uint16", "int32", "int64")
_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[int | str, ...]  # str = a named dynamic dimension ("batch", "n")
    dtype: str


@dataclass(frozen=True)
class GraphSpec:
    file: str
    sha256: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]


@dataclass(frozen=True)
class ModelInfo:
    """What a runtime needs to know about the network, without its code."""

    name: str
    class_names: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    input_size: tuple[int, int]  # (H, W) the graphs take
    patch_size: int
    grid: tuple[int, int]
    extra_tokens: int
    embed_dim: int
    pause_after: tuple[int, ...]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def num_patches(self) -> int:
        return self.grid[0] * self.grid[1]

    @property
    def tokens(self) -> int:
        """L: rows of the token buffer (extra tokens + patches)."""
        return self.extra_tokens + self.num_patches

    @property
    def num_stages(self) -> int:
        return len(self.pause_after) + 1


@dataclass(frozen=True)
class Manifest:
    model: ModelInfo
    cost: CostModel
    graphs: dict[str, GraphSpec]
    engines: tuple[dict[str, Any], ...]


class _Reader:
    """Typed reads of manifest fields; each failure names the field (a dotted path) and what it should be."""

    def __init__(self, where: str):
        self.where = where

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
    info = ModelInfo(name=r.text(d, "name", p), class_names=tuple(names),
                     palette=tuple(colours),  # type: ignore[arg-type]
                     mean=(mean[0], mean[1], mean[2]), std=(std[0], std[1], std[2]),
                     input_size=(size[0], size[1]), patch_size=patch, grid=(grid[0], grid[1]), extra_tokens=extra,
                     embed_dim=r.integer(d, "embed_dim", p, lo=1, hi=1 << 16), pause_after=tuple(pause_after))
    for key, value in (("num_patches", info.num_patches), ("tokens", info.tokens), ("num_classes", info.num_classes)):
        if key in d and r.integer(d, key, p) != value:  # written by the exporter; must agree with the rest
            raise r.fail(f"{p}{key}", f"is {show_value(d[key])}, but the grid, extra tokens and classes give {value}")
    return info


def _cost(r: _Reader, d: dict[str, Any], m: ModelInfo) -> CostModel:
    p = "pausing.cost_model."
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


def _graph(r: _Reader, name: str, g: Any) -> GraphSpec:
    p = f"graphs.{name}"
    if not isinstance(g, dict):
        raise r.fail(p, f"must be an object, not {_kind(g)}")
    sha = r.text(g, "sha256", f"{p}.")
    if not _SHA256.fullmatch(sha):
        raise r.fail(f"{p}.sha256", "must be 64 lower-case hex digits")
    return GraphSpec(r.text(g, "file", f"{p}."), sha,
                     tuple(_tensor(r, t, f"{p}.inputs[{i}]") for i, t in enumerate(r.items(g, "inputs", f"{p}."))),
                     tuple(_tensor(r, t, f"{p}.outputs[{i}]") for i, t in enumerate(r.items(g, "outputs", f"{p}."))))


Expect = tuple[str, tuple[int | None, ...], str]  # name, shape (None: any size or name; -1: a named dim), dtype


def expected_io(m: ModelInfo, name: str) -> tuple[list[Expect], list[Expect]] | None:
    """(inputs, outputs) a graph must have; "labels" as dtype = any of LABEL_DTYPES. None for graphs the
    runtime does not run (unknown names)."""
    h, w = m.input_size
    tokens: Expect = ("tokens", (None, m.tokens, m.embed_dim), "float32")
    image: list[Expect] = [("image", (None, 3, h, w), "float32")]
    labels: Expect = ("labels", (None, h, w), "labels")
    scores: Expect = ("scores", (None, m.num_classes, h, w), "float32")
    last = m.num_stages - 1
    if name == "stage0":
        return image, [tokens] + ([("entropy", (None, m.num_patches), "float32")] if last else [])
    if name.startswith("stage") and name[5:].isdigit() and 0 < int(name[5:]) <= last:
        ins: list[Expect] = [tokens, ("active", (None, -1), "int64")]
        return ins, [("tokens_out", tokens[1], "float32")] + ([("entropy", (None, -1), "float32")]
                                                               if int(name[5:]) < last else [])
    if name == "decoder":
        return [tokens], [labels, scores]
    if name == "full":
        return image, [labels, scores]
    return None


def check_io(r: _Reader, m: ModelInfo, name: str, g: GraphSpec) -> None:
    """The manifest's input/output specs of graph `name` fit the model section."""
    want = expected_io(m, name)
    if want is None:
        return
    for side, specs, expect in (("inputs", g.inputs, want[0]), ("outputs", g.outputs, want[1])):
        optional = name in ("decoder", "full") and side == "outputs"  # scores are optional
        if len(specs) > len(expect) or len(specs) < len(expect) - (1 if optional else 0):
            raise r.fail(f"graphs.{name}.{side}", f"lists {[s.name for s in specs]}, expected "
                         f"{[e[0] for e in expect]}")
        for i, (spec, (ename, eshape, edtype)) in enumerate(zip(specs, expect)):
            path = f"graphs.{name}.{side}[{i}]"
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


def _engines(r: _Reader, manifest: dict[str, Any], graphs: dict[str, GraphSpec]) -> tuple[dict[str, Any], ...]:
    entries = manifest.get("engines", [])
    if not isinstance(entries, list):
        raise r.fail("engines", f"must be a list, not {_kind(entries)}")
    for i, e in enumerate(entries):
        p = f"engines[{i}]."
        if not isinstance(e, dict):
            raise r.fail(f"engines[{i}]", f"must be an object, not {_kind(e)}")
        for key in ("graph", "file", "sha256", "graph_sha256", "tensorrt", "precision"):
            r.text(e, key, p)
        if e["graph"] not in graphs:
            raise r.fail(f"{p}graph", f"names '{e['graph']}', which is not among the bundle's graphs")
        gpu = r.obj(e, "gpu", p)
        r.text(gpu, "name", f"{p}gpu.")
        r.text(gpu, "compute_capability", f"{p}gpu.")
    return tuple(entries)


def parse_manifest(manifest: Any, where: str) -> Manifest:
    """Check a manifest (already JSON-decoded) against the schema and itself; `where` names it in errors."""
    r = _Reader(where)
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BundleError(f"{where} is not a paumer-edge bundle manifest (no \"format\": \"{FORMAT}\"); {REEXPORT}")
    version = manifest.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise r.fail("format_version", "must be a positive integer")
    if version > FORMAT_VERSION:
        raise BundleError(f"bundle format {version} is newer than this runtime reads ({FORMAT_VERSION}); "
                          "upgrade paumer-edge")
    model = _model(r, r.obj(manifest, "model"))
    pausing = r.obj(manifest, "pausing")
    cost = _cost(r, r.obj(pausing, "cost_model", "pausing."), model)
    raw = r.obj(manifest, "graphs")
    graphs = {str(name): _graph(r, str(name), g) for name, g in raw.items()}
    missing = [n for n in [f"stage{k}" for k in range(model.num_stages)] + ["decoder"] if n not in graphs]
    if missing:
        raise r.fail("graphs", f"lacks {missing}")
    for name, g in graphs.items():
        check_io(r, model, name, g)
    batch = manifest.get("batch")
    if batch is not None:
        if not isinstance(batch, dict):
            raise r.fail("batch", f"must be an object, not {_kind(batch)}")
        lo, opt, hi = (r.integer(batch, k, "batch.", lo=1, hi=1 << 16) for k in ("min", "opt", "max"))
        if not lo <= opt <= hi:
            raise r.fail("batch", f"must satisfy min <= opt <= max, got {lo}, {opt}, {hi}")
    return Manifest(model, cost, graphs, _engines(r, manifest, graphs))
