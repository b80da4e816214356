"""The names the bundle contract is made of: graphs, their tensors and their dynamic dimensions.

One place for every string the exporter writes into a graph and the runtime feeds or reads back, so a
rename cannot leave one side behind.
"""

from __future__ import annotations

# graph names (one ONNX file each, `<name>.onnx`)
DECODER = "decoder"
FULL = "full"  # the unsplit network at budget 1: the reference for parity and speed
DECODER_TILES = "decoder_tiles"  # temporal reuse: the decoder on the label tiles of some patches (linear decoders)

# tensor names
IMAGE = "image"  # [B, 3, H, W] float32, normalised
TOKENS = "tokens"  # [B, L, C] the token buffer a stage reads (L = extra tokens + patches)
TOKENS_OUT = "tokens_out"  # [B, L, C] the buffer a later stage writes back
ACTIVE = "active"  # [B, n] int64 patch positions of the tokens a stage runs on
ENTROPY = "entropy"  # [B, n] normalised entropy of the pausing head for each active patch
# temporal reuse (`stage<k>_reuse` graphs): what the active tokens attend to besides themselves, and the cache
CONTEXT = "context"  # [B, m] int64 patch positions whose cached keys/values the active tokens see
CACHE = "cache"  # [B, 2 x blocks, heads, L, head_dim] every row's keys, values at each block (as last computed)
CACHE_ROWS = "cache_rows"  # [B, 2 x blocks, heads, extra + n, head_dim] the fresh keys and values of the rows that ran
LABELS = "labels"  # [B, H, W] class per pixel
TILES = "tiles"  # [1, t] int64 patch positions whose label tiles `decoder_tiles` redraws
LABEL_TILES = "label_tiles"  # [1, t, p, p] their labels (p: the patch size)
SCORES = "scores"  # [B, K, H, W] class probabilities (bundles exported with --scores)
# early exit (variants of kind "early-exit", `core.exits`): the heads' predictions, and those that became final
HEAD_LOGP = "head_logp"  # [B, n, K] a stage's pausing-head log-probabilities for its active patches
EXIT_LOGP = "exit_logp"  # [B, N, K] every patch's latest head log-probabilities (the decoder's input)
EXITED = "exited"  # [B, N] float32, 1 where a patch exited at a head: its head prediction is its label

# named dynamic dimensions
DIM_BATCH = "batch"
DIM_TOKENS = "n"
DIM_CONTEXT = "m"  # the reuse graphs' context patches

# outputs that stay where the backend keeps them (device memory on a GPU) from one stage to the next
BUFFERS = (TOKENS, TOKENS_OUT)

REUSE_SUFFIX = "_reuse"


def stage_name(k: int) -> str:
    """The graph of encoder stage k: `stage0`, `stage1`, ..."""
    return f"stage{k}"


def stage_index(name: str) -> int | None:
    """k for a graph called `stage<k>`, else None."""
    digits = name.removeprefix("stage")
    return int(digits) if name.startswith("stage") and digits.isdigit() else None


# peer graphs (image -> labels, like `full`): `paumer-edge compare` times them beside pausing
MERGE_PREFIX = "tome_r"  # token merging with r tokens merged per block
COARSE_PREFIX = "proscale_b"  # progressive token length with the first k blocks on a coarser grid


def merge_graph_name(r: int) -> str:
    """The ToMe graph with `r` tokens merged per block: `tome_r16`."""
    return f"{MERGE_PREFIX}{int(r)}"


def coarse_graph_name(blocks: int) -> str:
    """The PRO-SCALE graph with its first `blocks` blocks on the coarse grid: `proscale_b2`."""
    return f"{COARSE_PREFIX}{int(blocks)}"


def is_peer_graph(name: str) -> bool:
    """Whether `name` is an image -> labels peer graph (checked like `full`)."""
    return any(name.startswith(p) and name[len(p):].isdigit() for p in (MERGE_PREFIX, COARSE_PREFIX))


def reuse_stage_name(k: int) -> str:
    """The temporal-reuse graph of encoder stage k: `stage0_reuse`, `stage1_reuse`, ..."""
    return f"{stage_name(k)}{REUSE_SUFFIX}"


def reuse_stage_index(name: str) -> int | None:
    """k for a graph called `stage<k>_reuse`, else None."""
    return stage_index(name.removesuffix(REUSE_SUFFIX)) if name.endswith(REUSE_SUFFIX) else None
