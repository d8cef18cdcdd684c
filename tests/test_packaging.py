"""What webly imports is declared in pyproject.toml (dependencies or an extra) and pinned in
requirements.txt; a missing optional package is one line naming its extra."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

from webly._optional import require
from webly.errors import ConfigError, MissingDependency

ROOT = Path(__file__).resolve().parents[1]
NEEDED_UNIMPORTED = {"onnx"}  # torch.onnx.export needs it; webly never imports it by name
UNPINNED = {"torch"}  # the Makefile installs $(TORCH_SPEC)


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0].strip().lower()


def _declared() -> dict[str, list[str]]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    groups = {"dependencies": project["dependencies"], **project["optional-dependencies"]}
    return {group: [r for r in reqs if _name(r) != "webly"] for group, reqs in groups.items()}


def _imported() -> set[str]:
    """Top-level modules that webly's code imports, outside the standard library and webly."""
    found: set[str] = set()
    for path in (ROOT / "webly").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module.split(".")[0])
    return found - set(sys.stdlib_module_names) - {"webly", "__future__"}


def test_every_import_is_declared() -> None:
    declared = {_name(r) for reqs in _declared().values() for r in reqs}
    distributions = packages_distributions()
    missing = []
    for module in sorted(_imported() | NEEDED_UNIMPORTED):
        names = {d.lower() for d in distributions.get(module, [module])}
        if not names & declared:
            missing.append(f"{module} ({', '.join(sorted(names))})")
    assert not missing, f"imported but not declared in pyproject.toml: {missing}"


def test_extras_and_pins_agree_with_pyproject() -> None:
    declared = _declared()
    assert {"ray", "tracking"} <= set(declared)
    assert [_name(r) for r in declared["ray"]] == ["ray"]
    assert [_name(r) for r in declared["tracking"]] == ["mlflow-skinny"]
    pins = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[name.split("[")[0].strip().lower()] = version.strip()  # ray[client] pins ray
    wanted = {_name(r) for reqs in declared.values() for r in reqs} - UNPINNED
    assert wanted <= set(pins), f"declared, not pinned: {sorted(wanted - set(pins))}"
    dev = (ROOT / "requirements-dev.txt").read_text()
    assert not [n for n in pins if re.search(rf"^{re.escape(n)}==", dev, re.M)]  # pinned once


def test_a_missing_optional_package_names_its_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    with pytest.raises(MissingDependency) as raised:
        require("ray", "--ray", "leave --ray out")
    assert isinstance(raised.value, ConfigError)  # the CLI prints one line, exit status 2
    assert str(raised.value) == (
        "--ray needs the ray package, which is not installed; pip install 'webly[ray]', "
        "or leave --ray out"
    )
    monkeypatch.setitem(sys.modules, "mlflow", None)
    with pytest.raises(MissingDependency, match=r"pip install 'webly\[tracking\]'"):
        require("mlflow", "tracking: mlflow")
