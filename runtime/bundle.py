"""The deployment bundle as the runtime sees it: manifest schema, loading and integrity checks.

A bundle is a directory: `manifest.json` plus the graphs it names. Loading checks the format version,
the schema, that every file name stays inside the bundle, and every file's sha256, and says exactly
what is wrong. This module is the contract; `paumer_edge.export` writes to it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from paumer_edge import UserError
from paumer_edge.pausing import CostModel

FORMAT = "paumer-edge-bundle"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"


class BundleError(UserError):
    """A bundle that is missing, corrupt, tampered with, or from an incompatible version."""


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[int | str, ...]  # str = a named dynamic dimension ("batch", "n")
    dtype: str

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TensorSpec:
        return cls(str(d["name"]), tuple(d["shape"]), str(d["dtype"]))


@dataclass(frozen=True)
class GraphSpec:
    file: str
    sha256: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GraphSpec:
        return cls(str(d["file"]), str(d["sha256"]), tuple(TensorSpec.from_dict(t) for t in d["inputs"]),
                   tuple(TensorSpec.from_dict(t) for t in d["outputs"]))


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

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelInfo:
        return cls(
            name=str(d["name"]), class_names=tuple(d["class_names"]),
            palette=tuple((int(c[0]), int(c[1]), int(c[2])) for c in d["palette"]),
            mean=(float(d["mean"][0]), float(d["mean"][1]), float(d["mean"][2])),
            std=(float(d["std"][0]), float(d["std"][1]), float(d["std"][2])),
            input_size=(int(d["input_size"][0]), int(d["input_size"][1])), patch_size=int(d["patch_size"]),
            grid=(int(d["grid"][0]), int(d["grid"][1])), extra_tokens=int(d["extra_tokens"]),
            embed_dim=int(d["embed_dim"]), pause_after=tuple(int(p) for p in d["pause_after"]),
        )


@dataclass(frozen=True)
class Bundle:
    path: Path
    manifest: dict[str, Any]
    model: ModelInfo
    cost: CostModel
    graphs: dict[str, GraphSpec]

    @property
    def stage_names(self) -> list[str]:
        return [f"stage{k}" for k in range(self.model.num_stages)]

    def graph_path(self, name: str) -> Path:
        return self.path / self.graphs[name].file


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _confined(root: Path, name: str) -> Path:
    """The path of a file the manifest names, refused unless it stays inside the bundle."""
    if not name or Path(name).is_absolute() or ".." in Path(name).parts or "\\" in name:
        raise BundleError(f"bundle '{root}' names the file '{name}', which is outside the bundle; refusing it")
    path = root / name
    if path.resolve().parent != root.resolve() and root.resolve() not in path.resolve().parents:
        raise BundleError(f"bundle file '{name}' resolves outside the bundle (a symlink?); refusing it")
    return path


def load_bundle(path: str | Path, check_hashes: bool = True) -> Bundle:
    """Read and check a bundle directory."""
    root = Path(path)
    if not root.exists():
        raise BundleError(f"bundle '{root}' does not exist; create one with `paumer-edge export CKPT -o {root}`")
    if not root.is_dir():
        raise BundleError(f"'{root}' is a file, not a bundle directory (a bundle is a folder with manifest.json)")
    mpath = root / MANIFEST
    if not mpath.is_file():
        raise BundleError(f"'{root}' has no {MANIFEST}: it is not a paumer-edge bundle, or its export did not finish")
    try:
        manifest = json.loads(mpath.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BundleError(f"{mpath} is not valid JSON ({e}); re-export the bundle") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BundleError(f"{mpath} is not a paumer-edge bundle manifest")
    version = manifest.get("format_version")
    if not isinstance(version, int) or version < 1:
        raise BundleError(f"{mpath} has no valid format_version")
    if version > FORMAT_VERSION:
        raise BundleError(f"bundle format {version} is newer than this runtime reads ({FORMAT_VERSION}); "
                          "upgrade paumer-edge")
    try:
        model = ModelInfo.from_dict(manifest["model"])
        cost = CostModel.from_dict(manifest["pausing"]["cost_model"])
        graphs = {name: GraphSpec.from_dict(g) for name, g in manifest["graphs"].items()}
    except (KeyError, TypeError, ValueError, IndexError) as e:
        raise BundleError(f"{mpath} does not follow the bundle schema ({type(e).__name__}: {e}); "
                          "re-export it") from None
    needed = [f"stage{k}" for k in range(model.num_stages)] + ["decoder"]
    missing = [n for n in needed if n not in graphs]
    if missing:
        raise BundleError(f"{mpath} lacks the graphs {missing}; re-export the bundle")
    for name, g in graphs.items():
        file = _confined(root, g.file)
        if not file.is_file():
            raise BundleError(f"bundle file '{g.file}' ({name}) is missing from '{root}'")
        if check_hashes and sha256_file(file) != g.sha256:
            raise BundleError(f"bundle file '{g.file}' does not match its sha256 in the manifest: "
                              "it was changed or corrupted; re-export the bundle")
    return Bundle(root, manifest, model, cost, graphs)
