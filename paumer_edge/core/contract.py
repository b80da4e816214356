"""The deployment bundle's contract: the manifest as typed dataclasses, written by the exporter and read by the
runtime (torch-free).

`Manifest.to_dict()` is the JSON the exporter writes; `Manifest.from_dict()` (via `core.schema`) reads it back,
checking every field's type and range and the parts against each other, so a malformed or hand-edited manifest
is refused with the field it got wrong. Every field is written once and read somewhere: the runtime runs the
graphs and checks their hashes, the engines are matched to a GPU and TensorRT, `batch` shapes the engine
profiles, `exporter.graphs_revision` tells a stale cached export, and `paumer-edge info BUNDLE` shows the rest.

Format history: 1 (first release); 2 drops fields nothing read (`model.config`, `pausing.pause_after`,
`pausing.stage_bounds`, per-graph `bytes` / `export_s`); 3 adds `variants` (the graphs again at other input
sizes or precisions), written only by bundles that carry some; 4 adds `plans` (what each budget buys: a graph
set and a pausing budget, measured), variant kinds other than "staged" (early-exit graphs, a coarse stage 0), the
temporal-reuse stage graphs (`stage<k>_reuse`: stage 0 too runs only the active tokens, which attend to cached keys
and values) and `model.num_heads`; 5 gives the reuse graphs their present form (the context as patch positions,
one cache per stage [B, 2 x blocks, heads, L, head_dim] read but never copied, only the fresh keys and values of
the rows that ran as output: the host writes them into its cache). Each newer field is written only by bundles
that carry it, so a bundle states the oldest format that reads all of it. Versions 1 to 4 still load (format 4's
reuse graphs are not read); a bundle without reuse graphs of format 5 cannot reuse (one line says so when asked).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from .cost import CostModel
from .names import DECODER, FULL, reuse_stage_index, reuse_stage_name, stage_name

FORMAT = "paumer-edge-bundle"
FORMAT_VERSION = 5  # the newest this code reads and writes
READS_VERSIONS = (1, 2, 3, 4, 5)
REUSE_GRAPHS_VERSION = 5  # the temporal-reuse graphs as this code runs them (format 4's are not read)
PRECISIONS = ("fp32", "fp16", "int8")
# how a variant's graphs run: "staged" (the usual stages, pausing), "early-exit" (stages that also emit their
# head's log-probabilities and a decoder that takes the exited patches' predictions: `core.exits`),
# "coarse-stage0" (stage 0 on a coarser token grid, PRO-SCALE; same inputs and outputs as "staged")
VARIANT_KINDS = ("staged", "early-exit", "coarse-stage0")
MANIFEST = "manifest.json"
REEXPORT = "re-export the bundle with `paumer-edge export`"
LABEL_DTYPES = ("uint8", "uint16", "int32", "int64")


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[int | str, ...]  # str = a named dynamic dimension ("batch", "n")
    dtype: str

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}


@dataclass(frozen=True)
class GraphSpec:
    file: str
    sha256: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "sha256": self.sha256, "inputs": [t.to_dict() for t in self.inputs],
                "outputs": [t.to_dict() for t in self.outputs]}

    @property
    def output_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.outputs)


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
    num_heads: int = 0  # attention heads (format 4; 0 = not recorded, a bundle from before temporal reuse)

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

    @property
    def stage_names(self) -> list[str]:
        return [stage_name(k) for k in range(self.num_stages)]

    @property
    def reuse_stage_names(self) -> list[str]:
        return [reuse_stage_name(k) for k in range(self.num_stages)]

    def to_dict(self) -> dict[str, Any]:
        # num_patches, tokens and num_classes follow from the rest; written for readers, checked on load
        return {"name": self.name, "class_names": list(self.class_names), "palette": [list(c) for c in self.palette],
                "mean": list(self.mean), "std": list(self.std), "input_size": list(self.input_size),
                "patch_size": self.patch_size, "grid": list(self.grid), "num_patches": self.num_patches,
                "extra_tokens": self.extra_tokens, "tokens": self.tokens, "embed_dim": self.embed_dim,
                "num_classes": self.num_classes, "pause_after": list(self.pause_after), "num_heads": self.num_heads}


@dataclass(frozen=True)
class BatchRange:
    """Batch sizes the TensorRT engine profiles cover (ONNX graphs take any batch)."""

    min: int = 1
    opt: int = 1
    max: int = 8

    def to_dict(self) -> dict[str, int]:
        return {"min": self.min, "opt": self.opt, "max": self.max}

    @property
    def sizes(self) -> tuple[int, int, int]:
        return self.min, self.opt, self.max


@dataclass(frozen=True)
class ExporterInfo:
    """What made the graphs: versions, opset, and the revision of the graph definitions."""

    paumer_edge: str = ""
    torch: str = ""
    onnx: str = ""
    opset: int = 0
    exporter: str = ""
    graphs_revision: int = 0

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class GpuSpec:
    name: str
    compute_capability: str  # "8.7"
    index: int = 0
    memory_gib: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "name": self.name, "compute_capability": self.compute_capability,
                "memory_gib": self.memory_gib}


@dataclass(frozen=True)
class EngineEntry:
    """A TensorRT engine built for one graph on one GPU with one TensorRT version and precision."""

    graph: str
    key: str
    file: str
    sha256: str
    graph_sha256: str
    tensorrt: str
    gpu: GpuSpec
    precision: str
    variant: str = ""  # the graph set the graph belongs to ("" = the bundle's main graphs)
    strongly_typed: bool = False
    dla_core: int | None = None
    profiles: tuple[dict[str, list[list[int]]], ...] = ()  # per profile: input -> [min, opt, max] shapes
    budgets: tuple[float, ...] = ()  # the budgets the profiles were tuned for
    build_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"graph": self.graph, "key": self.key, "file": self.file, "sha256": self.sha256,
                "graph_sha256": self.graph_sha256, "tensorrt": self.tensorrt, "gpu": self.gpu.to_dict(),
                "precision": self.precision, **({"variant": self.variant} if self.variant else {}),
                "strongly_typed": self.strongly_typed, "dla_core": self.dla_core,
                "profiles": [dict(p) for p in self.profiles], "budgets": list(self.budgets), "build_s": self.build_s}

    @property
    def slot(self) -> tuple[str, str, str, str, str]:
        """What a newer build replaces: the same graph of the same variant, precision, GPU and TensorRT version."""
        return self.variant, self.graph, self.precision, self.gpu.name, self.tensorrt


@dataclass(frozen=True)
class Variant:
    """The staged graphs once more, at another input size and/or precision (e.g. a lower resolution that a
    budget may pick, or INT8 Q/DQ graphs). Same classes, patch size, width and pausing points as the main
    graphs; `Manifest.view(name)` presents a variant as a bundle of its own."""

    name: str  # unique, e.g. "96x192" or "int8"; its files usually sit in a folder of that name
    input_size: tuple[int, int]
    precision: str  # one of PRECISIONS
    graphs: dict[str, GraphSpec]  # every stage and the decoder (full optional)
    cost: CostModel  # the MAC model at this input size
    kind: str = "staged"  # one of VARIANT_KINDS

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "input_size": list(self.input_size), "precision": self.precision,
                **({"kind": self.kind} if self.kind != "staged" else {}),
                "graphs": {name: g.to_dict() for name, g in self.graphs.items()}, "cost_model": self.cost.to_dict()}


@dataclass(frozen=True)
class PlanPoint:
    """One setting a budget can buy, as measured on the calibration images: a graph set at a pausing budget, or
    (on an early-exit graph set) DToP's early exit at a confidence."""

    variant: str  # the graph set ("" = the main graphs)
    pausing: float  # the pausing budget within it (a fraction of its encoder's MACs, so the tokens kept are fixed)
    miou: float  # mean IoU on the calibration images, in [0, 1]
    ms: float  # median time per frame through the runtime (pre-processing to labels) on the calibration device
    cost: float  # paired time ratio against the main graphs at budget 1 on the same frames (0.25: 4x as fast)
    exit: float = 0.0  # > 0: early exit at this confidence instead of pausing (an "early-exit" graph set)

    def to_dict(self) -> dict[str, Any]:
        return {"variant": self.variant, "pausing": self.pausing, "miou": self.miou, "ms": self.ms, "cost": self.cost,
                **({"exit": self.exit} if self.exit else {})}


