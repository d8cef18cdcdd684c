"""Packages that only some features need, imported when the feature is used.

`require` imports one and, when it is missing, raises `MissingDependency`: one line naming the
feature and the ``pip install`` that brings it (the extra of webly's ``pyproject.toml`` that
declares it), instead of an ImportError traceback.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from webly.errors import MissingDependency

INSTALL = {
    "ray": "pip install 'webly[ray]'",
    "mlflow": "pip install 'webly[tracking]'",
    "onnx": "pip install onnx (a dependency of webly: reinstall it)",
}
"""How to install each optional module: the webly extra that declares it."""


def require(module: str, feature: str, otherwise: str | None = None) -> ModuleType:
    """``import module`` for ``feature`` (e.g. ``"--ray"``, ``"webly export"``);
    `MissingDependency` naming ``INSTALL[module]`` (and ``otherwise``, another way out) when it
    is not installed."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        if err.name is not None and err.name.split(".")[0] != module.split(".")[0]:
            raise  # the module is there but one of its own imports failed: a real error
        fix = INSTALL.get(module, f"pip install {module}")
        alternative = f", or {otherwise}" if otherwise else ""
        raise MissingDependency(
            f"{feature} needs the {module} package, which is not installed; {fix}{alternative}"
        ) from None
