"""Public names a package imports on first use (PEP 562), so importing the package, or one of
its light modules, does not load its heavy ones (PyTorch, LightGBM, pandas)."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_names(
    package: str, where: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of ``package`` whose public names live in the
    modules ``where`` gives (name -> module); a name is imported when first asked for and kept
    in the package."""
    namespace = importlib.import_module(package).__dict__

    def __getattr__(name: str) -> Any:
        if name not in where:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(where[name]), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*where, *(k for k in namespace if not k.startswith("_"))})

    return __getattr__, __dir__