@dataclass(frozen=True)
class Plans:
    """What each budget buys across input sizes (and precisions) and pausing: the measured joint front, cheapest
    first, each point slower and more accurate than the one before. A budget runs the most accurate point whose
    cost fits it (`paumer_edge.core.plans`)."""

    points: tuple[PlanPoint, ...]
    images: int  # calibration images
    data: str  # which images (e.g. "synthetic val, 256x512 frames")
    device: str  # where the times were measured
    measured: str  # ISO date of the calibration
    candidates: str = ""  # the settings measured, e.g. "pausing 1,0.85,...; exit 0.99,..." ("": not recorded)

    def to_dict(self) -> dict[str, Any]:
        return {"points": [p.to_dict() for p in self.points], "images": self.images, "data": self.data,
                "device": self.device, "measured": self.measured,
                **({"candidates": self.candidates} if self.candidates else {})}


@dataclass(frozen=True)
class Manifest:
    model: ModelInfo
    cost: CostModel  # the MAC model budgets are fractions of, unless a device's latency profile replaces it
    graphs: dict[str, GraphSpec]
    batch: BatchRange = field(default_factory=BatchRange)
    exporter: ExporterInfo = field(default_factory=ExporterInfo)
    engines: tuple[EngineEntry, ...] = ()
    source: str = ""  # the checkpoint it was exported from
    created: str = ""  # ISO time of the export
    variants: tuple[Variant, ...] = ()
    format_version: int = FORMAT_VERSION  # as read; `to_dict` writes the oldest version that reads it all
    precision: str = "fp32"  # of the graphs in `graphs` (a view of an INT8 variant says int8)
    plans: Plans | None = None  # what each budget buys (bundles exported with plans)
    kind: str = "staged"  # how `graphs` run (a view of a variant says its kind)

    @property
    def run_graphs(self) -> list[str]:
        """The graphs a runtime runs, in order: every stage, then the decoder."""
        return [*self.model.stage_names, DECODER]

    @property
    def has_scores(self) -> bool:
        return "scores" in self.graphs[DECODER].output_names

    @property
    def has_full(self) -> bool:
        return FULL in self.graphs

    @property
    def has_reuse(self) -> bool:
        """Whether the bundle has the temporal-reuse graph of every stage (format 5 exports; older ones cannot)."""
        return all(name in self.graphs for name in self.model.reuse_stage_names)

    @property
    def variant_names(self) -> list[str]:
        return [v.name for v in self.variants]

    def view(self, name: str) -> Manifest:
        """The variant `name` as a manifest of its own (its input size, graphs, cost model and engines); ""
        is the main graphs. A `KeyError` names what there is."""
        if not name:
            return self
        found = [v for v in self.variants if v.name == name]
        if not found:
            raise KeyError(f"no variant '{name}' in this bundle (it has: {', '.join(self.variant_names) or 'none'})")
        v = found[0]
        p = self.model.patch_size
        model = replace(self.model, input_size=v.input_size, grid=(v.input_size[0] // p, v.input_size[1] // p))
        return replace(self, model=model, cost=v.cost, graphs=v.graphs, variants=(), precision=v.precision,
                       engines=tuple(replace(e, variant="") for e in self.engines if e.variant == name), plans=None,
                       kind=v.kind)

    @property
    def written_version(self) -> int:
        """The oldest format that reads everything this manifest holds."""
        reuse = any(reuse_stage_index(n) is not None for g in (self.graphs, *(v.graphs for v in self.variants))
                    for n in g)
        if reuse:
            return REUSE_GRAPHS_VERSION
        if self.plans is not None or any(v.kind != "staged" for v in self.variants):
            return 4
        return 3 if self.variants else 2

    def to_dict(self) -> dict[str, Any]:
        d = {"format": FORMAT, "format_version": self.written_version, "created": self.created,
             "source": self.source, "model": self.model.to_dict(), "pausing": {"cost_model": self.cost.to_dict()},
             "graphs": {name: g.to_dict() for name, g in self.graphs.items()}, "batch": self.batch.to_dict(),
             "exporter": self.exporter.to_dict(), "engines": [e.to_dict() for e in self.engines]}
        if self.variants:
            d["variants"] = [v.to_dict() for v in self.variants]
        if self.plans is not None:
            d["plans"] = self.plans.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: Any, where: str) -> Manifest:
        """Read and check a JSON-decoded manifest; `where` names it in errors (`BundleError`)."""
        from .schema import parse_manifest

        return parse_manifest(d, where)
