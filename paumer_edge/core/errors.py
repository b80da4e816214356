"""The toolkit's typed errors: every mistake in what a user gave us is one of these (torch-free).

Each is a `UserError`: the CLI prints it as one line and exits with code 2; the embedding API raises
it as is, so a robot's code can catch exactly the kind it can handle.
"""

from __future__ import annotations


class UserError(Exception):
    """A mistake in what the user asked for (bad path, bad value): shown as one line, never a traceback."""


class BundleError(UserError):
    """A bundle that is missing, malformed, tampered with, unsafe, or from an incompatible version."""


class FrameError(UserError):
    """A frame or input tensor the pipeline cannot use (shape, dtype, size)."""


class SourceError(UserError):
    """A video, camera, stream or image folder that cannot be opened or read, or that went away.

    `after_frames` > 0 when the source failed part-way: the frames before it were good.
    """

    def __init__(self, message: str, after_frames: int = 0):
        super().__init__(message)
        self.after_frames = after_frames


class OutputError(UserError, OSError):
    """A result that cannot be written (disk full, not writable); nothing half-written is left.

    Also an `OSError` (with `errno` and `filename` set), so code that already handles failed writes as
    such keeps working.
    """

    def __str__(self) -> str:  # our one-line message, not OSError's "[Errno N] ..." form
        return str(self.args[0]) if self.args else ""


class PolicyError(UserError):
    """A budget, threshold or other run-time knob outside its range."""


__all__ = ["BundleError", "FrameError", "OutputError", "PolicyError", "SourceError", "UserError"]
