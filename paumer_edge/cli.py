"""The `paumer-edge` command: one click group assembled from the verbs, each declared in `verbs/<verb>.py`.

Verbs are imported only when they run (or show their own help), so `paumer-edge --help` is instant and the
runtime verbs work where PyTorch is not installed. User mistakes (click's usage errors included) end with one
line on stderr and exit code 2, never a traceback. Shell completion: `eval "$(_PAUMER_EDGE_COMPLETE=bash_source
paumer-edge)"` (zsh_source, fish_source for those shells).
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Sequence
from typing import Any

import click

from . import UserError, __version__

# verb -> (module in paumer_edge.verbs, one-line help): the one table the group and its help are built from
VERBS: dict[str, tuple[str, str]] = {
    "run": ("run", "Segment a video, camera, stream or image folder: overlay video, label PNGs, window."),
    "bench": ("bench", "Latency and FPS per budget, beside full.onnx and PyTorch; JSON and a plot."),
    "export": ("export", "Checkpoint -> deployment bundle (staged ONNX graphs, manifest, engines), verified."),
    "verify": ("verify", "A bundle's graphs against PyTorch: error per output, label agreement per budget."),
    "build": ("build", "TensorRT engines for a bundle (fp32, fp16, INT8 with calibration, DLA)."),
    "train": ("train", "Train or fine-tune a pausing model (PyTorch; torchrun for several GPUs)."),
    "eval": ("evaluate", "mIoU, per-class IoU and pixel accuracy at a list of budgets and thresholds."),
    "import": ("import_weights", "Segmenter / timm / mmseg checkpoint -> paumer-edge checkpoint, with a key report."),
    "serve": ("serve", "Serve a bundle on Triton Inference Server (HTTP, gRPC, metrics) through PyTriton."),
    "triton": ("triton", "Write a Triton model repository (BLS model, stage graphs, bundle) for your tritonserver."),
    "info": ("info", "Versions, installed extras, inference backends and devices; a bundle's manifest."),
    "synth": ("synth", "Render synthetic street images (with labels) or a street video to try things on."),
}


class Verbs(click.Group):
    """A group whose commands are imported on first use, from the `VERBS` table."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(VERBS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in VERBS:
            return None
        command = importlib.import_module(f"paumer_edge.verbs.{VERBS[name][0]}").command
        command.short_help = VERBS[name][1]
        return command  # type: ignore[no-any-return]

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(name, text) for name, (_, text) in VERBS.items()])


@click.group(cls=Verbs, context_settings={"help_option_names": ["-h", "--help"], "show_default": True},
             help="Deploy PAUMER segmentation transformers: pause the tokens that are already sure, spend compute "
                  "where the image is hard. `paumer-edge VERB --help` for each verb's options.")
@click.version_option(__version__, "--version", "-V", prog_name="paumer-edge", message="%(prog)s %(version)s")
@click.option("--cache", type=click.Path(file_okay=False), envvar="PAUMER_EDGE_CACHE", show_envvar=True,
              help="Where exported sample bundles, rendered data and latency profiles are kept "
                   "[default: ~/.cache/paumer-edge].")
def cli(cache: str | None) -> None:
    if cache:
        os.environ["PAUMER_EDGE_CACHE"] = cache


def one_line(text: str) -> str:
    """Errors are one line: fold any line breaks a library put into a message."""
    return " ".join(text.split())


def _verb(args: Sequence[str]) -> str:
    """The verb the arguments name, for error messages ("paumer-edge run: error: ...")."""
    verb = next((a for a in args if a in VERBS), None)
    return f"paumer-edge {verb}" if verb else "paumer-edge"


def main(argv: Sequence[str] | None = None) -> int:
    importlib.import_module("paumer_edge.runtime._quiet")  # our errors are one line; keep OpenCV's out of them
    args = list(sys.argv[1:] if argv is None else argv)
    prog = _verb(args)
    try:
        result: Any = cli.main(args=args, prog_name="paumer-edge", standalone_mode=False)
    except click.exceptions.Exit as e:  # --help, --version
        return int(e.exit_code)
    except click.exceptions.NoArgsIsHelpError as e:  # no verb: the help, and the exit code of a usage error
        print(e.format_message(), file=sys.stderr)
        return 2
    except click.UsageError as e:  # unknown option, missing argument, bad value: one line, exit 2
        where = e.ctx.command_path if e.ctx is not None else prog
        print(f"{where}: error: {one_line(e.format_message())} (see `{where} --help`)", file=sys.stderr)
        return 2
    except click.ClickException as e:
        print(f"{prog}: error: {one_line(e.format_message())}", file=sys.stderr)
        return 2
    except UserError as e:
        print(f"{prog}: error: {one_line(str(e))}", file=sys.stderr)
        return 2
    except OSError as e:  # the system refused a file outside the checked paths: still one line, not a traceback
        where = f": '{e.filename}'" if e.filename else ""
        print(f"{prog}: error: {one_line(e.strerror or str(e))}{where}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, click.Abort):
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
