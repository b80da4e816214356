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
        return torch.load(path, map_location=map_location, weights_only=True)
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
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        detail = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"'{path}' is not a readable PyTorch checkpoint ({detail})") from None


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a paumer-edge checkpoint as data only; clear errors for anything else."""
    path = Path(path)
    ckpt = load_torch_data(path, map_location)
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise UserError(f"'{path}' is not a paumer-edge checkpoint; import foreign weights with "
                        "`paumer-edge import`")
    if ckpt.get("version", 0) > VERSION:
        raise UserError(f"'{path}' was written by a newer paumer-edge (checkpoint version {ckpt['version']}); "
                        "upgrade paumer-edge")
    return ckpt


def model_from_checkpoint(ckpt: dict[str, Any]) -> PausingSegmenter:
    model = PausingSegmenter(ModelConfig.from_dict(ckpt["config"]))
    missing, unexpected = model.load_state_dict(ckpt["model"], strict=False)
    if missing or unexpected:
        raise UserError(f"checkpoint weights do not fit its config: missing {missing[:5]}, "
                        f"unexpected {unexpected[:5]}")
    return model


def load_model(path: str | Path | None = None, device: str | torch.device = "cpu") -> PausingSegmenter:
    """The model of a checkpoint (default: the bundled sample), in eval mode on `device`."""
    model = model_from_checkpoint(load_checkpoint(resolve_checkpoint(path)))
    return model.to(device).eval()
