"""Bring your own weights: Segmenter, timm and mmsegmentation checkpoints -> paumer-edge checkpoints.

`import_weights` reads the file as data only, recognises its layout (or takes the one given),
converts its keys, builds a PausingSegmenter of the shape the tensors describe, and saves it with
`paumer_edge.checkpoint.save_checkpoint`. The report says which keys were mapped, which parts start
fresh (always the pausing heads) and which were left out.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import torch

from .. import UserError
from ..checkpoint import save_checkpoint
from ..model import PausingSegmenter
from . import mmseg, segmenter, timm
from .build import build_model, default_pause_points
from .common import ImportOptions, ImportReport, checkpoint_file, group_keys, read_checkpoint, unwrap_state

FORMATS: dict[str, ModuleType] = {"segmenter": segmenter, "timm": timm, "mmseg": mmseg}

__all__ = ["FORMATS", "ImportOptions", "ImportReport", "convert_checkpoint", "default_pause_points",
           "detect_format", "group_keys", "import_weights"]


def detect_format(state: dict[str, torch.Tensor], path: Path) -> str:
    """The one layout whose signature keys the state dict has; a clear error for none."""
    found = [name for name, module in FORMATS.items() if module.matches(state)]
    if len(found) == 1:
        return found[0]
    sample = ", ".join(list(state)[:4])
    raise UserError(f"'{path}' has an unknown layout (keys like {sample}); import reads Segmenter "
                    "(encoder.*/decoder.*), timm ViT (patch_embed.proj, blocks.N.attn.qkv) and mmseg ViT "
                    "(backbone.layers.N.attn.attn.in_proj_weight) checkpoints")


def convert_checkpoint(src: str | Path, opts: ImportOptions) -> tuple[PausingSegmenter, ImportReport]:
    """The PausingSegmenter a foreign checkpoint describes, and the report of its keys."""
    path = checkpoint_file(Path(src))
    state, rest, skipped = unwrap_state(read_checkpoint(path), path)
    name = opts.format or detect_format(state, path)
    if name not in FORMATS:
        raise UserError(f"--format '{name}' is not one of {', '.join(FORMATS)}")
    module = FORMATS[name]
    if not module.matches(state):
        try:
            actual = f"; it looks like a {detect_format(state, path)} checkpoint"
        except UserError:
            actual = ""
        raise UserError(f"'{path}' is not a {name} checkpoint{actual}; leave out --format to detect it")
    conv = module.convert(state, rest, path, opts)
    conv.ignored += skipped
    report = ImportReport(source=str(path), format=name, notes=list(conv.facts.notes))
    model = build_model(conv, opts, report)
    return model, report


def import_weights(src: str | Path, out: str | Path, opts: ImportOptions) -> ImportReport:
    """Convert `src` and save a paumer-edge checkpoint at `out`; returns the report."""
    out = Path(out)
    if out.resolve() == checkpoint_file(Path(src)).resolve():
        raise UserError(f"the output '{out}' is the source checkpoint; choose another -o")
    model, report = convert_checkpoint(src, opts)
    save_checkpoint(out, model, imported_from=report.source, imported_format=report.format)
    report.output = str(out)
    return report
