"""Who may see and who may steer: the view's address, its token, and the checks on every request.

- Bound to this machine (127.0.0.1, ::1, localhost; the default), anyone on it may watch and steer.
- With a token, every request needs it: `?token=` once (it becomes an HttpOnly, SameSite=Strict cookie and
  leaves the address bar), or `Authorization: Bearer TOKEN` from scripts.
- Bound beyond this machine without a token, the page is view-only: the knobs refuse every change.
- Changes must be same-origin JSON (no cross-site form posts), and on a loopback address the Host header
  must name this machine (a web page cannot reach the view through DNS rebinding).
"""

from __future__ import annotations

import hmac
import ipaddress
import string
from dataclasses import dataclass

from .errors import ViewError

LOOPBACK_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost")
MIN_TOKEN = 12  # characters: long enough that guessing it over HTTP is hopeless
TOKEN_CHARS = frozenset(string.ascii_letters + string.digits + "-_.~")  # safe in a URL and a cookie as they are


@dataclass(frozen=True)
class ViewAddress:
    host: str
    port: int

    @property
    def loopback(self) -> bool:
        return is_loopback(self.host)


def is_loopback(host: str) -> bool:
    """True for names and addresses that only this machine can reach."""
    name = host.strip("[]").lower()
    if name in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def parse_view_address(text: str | int, default_host: str = "127.0.0.1") -> ViewAddress:
    """'8080', '0.0.0.0:8080', '[::1]:8080' or 'robot.local:8080' -> (host, port); port 0 picks a free one."""
    spec = str(text).strip()
    host, sep, port_text = spec.rpartition(":")
    ok = not (host.startswith("[") != host.endswith("]") or (":" in host and not host.startswith("[")))
    host = host.strip("[]") or default_host  # '8080' and ':8080' bind the default; '::1' needs brackets
    if not ok or not port_text.isdigit() or int(port_text) > 65535:
        raise ViewError(f"view address '{text}': give PORT or HOST:PORT, e.g. 8080, 0.0.0.0:8080 or [::1]:8080 "
                        "(port 0 picks a free one)")
    return ViewAddress(host, int(port_text))


def check_token(token: str | None) -> str | None:
    if token is None:
        return None
    if len(token) < MIN_TOKEN or not set(token) <= TOKEN_CHARS:
        raise ViewError(f"view token: give at least {MIN_TOKEN} characters from A-Z, a-z, 0-9 and -_.~ (it goes "
                        "into URLs and cookies), e.g. python -c \"import secrets; print(secrets.token_urlsafe())\"")
    return token


@dataclass(frozen=True)
class Access:
    """The rules for one view: `allowed` says whether a request may be served at all, `may_steer` whether
    it may change knobs; both return None when it may, else the one-line reason to send back."""

    address: ViewAddress
    token: str | None = None

    @property
    def cookie(self) -> str:
        return f"paumer_view_{self.address.port}"  # cookies are shared between ports; ours must not be

    @property
    def control(self) -> bool:
        """Whether the knobs can be changed at all through this view."""
        return self.token is not None or self.address.loopback

    @property
    def readonly_reason(self) -> str | None:
        if self.control:
            return None
        return (f"view only: this view is served on {self.address.host} without a token, so the knobs are off; "
                "run again with --view-token to allow changes")

    def token_ok(self, given: str | None) -> bool:
        return self.token is None or (given is not None and hmac.compare_digest(given.encode(), self.token.encode()))

    def allowed(self, host_header: str | None, cookie: str | None, bearer: str | None) -> str | None:
        if self.address.loopback and not is_loopback(_hostname(host_header or "")):
            return (f"refused: the Host header '{host_header}' does not name this machine; open the view at "
                    f"http://127.0.0.1:{self.address.port}/")
        if not (self.token_ok(cookie) or self.token_ok(bearer)):
            return "this view needs its token: open the address the run printed (it ends in ?token=...)"
        return None

    def may_steer(self, origin: str | None, host_header: str | None, content_type: str) -> str | None:
        if not self.control:
            return self.readonly_reason
        if origin is not None and origin.split("://", 1)[-1] != (host_header or ""):
            return f"refused a change sent from another site ({origin})"
        if content_type != "application/json":
            return "send changes as JSON (Content-Type: application/json)"
        return None


def _hostname(host_header: str) -> str:
    """'127.0.0.1:8080' -> '127.0.0.1', '[::1]:8080' -> '::1', 'localhost' -> 'localhost'."""
    if host_header.startswith("["):
        return host_header[1:].split("]", 1)[0]
    return host_header.rsplit(":", 1)[0] if host_header.count(":") == 1 else host_header
