"""Checkpoints: the config travels with the weights; loading never executes code (weights_only).

Saves are atomic (temporary file + rename), so an interrupted save leaves the previous file intact.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any

import torch

from . import UserError
from .config import ModelConfig
from .core.atomic import atomic_path
from .core.errors import OutputError
from .core.knobs import show_value
from .model import PausingSegmenter

FORMAT = "paumer-edge-checkpoint"
VERSION = 1
SAMPLE_CHECKPOINT = Path(__file__).parent / "assets" / "sample.pt"


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    """torch.save to a temporary file, flushed, then renamed over `path`: a failed or interrupted save
    leaves the previous file intact and no partial file (an `OutputError` says why it failed)."""
    with atomic_path(path) as tmp:
        try:
            torch.save(obj, tmp)
        except RuntimeError as e:  # torch reports failed writes (a full disk) as RuntimeError
            detail = (str(e).strip().splitlines() or ["write failed"])[0]
            raise OutputError(f"cannot write '{path}': {detail} (is the disk full?); the previous file, if any, "
                              "is unchanged") from None


def save_checkpoint(path: str | Path, model: PausingSegmenter, **extra: Any) -> None:
    """Write {format, version, config, model weights, extra...} atomically."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    atomic_torch_save({"format": FORMAT, "version": VERSION, "config": model.cfg.to_dict(), "model": state,
                       **extra}, path)


def resolve_checkpoint(name: str | Path | None) -> Path:
    """A checkpoint path; None or 'sample' means the bundled sample model."""
    if name is None or str(name) == "sample":
        if not SAMPLE_CHECKPOINT.exists():
            raise UserError("the bundled sample model is missing from this install; reinstall paumer-edge "
                            "or train one with `paumer-edge train --preset sample`")
        return SAMPLE_CHECKPOINT
    return Path(name)


def load_torch_data(path: str | Path, map_location: str | torch.device = "cpu", code_hint: str = "") -> Any:
    """torch.load as data only (weights_only): never runs code from the file; one-line errors.

    `code_hint` is appended to the refusal of a file that holds code (what the user can do instead).
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint '{path}' does not exist or is not a file")
    try:
        data = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r"GLOBAL (\S+)", str(e))
        if found:
            raise UserError(f"refusing to load '{path}': it holds code ({found.group(1)}), not only weights and "
                            f"data, and loading it could run that code{code_hint}") from None
        refused = re.search(r"WeightsUnpickler error:\s*(\S[^\n]*)", str(e))
        if refused:  # the safe loader stopped at something other than weights and data: junk, or a raw pickle
            raise UserError(f"'{path}' is not a readable PyTorch checkpoint: the safe loader stops at "
                            f"'{refused.group(1).strip()}'; the file is corrupt, or it holds more than weights and "
                            f"data, which is refused because loading that could run code{code_hint}") from None
        raise UserError(f"'{path}' is not a readable PyTorch checkpoint (corrupt or truncated?)") from None
    except (RuntimeError, EOFError, OSError, ValueError, RecursionError) as e:
        detail = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
        raise UserError(f"'{path}' is not a readable PyTorch checkpoint ({detail})") from None
    check_tensor_storage(data, path)
    return data


def check_tensor_storage(data: Any, path: str | Path) -> None:
    """Refuse tensors with more elements than their file stores (broadcast views: a few bytes on disk that
    any copy would blow up to gigabytes), so what a checkpoint holds is bounded by its size."""
    stack, seen = [data], 0
    while stack and seen < 1_000_000:
        item = stack.pop()
        seen += 1
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
        elif isinstance(item, torch.Tensor) and item.layout == torch.strided and item.numel():
            stored = item.untyped_storage().nbytes()
            if item.numel() * item.element_size() > stored:
                raise UserError(f"'{path}' holds a tensor of shape {list(item.shape)} ({item.dtype}) whose "
                                f"{item.numel():,} elements share {stored:,} stored bytes (a broadcast view); "
                                "checkpoints hold plain weights: save them with .contiguous()")


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a paumer-edge checkpoint as data only; clear errors for anything else."""
    path = Path(path)
    ckpt = load_torch_data(path, map_location)
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise UserError(f"'{path}' is not a paumer-edge checkpoint; import foreign weights with "
                        "`paumer-edge import`")
    version = ckpt.get("version", 0)
    if not isinstance(version, int) or isinstance(version, bool) or version < 0:
        raise UserError(f"'{path}' has a malformed checkpoint version ({str(version)[:40]}); the file is damaged")
    if version > VERSION:
        raise UserError(f"'{path}' was written by a newer paumer-edge (checkpoint version {ckpt['version']}); "
                        "upgrade paumer-edge")
    return ckpt


def check_weights(cfg: ModelConfig, state: Any) -> None:
    """The weights fit the config, checked against a model built on the meta device (no memory): every key
    there and no other, every shape, and floating-point values where the model has them."""
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                              for k, v in state.items()):
        raise UserError("the checkpoint's 'model' entry must map weight names to tensors; the file is damaged or "
                        "not a paumer-edge checkpoint")
    with torch.device("meta"):
        want = PausingSegmenter(cfg).state_dict()
    missing, unexpected = [k for k in want if k not in state], [k for k in state if k not in want]
    if missing or unexpected:
        raise UserError(f"checkpoint weights do not fit its config: missing {missing[:5]}, "
                        f"unexpected {unexpected[:5]}")
    for key, w in want.items():
        have = state[key]
        if have.shape != w.shape:
            rows, cols = cfg.grid
            raise UserError(f"checkpoint weight '{key}' has shape {list(have.shape)}, but its config "
                            f"({show_value(cfg.name)}: embed_dim {cfg.embed_dim}, {cfg.num_classes} classes, {rows}x"
                            f"{cols} patches) needs {list(w.shape)}; the weights and the config do not belong together")
        if w.is_floating_point() and not have.is_floating_point():
            raise UserError(f"checkpoint weight '{key}' is stored as {str(have.dtype).replace('torch.', '')}, but "
                            "model weights are floating point: the values were truncated or the file was not "
                            "written from a model; save the float weights")


def model_from_checkpoint(ckpt: dict[str, Any]) -> PausingSegmenter:
    """The model a checkpoint describes, its config and weights checked before anything is allocated."""
    if "config" not in ckpt or "model" not in ckpt:
        raise UserError(f"the checkpoint lacks its {'config' if 'config' not in ckpt else 'weights (model)'}; "
                        "it is damaged or not a paumer-edge checkpoint")
    cfg = ModelConfig.from_dict(ckpt["config"])
    check_weights(cfg, ckpt["model"])
    model = PausingSegmenter(cfg)
    model.load_state_dict(ckpt["model"])
    return model


def load_model(path: str | Path | None = None, device: str | torch.device = "cpu") -> PausingSegmenter:
    """The model of a checkpoint (default: the bundled sample), in eval mode on `device`."""
    model = model_from_checkpoint(load_checkpoint(resolve_checkpoint(path)))
    return model.to(device).eval()
