"""The names the bundle contract is made of: graphs, their tensors and their dynamic dimensions.

One place for every string the exporter writes into a graph and the runtime feeds or reads back, so a
rename cannot leave one side behind.
"""

from __future__ import annotations

# graph names (one ONNX file each, `<name>.onnx`)
DECODER = "decoder"
FULL = "full"  # the unsplit network at budget 1: the reference for parity and speed

# tensor names
IMAGE = "image"  # [B, 3, H, W] float32, normalised
TOKENS = "tokens"  # [B, L, C] the token buffer a stage reads (L = extra tokens + patches)
TOKENS_OUT = "tokens_out"  # [B, L, C] the buffer a later stage writes back
ACTIVE = "active"  # [B, n] int64 patch positions of the tokens a stage runs on
ENTROPY = "entropy"  # [B, n] normalised entropy of the pausing head for each active patch
LABELS = "labels"  # [B, H, W] class per pixel
SCORES = "scores"  # [B, K, H, W] class probabilities (bundles exported with --scores)

# named dynamic dimensions
DIM_BATCH = "batch"
DIM_TOKENS = "n"

# outputs that stay where the backend keeps them (device memory on a GPU) from one stage to the next
BUFFERS = (TOKENS, TOKENS_OUT)


def stage_name(k: int) -> str:
    """The graph of encoder stage k: `stage0`, `stage1`, ..."""
    return f"stage{k}"


def stage_index(name: str) -> int | None:
    """k for a graph called `stage<k>`, else None."""
    digits = name.removeprefix("stage")
    return int(digits) if name.startswith("stage") and digits.isdigit() else None
