"""The commands that run one stage (``webly clean``, ``webly ensemble``, ``webly distill``,
``webly longtail``) build the recipe's own section model from ``--config`` and ``--set``: every
key of the section, nested ones too, is reachable from the command, and no option re-declares a
key by hand, so the command and the recipe cannot drift apart. (That both call the same library
function on the same section is shown in tests/stages/test_clean_ensemble.py, test_distill.py
and test_longtail.py.)"""

from __future__ import annotations

import json
from pathlib import Path
from types import UnionType
from typing import Any, get_args

import pytest
import typer
import yaml
from pydantic import BaseModel

from webly import cli
from webly.config import CleanConfig, DistillConfig, EnsembleConfig, LongtailConfig
from webly.errors import ConfigError

CLEAN: dict[str, list[str]] = {
    "method": ["method=margin"],
    "rounds": ["rounds=3"],
    "patience": ["patience=null"],
    "rules": ["rules={drop_fraction: 0.2, relabel_threshold: 0.8}"],
    "options": ["options={threshold: 0.5}"],
}
"""Per key of the clean section, the ``--set`` items that give it a value other than its
default."""
ENSEMBLE: dict[str, list[str]] = {
    "members": ["members=[logistic, mlp]"],
    "blends": ["blends=[mean, vote]"],
    "blend_options": ["blend_options={weighted: {n_trials: 5}}"],
    "stacker": ["stacker={rounds: 10}"],
}
DISTILL: dict[str, list[str]] = {
    "teacher": ["teacher=stacker"],
    "family": ["family=true"],
    "lam": ["lam=[1.0, 0.3]"],
    "k": ["k=5"],
    "min_score": ["min_score=0.01"],
    "students": ["students=[{name: mlp}]"],
    "final": ["final={name: mlp, hparams: {hidden: [8]}}"],
    "max_size": ["max_size=1MB"],
    "unlabeled": ["unlabeled={}"],
    "unlabeled.max_rows": ["unlabeled.max_rows=10"],
    "unlabeled.threshold": ["unlabeled.threshold=0.8"],
    "unlabeled.soft": ["unlabeled.threshold=0.8", "unlabeled.soft=false"],
    "unlabeled.alpha": ["unlabeled.alpha=0.5"],
    "unlabeled.t1": ["unlabeled.t2=3", "unlabeled.t1=1"],
    "unlabeled.t2": ["unlabeled.t2=3"],
    "mixup": ["mixup=0.4"],
}
"""Per key of the distill section, the ``--set`` items that give it a value other than its
default (on top of `DISTILL_BASE`)."""
DISTILL_BASE = ["final={name: logistic}"]  # a section needs something to train
LONGTAIL: dict[str, list[str]] = {
    "method": ["method=crt"],
    "taus": ["taus=[0, 1]"],
    "bias": ["bias=keep"],
    "metric": ["metric=accuracy"],
    "crt": ["crt={sampler: sqrt}"],
    "crt.sampler": ["crt.sampler=sqrt"],
    "crt.epochs": ["crt.epochs=3"],
    "crt.lr": ["crt.lr=0.1"],
    "crt.batch_size": ["crt.batch_size=16"],
    "head": ["head=50"],
    "tail": ["tail=10"],
}
CASES = [
    (CleanConfig, cli.clean_section, CLEAN, [], "clean"),
    (EnsembleConfig, cli.ensemble_section, ENSEMBLE, [], "ensemble"),
    (DistillConfig, cli.distill_section, DISTILL, DISTILL_BASE, "distill"),
    (LongtailConfig, cli.longtail_section, LONGTAIL, [], "longtail"),
]


def keys(model: type[BaseModel], at: str = "") -> list[str]:
    """Every key of a section model, nested models' keys dotted."""
    found = []
    for name, info in model.model_fields.items():
        found.append(at + name)
        kinds = get_args(info.annotation) if isinstance(info.annotation, UnionType) else ()
        for kind in kinds or (info.annotation,):
            if isinstance(kind, type) and issubclass(kind, BaseModel):
                found += keys(kind, f"{at}{name}.")
    return found


def value(section: BaseModel, key: str) -> Any:
    node: Any = section
    for part in key.split("."):
        node = None if node is None else getattr(node, part)
    return node


@pytest.mark.parametrize(("model", "build", "items", "base", "name"), CASES)
def test_every_key_of_the_section_is_set_from_the_command(
    model: type[BaseModel], build: Any, items: dict[str, list[str]], base: list[str], name: str
) -> None:
    assert sorted(items) == sorted(keys(model)), f"give each key of {name} a --set here"
    default = build(None, base)
    assert isinstance(default, model)
    for key, overrides in items.items():
        section = build(None, [*base, *overrides])
        assert value(section, key) != value(default, key), key


@pytest.mark.parametrize(("model", "build", "items", "base", "name"), CASES)
def test_the_config_file_is_the_recipes_section_and_set_goes_after_it(
    model: type[BaseModel], build: Any, items: dict[str, list[str]], base: list[str], name: str,
    tmp_path: Path,
) -> None:  # fmt: skip
    first = keys(model)[0]
    default, changed = build(None, base), build(None, [*base, *items[first]])
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(changed.model_dump(mode="json")))  # as in a recipe
    assert build(path, []) == changed
    again = build(path, [f"{first}={json.dumps(value(default, first))}"])
    assert value(again, first) == value(default, first)
    with pytest.raises(ConfigError, match=rf"^{name}\.nope: unknown key; {name} accepts: "):
        build(path, ["nope=1"])


@pytest.mark.parametrize(("model", "command"), [
    (CleanConfig, "clean"), (EnsembleConfig, "ensemble"), (DistillConfig, "distill"),
    (LongtailConfig, "longtail"),
])  # fmt: skip
def test_no_option_of_the_command_redeclares_a_key_of_the_section(
    model: type[BaseModel], command: str
) -> None:
    group = typer.main.get_command(cli.app)
    params = group.commands[command].params  # type: ignore[attr-defined]
    flags = {flag.lstrip("-").replace("-", "_") for p in params for flag in p.opts}
    assert {"config", "set"} <= flags
    assert not flags & set(model.model_fields), "set section keys through --set, not an option"
