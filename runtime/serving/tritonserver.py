"""The Triton Inference Server that ships in the `nvidia-pytriton` wheel: where it is, the environment its
Python backend needs, and a process running it on a model repository (tests, benchmarks, a quick try).

The Python backend's stub is linked against `libpython3.X.so`. When this interpreter is another build
of that version than the system's (pyenv, conda), the stub would load the system's library with this
interpreter's standard library and fail at start (an AttributeError inside multiprocessing); putting
the interpreter's own LIBDIR first on LD_LIBRARY_PATH makes it load the matching one.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from paumer_edge.core.errors import UserError

INSTALL_HINT = 'install the serving extra: pip install "paumer-edge[serve]"'


class ServingError(UserError):
    """The server cannot be set up or started here (missing extra, port taken, a model that failed to load)."""


def libpython_dir() -> str | None:
    """This interpreter's own shared-library directory, if it has a libpython there (None: static build)."""
    libdir = sysconfig.get_config_var("LIBDIR")
    soname = sysconfig.get_config_var("INSTSONAME") or sysconfig.get_config_var("LDLIBRARY")
    if libdir and soname and (Path(libdir) / soname).exists():
        return str(libdir)
    return None


def backend_env(base: Mapping[str, str] | None = None, extra_libs: tuple[str, ...] = ()) -> dict[str, str]:
    """`base` (default: os.environ) with this interpreter's LIBDIR first on LD_LIBRARY_PATH and its bin/ first
    on PATH, so the Python backend's stub runs with this interpreter's libpython and packages."""
    env = dict(os.environ if base is None else base)
    parts = [p for p in (libpython_dir(), *extra_libs) if p]
    old = [p for p in env.get("LD_LIBRARY_PATH", "").split(os.pathsep) if p and p not in parts]
    env["LD_LIBRARY_PATH"] = os.pathsep.join(parts + old)
    env["PATH"] = os.pathsep.join([str(Path(sys.exec_prefix) / "bin"), env.get("PATH", "")])
    return env


@contextmanager
def python_backend_environment() -> Iterator[None]:
    """os.environ fixed for the Python backend (see `backend_env`) while a server starts, then restored."""
    saved = {k: os.environ.get(k) for k in ("LD_LIBRARY_PATH", "PATH")}
    os.environ.update({k: v for k, v in backend_env().items() if k in saved})
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@dataclass(frozen=True)
class Distribution:
    """The server binary, its Python backend, the stub for this Python, and the libraries they need."""

    server: Path
    python_backend: Path
    stub: Path
    libs: Path


def require_pytriton() -> None:
    """A ServingError saying what to install when PyTriton is missing (checked before any slow set-up)."""
    try:
        import pytriton  # noqa: F401
    except ImportError:
        raise ServingError(f"PyTriton is not installed here: {INSTALL_HINT}") from None


def distribution() -> Distribution:
    try:
        from pytriton.utils.distribution import get_libs_path, get_root_module_path, get_stub_path
    except ImportError:
        raise ServingError(f"Triton Inference Server is not installed here: {INSTALL_HINT}") from None
    root = get_root_module_path() / "tritonserver"
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    try:
        stub = Path(get_stub_path(version))
    except Exception as e:  # noqa: BLE001  (pytriton raises a bare error for an unsupported Python)
        raise ServingError(f"the Triton Python backend has no stub for Python {version} ({e})") from None
    return Distribution(root / "bin" / "tritonserver", root / "backends" / "python", stub, Path(get_libs_path()))


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def check_port(host: str, port: int, what: str) -> None:
    """A port the server can bind, or a ServingError naming it (Triton would only log the failure)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError as e:
            raise ServingError(f"cannot listen on {host}:{port} for {what} ({e.strerror}): pick another port") from None


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM it when the process that started it dies (Linux), as PyTriton does."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class TritonServerProcess:
    """`tritonserver` on a model repository, bound to `host` (127.0.0.1 by default) with its three ports.

    Ready when `start()` returns; `stop()` sends SIGINT (Triton finishes in-flight requests, then exits) and
    kills it after `exit_timeout_s`. Also a context manager.
    """

    def __init__(self, repository: str | Path, host: str = "127.0.0.1", http_port: int = 0, grpc_port: int = 0,
                 metrics_port: int = 0, log: str | Path | None = None, exit_timeout_s: int = 30):
        self.repository = Path(repository)
        self.host = host
        self.http_port = http_port or free_port(host)
        self.grpc_port = grpc_port or free_port(host)
        self.metrics_port = metrics_port or free_port(host)
        self.exit_timeout_s = exit_timeout_s
        self._tmp = Path(tempfile.mkdtemp(prefix="paumer-triton-"))
        self.log = Path(log) if log else self._tmp / "tritonserver.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"grpc://{self.host}:{self.grpc_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self.host}:{self.metrics_port}/metrics"

    def _backends(self, dist: Distribution) -> Path:
        """A backend directory with the Python backend and the stub for this Python (as PyTriton lays it out)."""
        python = self._tmp / "backends" / "python"
        shutil.copytree(dist.python_backend, python, ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copy(dist.stub, python / "triton_python_backend_stub")
        return python.parent

    def command(self, dist: Distribution) -> list[str]:
        return [str(dist.server), f"--model-repository={self.repository}",
                f"--backend-directory={self._backends(dist)}",
                f"--backend-config=python,shm-region-prefix-name=paumer{os.getpid()}x{self.grpc_port}",
                f"--http-address={self.host}", f"--http-port={self.http_port}",
                f"--grpc-address={self.host}", f"--grpc-port={self.grpc_port}",
                f"--metrics-address={self.host}", f"--metrics-port={self.metrics_port}",
                f"--exit-timeout-secs={self.exit_timeout_s}", "--strict-readiness=true"]

    def start(self, timeout_s: float = 120.0) -> TritonServerProcess:
        dist = distribution()
        for port, what in ((self.http_port, "HTTP"), (self.grpc_port, "gRPC"), (self.metrics_port, "metrics")):
            check_port(self.host, port, what)
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(self.command(dist), stdout=log, stderr=subprocess.STDOUT,
                                            env=backend_env(extra_libs=(str(dist.libs),)), start_new_session=True,
                                            preexec_fn=_die_with_parent)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServingError(f"tritonserver exited with code {self.process.returncode} while starting on "
                                   f"'{self.repository}': {self.log_tail()}")
            if self._ready():
                return self
            time.sleep(0.2)
        self.stop()
        raise ServingError(f"tritonserver was not ready after {timeout_s:.0f} s on '{self.repository}': "
                           f"{self.log_tail()}")

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.http_url}/v2/health/ready", timeout=1.0) as r:
                return bool(r.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def log_tail(self, lines: int = 8) -> str:
        """The server log's last error lines (or last lines), folded into one line."""
        try:
            text = self.log.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        errors = [t for t in text if t.startswith("E") or "error" in t.lower()]
        return " | ".join((errors or text)[-lines:])

    def stop(self) -> int | None:
        """SIGINT, wait for in-flight requests (up to exit_timeout_s), then kill. The exit code."""
        p = self.process
        if p is not None and p.poll() is None:
            p.send_signal(signal.SIGINT)
            try:
                p.wait(self.exit_timeout_s + 5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        shutil.rmtree(self._tmp / "backends", ignore_errors=True)
        return None if p is None else p.returncode

    def __enter__(self) -> TritonServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
