"""Running GPU-only upstream code on a CPU, and other interpreter-wide switches of ``dmlp run``.

The upstreams call ``.cuda()``, ``torch.cuda.set_device`` and ``torch.cuda.FloatTensor``
unconditionally. On a machine without CUDA :func:`install_cpu_fallbacks` makes those
calls stay on the CPU; with CUDA it does nothing. Nothing here runs at import.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import inspect
import sys
from typing import Any

__all__ = ["install_cpu_fallbacks", "skip_integrity_checks", "force_num_workers", "cpu_device"]


def cpu_device(device: Any) -> Any:
    """``device`` with any CUDA device replaced by ``"cpu"``."""
    import torch

    if isinstance(device, str) and device.startswith("cuda"):
        return "cpu"
    if isinstance(device, torch.device) and device.type == "cuda":
        return torch.device("cpu")
    return device


def install_cpu_fallbacks() -> bool:
    """Make CUDA-only calls run on the CPU when no GPU is present. Returns whether it did."""
    import torch

    if torch.cuda.is_available() or getattr(torch, "_dmlp_cpu_fallbacks", False):
        return False

    def to_self(self: Any, *args: Any, **kwargs: Any) -> Any:
        return self

    torch.Tensor.cuda = to_self  # type: ignore[method-assign]
    torch.nn.Module.cuda = to_self  # type: ignore[method-assign]
    torch.cuda.set_device = lambda *a, **k: None
    # ELR+ builds `'cuda:' + str(ids[0])` from range(device_count()); with one "device" the
    # string exists and Tensor.to/Module.to below send it to the CPU.
    torch.cuda.device_count = lambda: 1
    # Legacy typed constructors, used as `.type(torch.cuda.FloatTensor)`.
    for name in ("FloatTensor", "DoubleTensor", "LongTensor", "IntTensor", "ByteTensor", "BoolTensor", "HalfTensor"):
        setattr(torch.cuda, name, getattr(torch, name))

    tensor_to, module_to = torch.Tensor.to, torch.nn.Module.to

    def tensor_to_cpu(self: Any, *args: Any, **kwargs: Any) -> Any:
        args = tuple(cpu_device(a) for a in args)
        if "device" in kwargs:
            kwargs["device"] = cpu_device(kwargs["device"])
        return tensor_to(self, *args, **kwargs)

    def module_to_cpu(self: Any, *args: Any, **kwargs: Any) -> Any:
        args = tuple(cpu_device(a) for a in args)
        if "device" in kwargs:
            kwargs["device"] = cpu_device(kwargs["device"])
        return module_to(self, *args, **kwargs)

    torch.Tensor.to = tensor_to_cpu  # type: ignore[method-assign]
    torch.nn.Module.to = module_to_cpu  # type: ignore[method-assign]
    torch._dmlp_cpu_fallbacks = True  # type: ignore[attr-defined]
    return True


# -- md5 checks ------------------------------------------------------------------------------------

_INTEGRITY_NAMES = ("check_integrity", "_check_integrity")


def _accept(*args: Any, **kwargs: Any) -> bool:
    return True


def _patch_module(module: Any) -> None:
    # Looked up statically: a plain getattr runs a module's or class's __getattr__, which
    # for deprecated names (torch.distributed.reduce_op) prints a FutureWarning into every run.
    if callable(inspect.getattr_static(module, "check_integrity", None)):
        module.check_integrity = _accept
    for value in list(vars(module).values()):
        # Dataset classes (torchvision's CIFAR10, Co-teaching's own) check through a method.
        # type(value), not isinstance(): the latter reads value.__class__, which warns too
        if issubclass(type(value), type) and vars(value).get("__module__") == module.__name__ \
                and callable(inspect.getattr_static(value, "_check_integrity", None)):
            value._check_integrity = lambda self, *a, **k: True


class _PatchOnImport(importlib.abc.MetaPathFinder):
    """Patches every module imported from now on, after it has run."""

    def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                loader = spec.loader
                if loader is not None and hasattr(loader, "exec_module"):
                    spec.loader = _PatchingLoader(loader)
                return spec
        return None


class _PatchingLoader(importlib.abc.Loader):
    def __init__(self, loader: Any) -> None:
        self._loader = loader

    def create_module(self, spec: Any) -> Any:
        return self._loader.create_module(spec)

    def exec_module(self, module: Any) -> None:
        self._loader.exec_module(module)
        _patch_module(module)

    def __getattr__(self, name: str) -> Any:  # get_source, get_filename, is_package, ...
        return getattr(self._loader, name)


def skip_integrity_checks() -> None:
    """Every md5 ``check_integrity`` (torchvision's, an upstream's own) accepts its file."""
    for module in list(sys.modules.values()):
        if module is not None and hasattr(module, "__dict__"):
            _patch_module(module)
    if not any(isinstance(f, _PatchOnImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _PatchOnImport())


def force_num_workers(workers: int) -> None:
    """Every DataLoader built from now on uses ``workers`` worker processes."""
    from torch.utils.data import DataLoader

    original = DataLoader.__init__

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        kwargs["num_workers"] = workers
        if workers == 0:
            kwargs.pop("prefetch_factor", None)
            kwargs["persistent_workers"] = False
        original(self, *args, **kwargs)

    DataLoader.__init__ = __init__  # type: ignore[method-assign]
