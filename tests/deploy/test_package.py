"""The public names of `webly.deploy` and `webly.compress`: each resolves to the module that
owns it, on first use, so importing either package (or deploy's row readers and writers) loads
neither PyTorch nor ONNX Runtime."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest


@pytest.mark.parametrize("package", ["webly.deploy", "webly.compress"])
def test_every_public_name_resolves_to_its_own_module(package: str) -> None:
    module = importlib.import_module(package)
    assert module.__all__ == sorted(module.__all__) and module.__all__
    for name in module.__all__:
        value = getattr(module, name)
        assert value.__module__.startswith(f"{package}."), (name, value.__module__)
    assert set(module.__all__) <= set(dir(module))
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        module.nope  # noqa: B018


def test_the_packages_and_the_row_modules_import_light() -> None:
    code = (
        "import sys, webly.deploy, webly.compress, webly.deploy.inputs, webly.deploy.outputs; "
        "print(sorted({'torch', 'onnxruntime', 'lightgbm'} & set(sys.modules)))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
