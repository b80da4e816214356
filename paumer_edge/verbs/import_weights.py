"""`paumer-edge import`: a Segmenter / timm / mmseg checkpoint -> a paumer-edge checkpoint, with a key report."""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import click

from .. import UserError
from ..config_check import MAX_CLASSES, MAX_DECODER_DEPTH, MAX_HEADS
from ..core.atomic import write_json_atomic
from ..core.knobs import check_count, check_number, check_seed, check_size
from ..core.paths import Input, Output, guard_paths
from .bundles import needs_torch
from .params import FLOATS, SIZE, memory_limit_option

if TYPE_CHECKING:
    from ..weights import ImportOptions, ImportReport


@click.command("import", help="Turn SRC (a Segmenter checkpoint.pth with variant.yml beside it, or its folder; a "
               "timm / DeiT state dict, .pth or .safetensors; an mmsegmentation ViT checkpoint) into a paumer-edge "
               "checkpoint, reporting every key as mapped, initialised or ignored.")
@click.argument("src")
@click.option("-o", "--out", metavar="FILE", help="paumer-edge checkpoint to write [default: beside SRC, "
              "<stem>-paumer-edge.pt].")
@click.option("--format", "format_", type=click.Choice(["segmenter", "timm", "mmseg"]),
              help="Source layout [default: detected from the keys].")
@click.option("--variant", help="Segmenter's variant.yml [default: the one beside SRC].")
@click.option("--num-classes", type=int, help="Classes [default: the checkpoint decoder's; needed without one].")
@click.option("--classes", help="Class names: ade20k, cityscapes, or a file with one name per line.")
@click.option("--image-size", type=SIZE, help="HxW to set the model up for [default: the source's].")
@click.option("--source-size", type=SIZE, help="HxW the source was trained at, if not square.")
@click.option("--pause-after", help="Pausing points: block counts a,b,c or 'none' [default: depth/4, /2, 3/4].")
@click.option("--num-heads", type=int, help="Encoder attention heads [default: the config's, else width/64].")
@click.option("--decoder", type=click.Choice(["linear", "mask_transformer"]),
              help="Kind of a new decoder [default: linear].")
@click.option("--decoder-depth", type=int, default=2, help="Blocks of a new mask transformer.")
@click.option("--decoder-heads", type=int, help="Mask transformer heads [default: width/64].")
@click.option("--fresh-decoder", is_flag=True, help="Start a new decoder instead of the checkpoint's.")
@click.option("--norm-eps", type=float, help="LayerNorm eps [default: the source framework's].")
@click.option("--normalization", type=click.Choice(["vit", "deit", "imagenet"]),
              help="Input mean/std [default: the source's].")
@click.option("--mean", type=FLOATS, help="Input mean R,G,B for images in [0, 1].")
@click.option("--std", type=FLOATS, help="Input std R,G,B for images in [0, 1].")
@click.option("--name", help="Model name in the config.")
@click.option("--seed", type=int, default=0, help="Seed for the parts that start new.")
@click.option("--report", metavar="FILE", help="Write the key report (mapped / initialised / ignored) as JSON here.")
@memory_limit_option
def command(**options: Any) -> int:
    needs_torch("import")
    a = SimpleNamespace(**options)
    a.format = a.format_
    return run(a)


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


def check_knobs(a: SimpleNamespace) -> None:
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


def options(a: SimpleNamespace) -> ImportOptions:
    from ..weights import ImportOptions

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
    from ..weights import group_keys

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


def source_inputs(src: Path, a: SimpleNamespace) -> list[Input]:
    """What import reads: the checkpoint (SRC, or the checkpoint.pth and variant.yml of a Segmenter folder, whose
    other files are not read: the default output goes there), --variant and a --classes file."""
    from ..weights.common import checkpoint_file

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


def run(a: SimpleNamespace) -> int:
    from ..weights import import_weights

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
