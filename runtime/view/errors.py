"""The live view's error: a `UserError` (one line on the command line, typed in the API)."""

from __future__ import annotations

from paumer_edge.core.errors import UserError


class ViewError(UserError):
    """The view cannot be served as asked (address taken, bad address or token, aiohttp missing)."""
