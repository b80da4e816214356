"""Memory estimates and the limit they are held to, so a small file or a flag cannot exhaust memory (torch-free).

Before a model is built (from a checkpoint's config, a `--config`, an import, `export --image-size`) or a
bundle is run, the memory it needs is estimated from its shape and refused, in one line, beyond the limit:
by default the smaller of this machine's memory (or its container's limit) and 64 GiB. An explicit
`--memory-limit GIB` (or the environment variable PAUMER_EDGE_MEMORY_LIMIT, in GiB) raises or lowers it.

The estimates are upper bounds of the peak a forward pass needs (weights, activations of the widest block,
the attention matrix, logits at the image size), not exact figures: their job is to tell a real model
from a request for terabytes before a byte of it is allocated.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

from .errors import UserError

GiB = 1 << 30
DEFAULT_CAP = 64 * GiB
ENV = "PAUMER_EDGE_MEMORY_LIMIT"
FLOAT = 4  # bytes: float32 weights and activations

_override: int | None = None

__all__ = ["GiB", "MemoryLimitError", "check_memory", "forward_bytes", "frame_bytes", "machine_memory", "memory_limit",
           "set_memory_limit", "vit_parameters"]


class MemoryLimitError(UserError):
    """What was asked for needs more memory than the limit allows."""


def machine_memory() -> int | None:
    """Physical memory in bytes, or the container's memory limit if that is smaller; None where unknown."""
    sizes = []
    try:
        sizes.append(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, OSError, ValueError):
        pass
    for cgroup in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(cgroup).read_text().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < 1 << 60:
            sizes.append(int(text))
    return min(sizes) if sizes else None


def _gib(text: str, where: str) -> int:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise UserError(f"{where} '{text}' is not a memory size: give a positive number of GiB, e.g. 32")
    return int(value * GiB)


def set_memory_limit(gib: float | None) -> None:
    """Set the limit in GiB for this process (None: back to the default). `--memory-limit` calls this."""
    global _override
    _override = None if gib is None else _gib(str(gib), "memory limit")


def memory_limit() -> tuple[int, str]:
    """The limit in bytes, and where it comes from (said in refusals)."""
    if _override is not None:
        return _override, "the limit given with --memory-limit"
    if os.environ.get(ENV):
        return _gib(os.environ[ENV], ENV), f"the limit in {ENV}"
    machine = machine_memory()
    if machine is not None and machine < DEFAULT_CAP:
        return machine, "this machine's memory"
    return DEFAULT_CAP, "the default limit"


def _size(n: float) -> str:
    if n >= 1 << 50:
        return f"{n / (1 << 50):,.0f} PiB"
    if n >= GiB:
        return f"{n / GiB:,.1f} GiB"
    return f"{n / (1 << 20):,.0f} MiB"


def check_memory(needed: int, what: str) -> None:
    """Refuse `what` (e.g. "model 'x' (embed_dim 1000000, depth 12)") when it needs more than the limit."""
    limit, source = memory_limit()
    if needed > limit:
        raise MemoryLimitError(
            f"{what} needs about {_size(needed)} of memory, more than {source} ({_size(limit)}); refusing it before "
            f"allocating anything; if it is what you meant and the memory is there, raise the limit with "
            f"--memory-limit GIB (or {ENV})")


@dataclass(frozen=True)
class VitShape:
    """The numbers that decide a ViT segmenter's memory."""

    image_hw: tuple[int, int]
    patch: int
    width: int
    depth: int
    heads: int
    mlp_hidden: int
    extra_tokens: int
    classes: int
    pausing_points: int = 0
    decoder_width: int = 0  # 0: a linear decoder
    decoder_depth: int = 0

    @property
    def patches(self) -> int:
        return (self.image_hw[0] // self.patch) * (self.image_hw[1] // self.patch)

    @property
    def tokens(self) -> int:
        return self.patches + self.extra_tokens


def vit_parameters(s: VitShape) -> int:
    """Parameter count: patch embedding, tokens, position embedding, blocks, norms, pausing heads, decoder."""
    c, m, k = s.width, s.mlp_hidden, s.classes
    block = 4 * c + (3 * c * c + 3 * c) + (c * c + c) + (c * m + m) + (m * c + c)
    encoder = 3 * s.patch * s.patch * c + c + s.extra_tokens * c + s.tokens * c + s.depth * block + 2 * c
    heads = s.pausing_points * (2 * c + c * k + k)
    if s.decoder_width:
        d = s.decoder_width
        decoder = c * d + d + k * d + s.decoder_depth * (12 * d * d + 13 * d) + 2 * d * d + 2 * d + 2 * k
    else:
        decoder = c * k + k
    return encoder + heads + decoder


def frame_bytes(image_hw: tuple[int, int], tokens: int, width: int, classes: int, batch: int = 1) -> int:
    """Peak bytes the runtime needs for a batch beside the graphs' weights: the input, the token buffer and a
    stage's working copies, one attention matrix, and labels and class scores at the input size."""
    h, w = image_hw
    return FLOAT * batch * (2 * 3 * h * w + 8 * tokens * width + 2 * tokens * tokens + 3 * classes * h * w)


def forward_bytes(s: VitShape, batch: int = 1, training: bool = False) -> int:
    """Peak bytes of one forward pass (with backward and AdamW state when `training`), weights included."""
    b, n, c, m = batch, s.tokens, s.width, s.mlp_hidden
    h, w = s.image_hw
    image = 2 * b * 3 * h * w  # the batch and its normalised copy
    block = b * n * (8 * c + 2 * m)  # tokens, norm, q/k/v, attention output, projection; MLP hidden twice
    attention = 2 * b * max(1, s.heads) * n * n  # scores and their softmax (the written-out form export uses)
    logits = 3 * b * s.classes * h * w  # logits at the image size, their softmax or arg-max
    params = vit_parameters(s)
    stored = s.depth * block if training else block  # backward keeps every block's activations
    states = 4 * params if training else params  # weights, gradients, two AdamW moments
    return FLOAT * (states + image + stored + attention + logits)
