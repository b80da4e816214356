"""A bundle for what the user named: a bundle directory as given, or a checkpoint exported once into the cache."""

from __future__ import annotations

import hashlib
from pathlib import Path

from .. import UserError
from ..core.cache import cache_root
from ..core.contract import MANIFEST
from ..core.errors import BundleError
from ..export import GRAPHS_REVISION
from ..runtime.bundle import Bundle, load_bundle

TRAIN_EXTRA = "pip install 'paumer-edge[train]'"


def needs_torch(what: str) -> None:
    """One line saying what to install when a verb needs PyTorch and the export toolchain and they are missing."""
    try:
        import onnx  # noqa: F401
        import torch  # noqa: F401
    except ImportError:
        raise UserError(f"{what} needs PyTorch and the ONNX exporter, which this install lacks: {TRAIN_EXTRA} "
                        "(after installing the PyTorch build for your machine)") from None


def bundle_for(model: str | None, quiet: bool = False, scores: bool = False, int8: bool = False,
               plans: bool = False) -> Path:
    """A bundle directory as given, or the cached export of a checkpoint (the sample when None).

    `scores`: the export's decoder also gives class probabilities (what sliding windows average); `int8`: the
    export also has INT8 graphs (calibrated on rendered street scenes; added to a cached export once); `plans`:
    the export carries smaller input sizes and their measured plans (`export --plans`; minutes, once)."""
    if model is not None and Path(model).is_dir():
        if plans and load_bundle(Path(model)).manifest.plans is None:
            raise UserError(f"--plans: bundle '{model}' has no plans; export it with `paumer-edge export --plans`, "
                            "or leave out --plans")
        return Path(model)
    if model not in (None, "sample") and not Path(str(model)).is_file():
        raise UserError(f"model '{model}' is neither a bundle directory nor a checkpoint file")
    needs_torch("a checkpoint (or the bundled sample model) must be exported to a bundle first, which")
    from ..checkpoint import SAMPLE_CHECKPOINT, load_checkpoint, model_from_checkpoint, resolve_checkpoint

    ckpt = resolve_checkpoint(model)
    digest = hashlib.sha256(ckpt.read_bytes()).hexdigest()[:16]
    name = "sample" if ckpt == SAMPLE_CHECKPOINT else ckpt.stem
    out = cache_root() / "bundles" / f"{name}-{digest}{'-scores' if scores else ''}{'-plans' if plans else ''}.paumer"
    usable = _usable(out, plans)
    if usable is None:
        from ..export.exporter import ExportOptions, export_bundle
        from ..export.quantize import QuantOptions
        from ..planning import default_plan_sizes, plan_finalizer

        if not quiet:
            print(f"exporting {ckpt} once to {out}{' and measuring its plans' if plans else ''} ...")
        net = model_from_checkpoint(load_checkpoint(ckpt))
        sizes = default_plan_sizes(net.cfg.image_size, net.cfg.patch_size) if plans else ()
        opts = ExportOptions(scores=scores, extra_sizes=sizes, int8=QuantOptions() if int8 else None)
        export_bundle(net, out, opts, source=str(ckpt), progress=not quiet,
                      finalize=plan_finalizer(progress=not quiet) if plans else None)
    elif int8 and "int8" not in usable.manifest.variant_names:  # INT8 graphs added to the cached export, once
        from ..export.quantize import QuantOptions, add_int8

        if not quiet:
            print(f"adding INT8 graphs to {out} once ...")
        add_int8(out, QuantOptions(), progress=not quiet)
    return out


def _usable(cached: Path, plans: bool = False) -> Bundle | None:
    """A cached export if it is there, intact and current (with plans when asked); a damaged one (an edited file,
    a crash of an older version mid-export) is exported again rather than refused: the cache holds only what it
    can remake."""
    if not (cached / MANIFEST).exists():
        return None
    try:
        bundle = load_bundle(cached)
    except BundleError:
        return None
    # an export by an older exporter is remade: the cache should give what exporting now gives
    current = bundle.manifest.exporter.graphs_revision == GRAPHS_REVISION
    return bundle if current and (bundle.manifest.plans is not None or not plans) else None
