"""`paumer-edge import`: a Segmenter / timm / mmseg checkpoint -> a paumer-edge checkpoint, with a key report."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from .. import UserError
from ..config_check import MAX_CLASSES, MAX_DECODER_DEPTH, MAX_HEADS
from ..core.atomic import write_json_atomic
from ..core.knobs import check_count, check_number, check_seed, check_size
from ..core.paths import Input, Output, guard_paths
from ..weights import ImportOptions, ImportReport, group_keys, import_weights
from ..weights.common import checkpoint_file


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


def check_knobs(a: argparse.Namespace) -> None:
    """The flags that shape the model, by the same ranges a config is held to (paumer_edge.config_check)."""
    for name, lo, hi in (("num_classes", 2, MAX_CLASSES), ("num_heads", 1, MAX_HEADS), ("decoder_heads", 1, MAX_HEADS),
                         ("decoder_depth", 1, MAX_DECODER_DEPTH)):
        if getattr(a, name) is not None:
            setattr(a, name, check_count(getattr(a, name), f"--{name.replace('_', '-')}", lo, hi))
    for name in ("image_size", "source_size"):
        if getattr(a, name) is not None:
            setattr(a, name, check_size(getattr(a, name), f"--{name.replace('_', '-')}"))
    if a.norm_eps is not None:
        a.norm_eps = check_number(a.norm_eps, "--norm-eps", "a small positive number below 1, e.g. 1e-6", 0.0, 1.0,
                                  lo_open=True, hi_open=True)
    a.seed = check_seed(a.seed, "--seed")


def options(a: argparse.Namespace) -> ImportOptions:
    check_knobs(a)
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


def source_inputs(src: Path, a: argparse.Namespace) -> list[Input]:
    """What import reads: the checkpoint (SRC, or the checkpoint.pth and variant.yml of a Segmenter folder, whose
    other files are not read: the default output goes there), --variant and a --classes file."""
    found = [Input("the source checkpoint", src, "folder" if src.is_dir() else "file")]
    try:
        inner = checkpoint_file(src)
    except UserError:  # import says what is missing, in its own words
        inner = None
    if inner is not None:
        found += [Input("the source checkpoint", inner), *Input.of("the source's variant.yml",
                  inner.with_name("variant.yml") if inner.with_name("variant.yml").is_file() else None)]
    classes = a.classes if a.classes and Path(a.classes).is_file() else None
    return [*found, *Input.of("--variant", a.variant, "file"), *Input.of("--classes", classes, "file")]


def run(a: argparse.Namespace) -> int:
    src = Path(a.src)
    out = Path(a.out) if a.out else default_output(src)
    opts = options(a)
    guard_paths(source_inputs(src, a), [*Output.of("--out", out), *Output.of("--report", a.report)])
    t0 = time.perf_counter()
    report = import_weights(src, out, opts)
    print(format_report(report))
    if a.report:
        write_json_atomic(Path(a.report), report.to_json())
    print(f"imported {len(report.mapped)} tensors into {out} in {time.perf_counter() - t0:.1f} s"
          + (f"; report in {a.report}" if a.report else ""))
    return 0
