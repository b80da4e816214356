"""A test session's memo of exported ONNX graphs, so each distinct graph goes through the dynamo exporter once.

The dynamo exporter takes 3-12 s a graph even for the tiny model, and many tests export the same tiny checkpoint
(every CLI path that exports: `export`, `run --model`, `compare`, int8, the cache tests). The same module class with
the same weights, attributes, example inputs and options exports to the same graph, so the first export of a graph
is real and later ones copy its bytes. Everything around `export_module` (the bundle, manifest, verification, plans,
the caches the tests are about) runs as it does for a user. The key covers every input of the export; a miss, or
an export that fails, calls the real exporter.

`conftest.py` installs it in the test process and, through `tests/memo_site/sitecustomize.py` on PYTHONPATH, in the
CLI subprocesses the tests start (only once they import the exporter: the torch-free subprocesses never do).
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.abc
import importlib.machinery
import os
import shutil
import sys
from pathlib import Path
from typing import Any

ENV = "PAUMER_EDGE_TEST_GRAPH_MEMO"
TARGET = "paumer_edge.export.exporter"
_PLAIN = (int, float, str, bool, type(None))


def _plain(value: Any, depth: int = 0) -> Any:
    """A value's part of the key: plain data as is, containers and dataclasses by their plain content, anything
    else (tensors are hashed apart, modules are walked apart) by its type."""
    if isinstance(value, _PLAIN):
        return value
    if depth < 4 and isinstance(value, (list, tuple)):
        return [_plain(v, depth + 1) for v in value]
    if depth < 4 and isinstance(value, dict):
        return sorted((str(k), _plain(v, depth + 1)) for k, v in value.items())
    if depth < 4 and dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _plain(dataclasses.asdict(value), depth + 1)
    return type(value).__qualname__


def _update_tensor(h: Any, t: Any, values: bool = True) -> None:
    import torch

    t = t.detach().contiguous().cpu()
    h.update(f"{t.dtype}{tuple(t.shape)}".encode())
    if values:
        h.update(t.view(-1).view(dtype=torch.uint8).numpy().tobytes() if t.numel() else b"")


def graph_key(module: Any, args: tuple, path: Path, *rest: Any) -> str:
    """Every input of one `export_module` call, hashed: the module tree (classes, attributes, weights, buffers),
    the example inputs' shapes and types, the graph's file name and the remaining options (not its folder: the
    bundle's is a temporary one)."""
    import torch

    h = hashlib.sha256()
    h.update(f"{torch.__version__}|{Path(path).name}|{_plain(list(rest))}".encode())
    for name, m in module.named_modules():
        attrs = {k: v for k, v in vars(m).items() if not k.startswith("_") and k != "training"}
        h.update(f"{name}:{type(m).__module__}.{type(m).__qualname__}:{m.training}:{_plain(attrs)}".encode())
        for k, v in attrs.items():
            if isinstance(v, torch.Tensor):
                h.update(k.encode())
                _update_tensor(h, v)
    for k, t in module.state_dict(keep_vars=False).items():
        h.update(k.encode())
        _update_tensor(h, t)
    for a in args:  # traced symbolically: their shapes and types make the graph (the reuse caches are random)
        for t in a if isinstance(a, list) else [a]:
            _update_tensor(h, t, values=False)
    return h.hexdigest()


def _memoized(real: Any, folder: Path) -> Any:
    def export_module(module: Any, args: tuple, path: Path, *rest: Any) -> None:
        stored = folder / f"{graph_key(module, args, path, *rest)}.onnx"
        if stored.is_file():
            shutil.copyfile(stored, path)
            return
        real(module, args, path, *rest)
        tmp = stored.with_name(f"{stored.name}.{os.getpid()}.tmp")
        shutil.copyfile(path, tmp)
        os.replace(tmp, stored)  # processes may race to store the same graph: the bytes are the same

    export_module.memo_of = real  # type: ignore[attr-defined]
    return export_module


def patch(module: Any, folder: Path) -> None:
    """Route `module`'s (the exporter's) `export_module` through the memo in `folder`."""
    if not hasattr(module.export_module, "memo_of"):
        module.export_module = _memoized(module.export_module, folder)


class _AfterImport(importlib.abc.MetaPathFinder):
    """Patches the exporter right after it is first imported, so processes that never export never import torch."""

    def __init__(self, folder: Path):
        self.folder = folder

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name != TARGET:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None:
            for finder in sys.meta_path:  # an editable install maps the package through its own finder
                if finder is not self and hasattr(finder, "find_spec"):
                    spec = finder.find_spec(name, path, target)
                    if spec is not None:
                        break
        if spec is None or spec.loader is None:
            return spec
        loader, folder = spec.loader, self.folder
        run = loader.exec_module

        def exec_module(mod: Any) -> None:
            run(mod)
            patch(mod, folder)

        loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


def install(folder: Path) -> None:
    """Use the memo in `folder` in this process: now if the exporter is loaded, else when it is."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if TARGET in sys.modules:
        patch(sys.modules[TARGET], folder)
    elif not any(isinstance(f, _AfterImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _AfterImport(folder))
