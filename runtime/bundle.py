"""The deployment bundle as the runtime sees it: loading and integrity checks.

A bundle is a directory: `manifest.json` plus the graphs it names. Loading refuses, each with its own
message saying which file or field is wrong and what to do:
- a manifest that is not JSON, not a bundle manifest, from a newer format, or off its schema, or whose
  parts disagree (token count, patch grid, cost model, graph shapes): see `paumer_edge.core.schema`;
- a file name that leaves the bundle: absolute, `..`, or a symlink pointing out;
- a graph whose sha256 differs from the manifest's (changed or corrupted);
- a graph whose own inputs/outputs differ from the manifest's, or that keeps tensors in external data
  files. Bundles never use external data (the exporter embeds every weight), so any reference is refused
  rather than followed; `onnx_scan.py` reads the graph's protobuf without loading any data.
The contract itself (the manifest's dataclasses) is `paumer_edge.core.contract`; `paumer_edge.export`
writes to it.
"""

from __future__ import annotations

import hashlib
import json
import mmap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from paumer_edge.core.contract import (
    FORMAT,
    FORMAT_VERSION,
    MANIFEST,
    REEXPORT,
    BatchRange,
    EngineEntry,
    GraphSpec,
    Manifest,
    ModelInfo,
    TensorSpec,
)
from paumer_edge.core.cost import CostModel
from paumer_edge.core.errors import BundleError
from paumer_edge.core.memory import MemoryLimitError, check_memory, frame_bytes

from .onnx_scan import IoSpec, OnnxFormatError, scan_onnx

__all__ = ["FORMAT", "FORMAT_VERSION", "MANIFEST", "Bundle", "BundleError", "GraphSpec", "Manifest", "ModelInfo",
           "TensorSpec", "confined", "load_bundle", "sha256_file"]

MAX_MANIFEST_BYTES = 16 << 20  # real manifests are a few KiB


@dataclass(frozen=True)
class Bundle:
    """A checked bundle directory and its manifest."""

    path: Path
    manifest: Manifest

    @property
    def model(self) -> ModelInfo:
        return self.manifest.model

    @property
    def cost(self) -> CostModel:
        """The MAC model of the bundle's encoder (a device's latency profile replaces it at run time)."""
        return self.manifest.cost

    @property
    def graphs(self) -> dict[str, GraphSpec]:
        return self.manifest.graphs

    @property
    def batch(self) -> BatchRange:
        return self.manifest.batch

    @property
    def engines(self) -> tuple[EngineEntry, ...]:
        return self.manifest.engines

    @property
    def stage_names(self) -> list[str]:
        return self.model.stage_names

    def graph_path(self, name: str) -> Path:
        return self.path / self.graphs[name].file

    def variant(self, name: str) -> Bundle:
        """The bundle's graphs at another input size or precision, as a bundle of their own ("": the main
        graphs): a `StagedRunner` or `Pipeline` runs it like any bundle."""
        try:
            return Bundle(self.path, self.manifest.view(name))
        except KeyError as e:
            raise BundleError(f"bundle '{self.path}': {e.args[0]}") from None


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def confined(root: Path, name: str, what: str = "file") -> Path:
    """The path of a file the manifest names, refused unless it stays inside the bundle (symlinks resolved)."""
    p = Path(name) if name and "\0" not in name else None
    if p is None or p.is_absolute() or ".." in p.parts or "\\" in name or p.drive:
        raise BundleError(f"bundle '{root}' names the {what} '{name}', which is outside the bundle; refusing it "
                          f"({REEXPORT})")
    path = root / p
    real, base = path.resolve(), root.resolve()
    if real != base and base not in real.parents:
        raise BundleError(f"bundle {what} '{name}' in '{root}' resolves to '{real}', outside the bundle (a symlink?); "
                          f"refusing it ({REEXPORT})")
    return path


def _read_manifest(root: Path) -> Any:
    mpath = confined(root, MANIFEST, "manifest")
    if not mpath.is_file():
        raise BundleError(f"'{root}' has no {MANIFEST}: it is not a paumer-edge bundle, or its export did not finish")
    try:
        size = mpath.stat().st_size
        if size > MAX_MANIFEST_BYTES:
            raise BundleError(f"{mpath} is {size >> 20} MiB, far larger than any bundle manifest; {REEXPORT}")
        return json.loads(mpath.read_bytes())
    except OSError as e:
        raise BundleError(f"cannot read {mpath} ({e.strerror or e})") from None
    except (ValueError, UnicodeDecodeError) as e:  # ValueError: JSON errors, and integers over 4300 digits
        raise BundleError(f"{mpath} is not valid JSON ({str(e)[:200]}); {REEXPORT}") from None
    except RecursionError:
        raise BundleError(f"{mpath} nests too deeply to be a bundle manifest; {REEXPORT}") from None


