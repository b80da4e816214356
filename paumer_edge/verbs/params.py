"""Option types and shared options of the command line (click), so every verb parses and documents them alike."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])


def parse_size(text: str) -> tuple[int, int]:
    """'HxW' (or a single number for a square) -> (H, W); `ValueError` with what to write otherwise."""
    try:
        parts = [int(p) for p in text.lower().replace("*", "x").split("x")]
    except ValueError:
        raise ValueError(f"'{text}' is not a size; write HEIGHTxWIDTH, e.g. 128x256") from None
    if len(parts) == 1:
        parts *= 2
    if len(parts) != 2 or min(parts) <= 0:
        raise ValueError(f"'{text}' is not a size; write HEIGHTxWIDTH, e.g. 128x256")
    return parts[0], parts[1]


def parse_floats(text: str) -> list[float]:
    """'1,0.5,0.25' -> [1.0, 0.5, 0.25]; `ValueError` if any is not a number or there are none."""
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"'{text}' is not a comma-separated list of numbers") from None
    if not values:
        raise ValueError("give at least one number")
    return values


class Size(click.ParamType):
    """HEIGHTxWIDTH in pixels."""

    name = "HxW"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> tuple[int, int]:
        if isinstance(value, tuple):
            return value
        try:
            return parse_size(str(value))
        except ValueError as e:
            self.fail(str(e), param, ctx)


class Floats(click.ParamType):
    """A comma-separated list of numbers."""

    name = "X,Y,..."

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> list[float]:
        if isinstance(value, list):
            return value
        try:
            return parse_floats(str(value))
        except ValueError as e:
            self.fail(str(e), param, ctx)


SIZE = Size()
FLOATS = Floats()
DATA_HELP = "Dataset: synthetic, cityscapes:DIR or ade20k:DIR."


def quiet(f: F) -> F:
    return click.option("--quiet", is_flag=True, help="No progress bars.")(f)


def model_option(help_text: str) -> Callable[[F], F]:
    """`--model`, also from $PAUMER_EDGE_MODEL."""
    return click.option("--model", envvar="PAUMER_EDGE_MODEL", show_envvar=True, metavar="PATH", help=help_text)


def backend_option(f: F) -> F:
    from ..runtime.backends.select import BACKENDS

    return click.option("--backend", type=click.Choice(BACKENDS), default="auto", show_default=True,
                        envvar="PAUMER_EDGE_BACKEND", show_envvar=True,
                        help="Inference backend: auto takes the first available of trt (fitting engines), ort-trt, "
                             "ort-cuda, ort.")(f)


def threads_option(f: F) -> F:
    return click.option("--threads", type=int, default=0, show_default=True, envvar="PAUMER_EDGE_THREADS",
                        show_envvar=True, help="Inference threads (0: the backend's default).")(f)


def cost_option(what: str) -> Callable[[F], F]:
    return click.option("--cost", type=click.Choice(["device", "macs"]), default="device", show_default=True,
                        help=f"Budgets as fractions of this device's measured latency ({what}) or of the "
                             "multiply-accumulates, as in training and eval.")


def _set_memory_limit(ctx: click.Context, param: click.Parameter, value: float | None) -> None:
    if value is not None:
        from ..core.memory import set_memory_limit

        set_memory_limit(value)


def memory_limit_option(f: F) -> F:
    """`--memory-limit GIB` on the verbs that build models or open bundles (also $PAUMER_EDGE_MEMORY_LIMIT)."""
    return click.option("--memory-limit", type=float, metavar="GIB", expose_value=False, callback=_set_memory_limit,
                        help="Refuse models and bundles estimated to need more memory than this [default: this "
                             "machine's memory, at most 64 GiB; or $PAUMER_EDGE_MEMORY_LIMIT].")(f)
