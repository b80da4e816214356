"""`paumer-edge info`: what is installed (and which extras), which inference backends and devices this machine offers;
or what a bundle holds."""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import platform
import sys
from typing import Any

from . import __version__

_PACKAGES = ("torch", "numpy", "cv2", "av", "click", "onnx", "onnxruntime", "tensorrt", "cuda", "onnx_graphsurgeon")

# extra -> (modules it brings, what it is for): `paumer-edge info` says which are here and what to install
EXTRAS: dict[str, tuple[tuple[str, ...], str]] = {
    "cpu": (("onnxruntime",), "run, bench and the embedding API on the CPU (ONNX Runtime)"),
    "gpu": (("onnxruntime", "cuda", "tensorrt"), "NVIDIA GPUs: onnxruntime-gpu, cuda-python, TensorRT engines"),
    "train": (("torch", "onnx", "onnxscript", "onnx_graphsurgeon", "yaml"),
              "train, eval, export, verify and import (PyTorch and the ONNX exporter)"),
}


def extras_installed() -> dict[str, bool]:
    """Which extras' modules all import here (the gpu extra also needs onnxruntime's CUDA provider)."""
    have = {name: all(_version(m) is not None for m in mods) for name, (mods, _) in EXTRAS.items()}
    if have["gpu"]:
        try:
            import onnxruntime as ort

            have["gpu"] = "CUDAExecutionProvider" in ort.get_available_providers()
        except Exception:
            have["gpu"] = False
    return have


@functools.cache
def _distributions() -> dict[str, list[str]]:
    return dict(importlib.metadata.packages_distributions())


def _version(name: str) -> str | None:
    try:
        mod = importlib.import_module(name)
    except Exception:  # not installed, or broken: report as absent
        return None
    if name == "tensorrt" and not hasattr(mod, "Builder"):  # type stubs (tensorrt-stubs) are not TensorRT
        return None
    for dist in _distributions().get(name.split(".")[0], []):
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return str(mod.__dict__.get("__version__", "installed"))


def collect_info() -> dict[str, Any]:
    info: dict[str, Any] = {
        "paumer-edge": __version__,
        "python": sys.version.split()[0],
        "platform": f"{platform.system()} {platform.machine()}",
        "packages": {name: _version(name) for name in _PACKAGES},
        "extras": extras_installed(),
        "devices": [],
        "backends": {},
    }
    try:
        import torch

        info["torch_threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            for i in range(torch.cuda.device_count()):
                p = torch.cuda.get_device_properties(i)
                info["devices"].append(f"cuda:{i} {p.name} (sm_{p.major}{p.minor}, {p.total_memory / 2**30:.1f} GiB)")
    except Exception:
        pass
    info["devices"].insert(0, f"cpu ({platform.processor() or platform.machine()})")
    try:
        import onnxruntime as ort

        info["backends"]["onnxruntime"] = ort.get_available_providers()
    except Exception:
        info["backends"]["onnxruntime"] = None
    info["backends"]["tensorrt"] = info["packages"]["tensorrt"]
    return info


def format_info(info: dict[str, Any]) -> str:
    lines = [f"paumer-edge {info['paumer-edge']}  python {info['python']}  {info['platform']}"]
    lines.append("packages:  " + ", ".join(f"{k} {v}" if v else f"{k} -" for k, v in info["packages"].items()))
    lines.append("devices:   " + "; ".join(info["devices"]))
    ort = info["backends"]["onnxruntime"]
    lines.append("onnxruntime providers: " + (", ".join(ort) if ort else "not installed"))
    lines.append("tensorrt:  " + (info["backends"]["tensorrt"] or "not installed (pip install 'paumer-edge[gpu]')"))
    for name, here in info["extras"].items():
        what = EXTRAS[name][1]
        lines.append(f"extra {name}: " + (f"installed ({what})" if here else
                                           f"not installed; for {what}: pip install 'paumer-edge[{name}]'"))
    return "\n".join(lines)


def bundle_info(path: str) -> dict[str, Any]:
    """What a bundle holds, from its checked manifest."""
    from .runtime.bundle import load_bundle

    b = load_bundle(path)
    m, man = b.model, b.manifest
    size = {name: round((b.path / g.file).stat().st_size / 1e6, 2) for name, g in b.graphs.items()}
    return {"bundle": str(b.path), "format_version": man.format_version, "created": man.created, "source": man.source,
            "model": m.to_dict(), "graphs_mb": size, "scores": man.has_scores, "batch": man.batch.to_dict(),
            "exporter": man.exporter.to_dict(),
            "variants": [{"name": v.name, "input_size": list(v.input_size), "precision": v.precision}
                         for v in man.variants],
            "engines": [{"graph": e.graph, "variant": e.variant, "precision": e.precision, "gpu": e.gpu.name,
                         "tensorrt": e.tensorrt, "budgets": list(e.budgets)} for e in man.engines]}


def format_bundle(info: dict[str, Any]) -> str:
    m, x = info["model"], info["exporter"]
    lines = [f"bundle {info['bundle']} (format {info['format_version']}, exported {info['created'] or '?'} from "
             f"{info['source'] or '?'})",
             f"  model {m['name']}: {m['num_classes']} classes, input {m['input_size'][0]}x{m['input_size'][1]}, "
             f"patch {m['patch_size']} ({m['grid'][0]}x{m['grid'][1]} grid, {m['tokens']} tokens), width "
             f"{m['embed_dim']}, pausing after blocks {', '.join(str(p) for p in m['pause_after']) or 'none'}",
             "  graphs: " + ", ".join(f"{n} {mb} MB" for n, mb in info["graphs_mb"].items())
             + ("; decoder gives class scores" if info["scores"] else ""),
             f"  exporter: paumer-edge {x['paumer_edge']}, torch {x['torch']}, onnx {x['onnx']}, opset {x['opset']}, "
             f"graphs revision {x['graphs_revision']}"]
    for v in info["variants"]:
        lines.append(f"  variant {v['name']}: {v['input_size'][0]}x{v['input_size'][1]} {v['precision']}")
    for e in info["engines"]:
        lines.append(f"  engine {e['variant'] + '/' if e['variant'] else ''}{e['graph']}: {e['precision']} on "
                     f"{e['gpu']}, TensorRT {e['tensorrt']}, budgets {e['budgets']}")
    return "\n".join(lines)