def _file_bytes(path: Path) -> Any:
    """A read-only buffer of the whole file (memory-mapped: graphs can be large)."""
    with open(path, "rb") as f:
        try:
            return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        except ValueError:  # empty file
            return b""


def _spec_text(specs: list[IoSpec] | tuple[TensorSpec, ...]) -> str:
    return ", ".join(f"{s.name} {list(s.shape)} {s.dtype}" for s in specs)


def _check_graph(root: Path, name: str, g: GraphSpec, check_hash: bool) -> None:
    file = confined(root, g.file, "file")
    if not file.is_file():
        raise BundleError(f"bundle file '{g.file}' ({name}) is missing from '{root}'; {REEXPORT}")
    try:
        data = _file_bytes(file)
    except OSError as e:
        raise BundleError(f"cannot read bundle file '{file}' ({e.strerror or e})") from None
    try:
        if check_hash and hashlib.sha256(data).hexdigest() != g.sha256:
            raise BundleError(f"bundle file '{g.file}' does not match its sha256 in the manifest: it was changed or "
                              f"corrupted; {REEXPORT}")
        try:
            found = scan_onnx(data)
        except OnnxFormatError as e:
            raise BundleError(f"bundle file '{g.file}' ({name}) is not a valid ONNX model ({e}); {REEXPORT}") from None
    finally:
        if isinstance(data, mmap.mmap):
            data.close()
    for tensor, location in found.external:
        where = "no location" if not location else f"'{location}'"
        try:
            confined(root, location, "external data")
            inside = bool(location)
        except BundleError:
            inside = False
        raise BundleError(f"bundle file '{g.file}' keeps tensor '{tensor}' in external data ({where}"
                          f"{'' if inside else ', outside the bundle'}); bundles keep every weight inside their "
                          f"graphs, so this is refused; {REEXPORT}")
    inputs = [s for s in found.inputs if s.name not in found.initializers]
    for side, have, want in (("inputs", inputs, g.inputs), ("outputs", found.outputs, g.outputs)):
        if [(s.name, tuple(s.shape), s.dtype) for s in have] != [(s.name, tuple(s.shape), s.dtype) for s in want]:
            raise BundleError(f"bundle file '{g.file}' has {side} ({_spec_text(have)}) but the manifest says "
                              f"({_spec_text(want)}); {REEXPORT}")


def _check_memory(root: Path, m: ModelInfo) -> None:
    """A manifest cannot ask the runtime for more memory per frame than the limit allows."""
    try:
        check_memory(frame_bytes(m.input_size, m.tokens, m.embed_dim, m.num_classes),
                     f"bundle '{root}' ({m.input_size[0]}x{m.input_size[1]} input, {m.tokens:,} tokens of width "
                     f"{m.embed_dim})")
    except MemoryLimitError as e:
        raise BundleError(str(e)) from None


def load_bundle(path: str | Path, check_hashes: bool = True) -> Bundle:
    """Read and check a bundle directory (see the module docstring for what is checked)."""
    root = Path(path)
    if not root.exists():
        # the exporter swaps bundles with two renames; between them a crash leaves the old one here
        old = sorted(root.parent.glob(f".{root.name}.old-*")) if root.name else []
        if old:
            raise BundleError(f"bundle '{root}' is missing but an interrupted export left the previous one at "
                              f"'{old[-1]}': rename it back to '{root}', or export again")
        raise BundleError(f"bundle '{root}' does not exist; create one with `paumer-edge export CKPT -o {root}`")
    if not root.is_dir():
        raise BundleError(f"'{root}' is a file, not a bundle directory (a bundle is a folder with manifest.json)")
    manifest = Manifest.from_dict(_read_manifest(root), str(root / MANIFEST))
    for model in [manifest.model, *(manifest.view(v.name).model for v in manifest.variants)]:
        _check_memory(root, model)
    for graphs in [manifest.graphs, *(v.graphs for v in manifest.variants)]:
        for name, g in graphs.items():
            _check_graph(root, name, g, check_hashes)
    for e in manifest.engines:
        confined(root, e.file, "engine file")
    return Bundle(root, manifest)
