"""A bundle for what the user named: a bundle directory as given, or a checkpoint exported once into the cache."""

from __future__ import annotations

import hashlib
from pathlib import Path

from .. import UserError
from ..core.cache import cache_root
from ..core.contract import MANIFEST
from ..core.errors import BundleError
from ..export import GRAPHS_REVISION
from ..runtime.bundle import load_bundle

TRAIN_EXTRA = "pip install 'paumer-edge[train]'"


def needs_torch(what: str) -> None:
    """One line saying what to install when a verb needs PyTorch and the export toolchain and they are missing."""
    try:
        import onnx  # noqa: F401
        import torch  # noqa: F401
    except ImportError:
        raise UserError(f"{what} needs PyTorch and the ONNX exporter, which this install lacks: {TRAIN_EXTRA} "
                        "(after installing the PyTorch build for your machine)") from None


def bundle_for(model: str | None, quiet: bool = False, scores: bool = False) -> Path:
    """A bundle directory as given, or the cached export of a checkpoint (the sample when None).

    `scores`: the export's decoder also gives class probabilities (what sliding windows average)."""
    if model is not None and Path(model).is_dir():
        return Path(model)
    if model not in (None, "sample") and not Path(str(model)).is_file():
        raise UserError(f"model '{model}' is neither a bundle directory nor a checkpoint file")
    needs_torch("a checkpoint (or the bundled sample model) must be exported to a bundle first, which")
    from ..checkpoint import SAMPLE_CHECKPOINT, load_checkpoint, model_from_checkpoint, resolve_checkpoint

    ckpt = resolve_checkpoint(model)
    digest = hashlib.sha256(ckpt.read_bytes()).hexdigest()[:16]
    name = "sample" if ckpt == SAMPLE_CHECKPOINT else ckpt.stem
    out = cache_root() / "bundles" / f"{name}-{digest}{'-scores' if scores else ''}.paumer"
    if not _usable(out):
        from ..export.exporter import ExportOptions, export_bundle

        if not quiet:
            print(f"exporting {ckpt} once to {out} ...")
        export_bundle(model_from_checkpoint(load_checkpoint(ckpt)), out, ExportOptions(scores=scores), source=str(ckpt),
                      progress=not quiet)
    return out


def _usable(cached: Path) -> bool:
    """Whether a cached export is there, intact and current; a damaged one (an edited file, a crash of an older
    version mid-export) is exported again rather than refused: the cache holds only what it can remake."""
    if not (cached / MANIFEST).exists():
        return False
    try:
        bundle = load_bundle(cached)
    except BundleError:
        return False
    # an export by an older exporter is remade: the cache should give what exporting now gives
    return bundle.manifest.exporter.graphs_revision == GRAPHS_REVISION
