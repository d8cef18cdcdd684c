"""The commands that run one stage (``webly clean``, ``webly ensemble``, ``webly distill``,
``webly longtail``, ``webly compress``, ``webly export``) build the recipe's own section model
from ``--config`` and ``--set``: every key of the section, nested ones too, is reachable from
the command, and no option re-declares a key by hand, so the command and the recipe cannot
drift apart. (That both call the same library function on the same section is shown in
tests/stages/test_clean_ensemble.py, test_distill.py, test_longtail.py and
tests/compress/test_run.py.)"""

from __future__ import annotations

import json
import re
from dataclasses import fields
from functools import partial
from pathlib import Path
from types import UnionType
from typing import Any, get_args

import pytest
import typer
import yaml
from pydantic import BaseModel
from typer.testing import CliRunner

from webly import cli
from webly.config import (
    CleanConfig,
    CompressConfig,
    DistillConfig,
    EnsembleConfig,
    ExportConfig,
    LongtailConfig,
)
from webly.deploy.options import PredictOptions
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
    "frame_views": ["frame_views=0.5"],
    "temperature": ["temperature=[1.0, 0.5]"],
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
COMPRESS: dict[str, list[str]] = {
    "max_size": ["max_size=50MB"],
    "max_latency_ms": ["max_latency_ms=2"],
    "measure_latency": ["measure_latency=false"],
    "methods": ["methods=[int8_partial, kmeans]"],
    "min_elements": ["min_elements=0"],
}
EXPORT: dict[str, list[str]] = {
    "opset": ["opset=18"],
    "predict": ["predict.tta_views=4"],
}
CASES = [
    (CleanConfig, CLEAN, [], "clean"),
    (EnsembleConfig, ENSEMBLE, [], "ensemble"),
    (DistillConfig, DISTILL, DISTILL_BASE, "distill"),
    (LongtailConfig, LONGTAIL, [], "longtail"),
    (CompressConfig, COMPRESS, [], "compress"),
    (ExportConfig, EXPORT, [], "export"),
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


def test_the_cases_are_every_command_that_runs_one_stage() -> None:
    assert {name: model.__name__ for model, *_, name in CASES} == cli.SECTIONS


@pytest.mark.parametrize(("model", "items", "base", "name"), CASES)
def test_every_key_of_the_section_is_set_from_the_command(
    model: type[BaseModel], items: dict[str, list[str]], base: list[str], name: str
) -> None:
    assert sorted(items) == sorted(keys(model)), f"give each key of {name} a --set here"
    build = partial(cli.stage_section, name)
    default = build(None, base)
    assert isinstance(default, model)
    for key, overrides in items.items():
        section = build(None, [*base, *overrides])
        assert value(section, key) != value(default, key), key


@pytest.mark.parametrize(("model", "items", "base", "name"), CASES)
def test_the_config_file_is_the_recipes_section_and_set_goes_after_it(
    model: type[BaseModel], items: dict[str, list[str]], base: list[str], name: str,
    tmp_path: Path,
) -> None:  # fmt: skip
    build = partial(cli.stage_section, name)
    first = keys(model)[0]
    default, changed = build(None, base), build(None, [*base, *items[first]])
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(changed.model_dump(mode="json")))  # as in a recipe
    assert build(path, []) == changed
    again = build(path, [f"{first}={json.dumps(value(default, first))}"])
    assert value(again, first) == value(default, first)
    with pytest.raises(ConfigError, match=rf"^{name}\.xyzzy: unknown key; {name} accepts: "):
        build(path, ["xyzzy=1"])


def test_the_export_sections_predict_options_are_set_whole_or_one_by_one() -> None:
    section = cli.stage_section(
        "export", None, ["predict={tta_stored: [flip]}", "predict.group_aggregation=mean"]
    )
    assert section.predict == {"tta_stored": ["flip"], "group_aggregation": "mean"}
    assert PredictOptions.from_json(section.predict).tta_stored == ("flip",)
    assert cli.stage_section("export", None, ["predict.tta_views=4"]).predict == {"tta_views": 4}
    with pytest.raises(ConfigError, match=r"^export\.predict: unknown predict option 'tta_view'; "):
        cli.stage_section("export", None, ["predict.tta_view=4"])


LEAVES = {"export": [option.name for option in fields(PredictOptions)]}
"""Keys below a section's mapping-valued keys (export's ``predict``), which no option may
re-declare either."""


@pytest.mark.parametrize(("model", "command"), [(model, name) for model, *_, name in CASES])
def test_no_option_of_the_command_redeclares_a_key_of_the_section(
    model: type[BaseModel], command: str
) -> None:
    group = typer.main.get_command(cli.app)
    params = group.commands[command].params  # type: ignore[attr-defined]
    flags = {flag.lstrip("-").replace("-", "_") for p in params for flag in p.opts}
    assert {"config", "set"} <= flags
    leaves = {key.split(".")[-1] for key in keys(model)} | set(LEAVES.get(command, ()))
    assert not flags & leaves, "set section keys through --set, not an option"


@pytest.mark.parametrize("command", sorted(cli.SECTIONS))
def test_the_help_shows_the_commands_set_examples_whole(command: str) -> None:
    group = typer.main.get_command(cli.app)
    doc = group.commands[command].callback.__doc__ or ""  # type: ignore[attr-defined]
    examples = re.findall(r"--set ('[^']*'|\S+)", " ".join(doc.replace("\\[", "[").split()))
    assert examples, f"give webly {command}'s help an example of --set"
    shown = CliRunner().invoke(cli.app, [command, "--help"], env={"COLUMNS": "100"})
    assert shown.exit_code == 0, shown.output
    text = " ".join(shown.output.split())
    for example in examples:  # a [name] unescaped is Rich markup, gone from the help
        assert f"--set {example}" in text, example
