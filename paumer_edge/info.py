"""`paumer-edge info`: what is installed, which inference backends and devices this machine offers."""

from __future__ import annotations

import importlib
import platform
import sys
from typing import Any

from . import __version__

_PACKAGES = ("torch", "numpy", "cv2", "onnx", "onnxruntime", "tensorrt", "cuda", "onnx_graphsurgeon")


def _version(name: str) -> str | None:
    try:
        mod = importlib.import_module(name)
    except Exception:  # not installed, or broken: report as absent
        return None
    return str(getattr(mod, "__version__", "installed"))


def collect_info() -> dict[str, Any]:
    info: dict[str, Any] = {
        "paumer-edge": __version__,
        "python": sys.version.split()[0],
        "platform": f"{platform.system()} {platform.machine()}",
        "packages": {name: _version(name) for name in _PACKAGES},
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
    return "\n".join(lines)
