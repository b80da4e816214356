"""`paumer-edge import`: a Segmenter / timm / mmseg checkpoint -> a paumer-edge checkpoint, with a key report."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from .. import UserError
from ..core.atomic import write_json_atomic
from ..weights import ImportOptions, ImportReport, group_keys, import_weights


def default_output(src: Path) -> Path:
    """Beside the source: SRC_DIR/<stem>-paumer-edge.pt (a Segmenter log folder: inside it)."""
    if src.is_dir():
        return src / "checkpoint-paumer-edge.pt"
    return src.with_name(f"{src.stem}-paumer-edge.pt")


def parse_pause_after(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    if text.strip().lower() in ("none", ""):
        return ()
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise UserError(f"--pause-after '{text}' is not a comma-separated list of block counts (e.g. 3,6,9) "
                        "or 'none'") from None


def _triple(values: list[float] | None, what: str) -> tuple[float, float, float] | None:
    if values is None:
        return None
    if len(values) != 3:
        raise UserError(f"--{what} needs 3 values (R,G,B), got {len(values)}")
    return values[0], values[1], values[2]


def options(a: argparse.Namespace) -> ImportOptions:
    for name in ("num_classes", "num_heads", "decoder_heads", "decoder_depth"):
        value = getattr(a, name)
        if value is not None and value <= 0:
            raise UserError(f"--{name.replace('_', '-')} must be positive, got {value}")
    return ImportOptions(
        format=a.format, variant=Path(a.variant) if a.variant else None, num_classes=a.num_classes,
        classes=a.classes, image_size=a.image_size, source_size=a.source_size,
        pause_after=parse_pause_after(a.pause_after), num_heads=a.num_heads, decoder=a.decoder,
        decoder_depth=a.decoder_depth, decoder_heads=a.decoder_heads, fresh_decoder=a.fresh_decoder,
        norm_eps=a.norm_eps, normalization=a.normalization, mean=_triple(a.mean, "mean"), std=_triple(a.std, "std"),
        name=a.name, seed=a.seed,
    )


def format_report(r: ImportReport) -> str:
    """A few lines: the model, then mapped / initialised / ignored keys grouped by module, then notes."""
    c = r.config
    rows, cols = c["image_size"][0] // c["patch_size"], c["image_size"][1] // c["patch_size"]
    tokens = "class + distillation token" if c["distilled"] else \
        ("class token" if c["class_token"] else "no class token")
    decoder = "linear decoder" if c["decoder"] == "linear" else \
        f"mask transformer decoder ({c['decoder_depth']} blocks)"
    pauses = ", ".join(str(p) for p in c["pause_after"]) or "nowhere (no pausing points)"
    lines = [
        f"{r.format} checkpoint {r.source}",
        f"  model: ViT width {c['embed_dim']}, depth {c['depth']}, {c['num_heads']} heads, patch {c['patch_size']}, "
        f"{c['image_size'][0]}x{c['image_size'][1]} ({rows}x{cols} grid), {tokens}; {decoder}, "
        f"{len(c['class_names'])} classes; pausing after blocks {pauses}",
    ]
    for title, pairs in (("mapped", [(s, "") for s, _ in r.mapped]), ("initialised", r.initialised),
                         ("ignored", r.ignored)):
        lines.append(f"  {title}: {len(pairs)} tensors" + ("" if pairs else " (none)"))
        lines += [f"    {group} ({n})" + (f": {why}" if why else "") for group, n, why in group_keys(pairs)]
    lines += [f"  note: {n}" for n in r.notes]
    return "\n".join(lines)


def run(a: argparse.Namespace) -> int:
    src = Path(a.src)
    out = Path(a.out) if a.out else default_output(src)
    t0 = time.perf_counter()
    report = import_weights(src, out, options(a))
    print(format_report(report))
    if a.report:
        write_json_atomic(Path(a.report), report.to_json())
    print(f"imported {len(report.mapped)} tensors into {out} in {time.perf_counter() - t0:.1f} s"
          + (f"; report in {a.report}" if a.report else ""))
    return 0
