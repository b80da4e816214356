"""`--backend auto|ort|ort-cuda|ort-trt|trt`: open the asked-for backend, or the fastest one available."""

from __future__ import annotations

from paumer_edge import UserError

from ..bundle import Bundle
from .base import Backend
from .ort import KINDS, OrtBackend, import_ort

BACKENDS = ("auto", "trt", *KINDS)


def _native_trt(bundle: Bundle, precision: str | None) -> Backend | None:
    """The native TensorRT backend when TensorRT, a GPU and fitting engines for every graph exist."""
    try:
        from .trt import TrtBackend, find_engine

        backend = TrtBackend(precision)
        for name in [*bundle.stage_names, "decoder"]:
            find_engine(bundle, name, precision, backend.trt.__version__, backend.gpu)
        return backend
    except UserError:
        return None


def open_backend(kind: str, bundle: Bundle, threads: int = 0, precision: str | None = None,
                 shared_threads: bool = False, budgets: tuple[float, ...] = (0.5,), stateful: bool = False) -> Backend:
    """The backend `kind`; `budgets` are those the pipeline expects to run at (the TensorRT EP tunes its
    token-count profile for the first). `stateful`: the caller keeps graph outputs across frames (temporal reuse),
    which the native TensorRT backend's reused output buffers do not allow yet: `auto` then passes it over."""
    if kind not in BACKENDS:
        raise UserError(f"unknown backend '{kind}'; use one of {', '.join(BACKENDS)}")
    if kind == "trt" and stateful:
        raise UserError("temporal reuse keeps each stream's buffers from frame to frame, which the native TensorRT "
                        "backend does not do yet: use --backend ort-trt (TensorRT through ONNX Runtime), or reuse "
                        "off (--no-reuse)")
    if kind == "trt":
        from .trt import TrtBackend

        return TrtBackend(precision)
    if kind != "auto":
        return _fits(OrtBackend(kind, threads=threads, fp16=precision == "fp16", int8=precision == "int8",
                                shared_threads=shared_threads, budgets=budgets), precision)
    native = None if stateful else _native_trt(bundle, precision)
    if native is not None:
        return native
    providers = import_ort().get_available_providers()
    for candidate in ("ort-trt", "ort-cuda"):
        if KINDS[candidate][0] in providers and (precision != "fp16" or candidate == "ort-trt"):
            return OrtBackend(candidate, threads=threads, fp16=precision == "fp16", int8=precision == "int8",
                              budgets=budgets)
    return _fits(OrtBackend("ort", threads=threads, shared_threads=shared_threads), precision)


def _fits(backend: OrtBackend, precision: str | None) -> OrtBackend:
    """fp16 comes from TensorRT (engines or its ONNX Runtime provider): the bundle's graphs are fp32 and int8."""
    if precision == "fp16" and backend.name != "ort-trt":
        raise UserError(f"fp16 runs on TensorRT (--backend trt or ort-trt), not on {backend.name}; "
                        "use fp32 or int8 there")
    return backend
