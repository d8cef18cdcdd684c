"""The recipe: loading, --set overrides, one-line errors that name the accepted keys, the
resolved dump, and the demo recipe."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from webly.config import dump_recipe, load_recipe, parse_recipe
from webly.data.products import ProductsLikeConfig
from webly.data.synth import YT8MLikeConfig
from webly.errors import ConfigError
from webly.stages import distill_config, zoo_config

DEMO = Path(__file__).resolve().parents[1] / "recipes" / "demo.yaml"

RECIPE: dict[str, Any] = {
    "seed": 3,
    "data": {"synth": {"kind": "yt8m-like", "videos": 200, "classes": 10, "max_frames": 8}},
    "folds": {"n": 4},
    "zoo": {
        "train": {"epochs": 1},
        "members": [{"name": "logistic"}, {"name": "mlp", "hparams": {"hidden": [16]}}],
    },
}


def write(tmp_path: Path, raw: Any, name: str = "recipe.yaml") -> Path:
    path = tmp_path / name
    path.write_text(raw if isinstance(raw, str) else yaml.safe_dump(raw))
    return path


def test_demo_recipe_is_the_demo_zoo_on_the_frame_level_benchmark() -> None:
    recipe = load_recipe(DEMO)
    assert recipe.data.synth is not None
    config = recipe.data.synth.generator_config(recipe.seed)
    assert isinstance(config, YT8MLikeConfig)
    assert (config.videos, config.classes, config.max_frames) == (3000, 100, 30)
    assert config.unlabeled_videos == 0 and config.seed == 0
    assert recipe.folds.n == 3 and recipe.evaluate.k == 20
    assert (recipe.zoo.folds, recipe.zoo.seed, recipe.zoo.k) == (3, 0, 100)
    assert recipe.zoo.train == {"epochs": 6, "batch_size": 128, "lr": 0.002}
    ids = [m.member_id for m in recipe.zoo.members]
    assert ids == ["logistic", "mlp", "resnet_av", "mlp_audio", "dbof", "netvlad"]
    assert recipe.zoo.members[3].options is not None
    assert recipe.zoo.members[3].options.groups == ["mean_audio"]
    assert [m.train.get("max_frames") for m in recipe.zoo.members[4:]] == [30, 30]
    assert recipe.clean is not None and recipe.clean.rounds == 1
    assert recipe.ensemble is not None and recipe.ensemble.blends == ["mean", "weighted", "greedy"]
    assert recipe.distill is not None and recipe.distill.final is not None
    assert [s["id"] for s in recipe.distill.students] == ["resnet_av_student"]


def test_seed_and_folds_flow_into_the_zoo(tmp_path: Path) -> None:
    recipe = load_recipe(write(tmp_path, RECIPE))
    assert (recipe.zoo.folds, recipe.zoo.seed) == (4, 3)
    assert recipe.data.synth is not None
    assert recipe.data.synth.generator_config(recipe.seed).seed == 3
    assert recipe.evaluate.k == 20 and recipe.zoo.k == 100  # defaults


def test_overrides_address_list_items_and_read_yaml_values(tmp_path: Path) -> None:
    recipe = load_recipe(
        write(tmp_path, RECIPE),
        [
            "zoo.members.1.hparams.hidden=[32, 8]",
            "zoo.members.0.options.groups=[mean_audio]",  # options was absent: made
            "folds.n=5",
            "seed=7",
            "data.synth.missing=0.1",
            "zoo.members.1.id=wide",
            "evaluate.k=10",
        ],
    )
    assert recipe.zoo.members[1].hparams == {"hidden": [32, 8]}
    assert recipe.zoo.members[1].member_id == "wide"
    assert recipe.zoo.members[0].options is not None
    assert recipe.zoo.members[0].options.groups == ["mean_audio"]
    assert (recipe.zoo.folds, recipe.zoo.seed, recipe.evaluate.k) == (5, 7, 10)
    assert recipe.data.synth is not None
    config = recipe.data.synth.generator_config(recipe.seed)
    assert isinstance(config, YT8MLikeConfig) and config.missing == 0.1


def test_dump_is_resolved_and_loads_back(tmp_path: Path) -> None:
    recipe = load_recipe(write(tmp_path, RECIPE), ["zoo.members.1.hparams.hidden=[32]"])
    text = dump_recipe(recipe)
    raw = yaml.safe_load(text)
    assert list(raw) == ["seed", "data", "folds", "zoo", "evaluate", "report", "executor"]
    assert list(raw["data"]) == ["synth"]  # only the source in use
    assert "folds" not in raw["zoo"] and "seed" not in raw["zoo"]  # one place for each key
    assert raw["data"]["synth"]["test_videos"] == 50  # generator defaults filled in
    assert raw["zoo"]["members"][1]["hparams"] == {"hidden": [32]}
    assert parse_recipe(raw) == recipe
    assert dump_recipe(parse_recipe(raw)) == text


def test_keep_checkpoints_reaches_the_students_and_changes_no_stage_hash(tmp_path: Path) -> None:
    distill = ["distill.family=true", "distill.students=[{name: mlp, id: mlp_student}]"]
    plain = load_recipe(write(tmp_path, RECIPE), distill)
    kept = load_recipe(write(tmp_path, RECIPE), [*distill, "zoo.keep_checkpoints=true"])
    assert not plain.zoo.keep_checkpoints and kept.zoo.keep_checkpoints
    assert kept.student_zoos()["students"].keep_checkpoints
    assert parse_recipe(yaml.safe_load(dump_recipe(kept))) == kept
    for config in (zoo_config, distill_config):  # nothing changes results: no stage reruns
        assert config(kept) == config(plain)


def test_products_like_and_builtin_sources(tmp_path: Path) -> None:
    synth = {"kind": "products-like", "n_classes": 20, "n_products": 100,
             "instances_per_product": [1, 2]}  # fmt: skip
    products = {**RECIPE, "data": {"synth": synth}}
    recipe = load_recipe(write(tmp_path, products))
    assert recipe.data.synth is not None
    config = recipe.data.synth.generator_config(0)
    assert isinstance(config, ProductsLikeConfig) and config.instances_per_product == (1, 2)
    assert parse_recipe(yaml.safe_load(dump_recipe(recipe))) == recipe
    digits = {**RECIPE, "data": {"builtin": {"name": "digits", "noise": "pair", "rate": 0.2}}}
    assert load_recipe(write(tmp_path, digits)).data.source[0] == "builtin"


def test_relative_paths_resolve_against_the_current_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    stores = {**RECIPE, "data": {"store": {"train": "stores/train"}}}
    recipe = load_recipe(write(tmp_path, stores))
    assert recipe.data.store is not None
    assert recipe.data.store.train == tmp_path / "stores" / "train"
    assert recipe.data.store.test is None
    yt8m = {"train": "tf/train*.tfrecord", "level": "frame", "names": 2017}
    recipe = load_recipe(write(tmp_path, {**RECIPE, "data": {"yt8m": yt8m}}))
    assert recipe.data.yt8m is not None
    assert recipe.data.yt8m.train == str(tmp_path / "tf" / "train*.tfrecord")
    assert recipe.data.yt8m.names == "2017"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["zoo.kk=3"],
            r"zoo\.kk: unknown key; did you mean 'k'\? zoo accepts: k, train, members, "
            "keep_checkpoints, time_limit$",
        ),
        (["kk=3"], r"kk: unknown key; the recipe accepts: seed, data, folds, zoo, clean"),
        (["ensembel={}"], r"^[^:]*: ensembel: unknown key; did you mean 'ensemble'\? the recipe"),
        (
            ["zoo.members.1.hparms.x=3"],
            r"members\[1\]\.hparms: unknown key; did you mean 'hparams'",
        ),
        (
            ["zoo.members.1.hparams.dropout=high"],
            r": zoo\.members\[1\]\.hparams\.dropout: expected float, got 'high' \(str\)",
        ),
        (
            ["zoo.members.1.hparams.hiden=[3]"],
            r"zoo\.members\[1\]\.hparams\.hiden: .*no such hyper-parameter; did you mean 'hidden'",
        ),
        (["zoo.train.epochs=2.5"], r": zoo\.train\.epochs: expected int, got 2\.5 \(float\)"),
        (
            ["zoo.members.0.train.lr=[1]"],
            r"zoo\.members\[0\]\.train\.lr: expected float \| Literal\['auto'\], got",
        ),
        (["zoo.train.epohcs=3"], r"zoo\.train\.epohcs: unknown setting; did you mean 'epochs'"),
        (["zoo.members.0.options.gating=1"], r"options\.gating: unknown key; .*context_gating"),
        (["folds.seed=1"], r"folds\.seed: unknown key; folds accepts: n$"),
        (["data.synth.vidoes=3"], r"data\.synth\.vidoes: unknown .*; did you mean 'videos'\? it"),
        (["data.synth.seed=3"], r"data\.synth\.seed: .*the recipe's seed sets it"),
        (["data.synth.videos=0"], r"data\.synth: videos is 0; generate at least 1 video"),
        (["data.synth.videos=many"], r"data\.synth\.videos: Input should be a valid integer"),
        (["data.store.train=/x"], r"data: synth and store given; give exactly one source"),
        (["data={}"], r"data: no source given; give exactly one source \(synth, builtin"),
        (["zoo.seed=1"], r"zoo\.seed: remove it; the top-level seed of the recipe sets it"),
        (["zoo.folds=5"], r"zoo\.folds: remove it; folds\.n of the recipe sets it"),
        (["folds.n=1"], r"folds\.n: Input should be greater than or equal to 2 \(got 1\)"),
        (["evaluate.k=200"], r"evaluate\.k is 200 but the zoo keeps k=100 predictions a row"),
        (["zoo.members.0.name=resnet"], r"zoo\.members\[0\]\.name: unknown model 'resnet'; did y"),
        (["zoo.members.1.id=logistic"], r"zoo\.members\[1\]: id 'logistic' is used twice"),
        (["zoo.train.lr=.nan"], r": zoo\.train\.lr: nan is not a finite number; give a number$"),
        (["zoo.train.lr=.inf"], r": zoo\.train\.lr: inf is not a finite number"),
        (["zoo.members.1.hparams.dropout=-.inf"], r"zoo\.members\[1\]\.hparams\.dropout: -inf"),
        (["zoo.members.0.train.weight_decay=.NaN"], r"zoo\.members\[0\]\.train\.weight_decay: nan"),
        (["zoo.members.1.id=" + "m" * 300], r"zoo\.members\[1\]\.id: 'm+'\.\.\. is 300 characters"),
        (["zoo.members.1.id=" + "m" * 64, "evaluate.k=200"], r"evaluate\.k is 200"),  # id ok
        (["zoo.members.2.name=x"], r"2\.name: zoo\.members is a list of 2 items; .*0\.\.1"),
        (["zoo.members.mlp.name=x"], r"zoo\.members is a list of 2 items; address an item"),
        (["seed.x=1"], r"--set seed\.x: seed is 3, not a mapping or list; set seed whole"),
        (["folds.n"], r"--set 'folds\.n': write KEY=VALUE"),
        (["=3"], r"--set '=3': write KEY=VALUE"),
        (["zoo.k=[1"], r"--set zoo\.k: the value '\[1' is not YAML"),
        (["clean.method=guess"], r"clean\.method: unknown method 'guess'; known: "),
        (["clean.rules.drop_fraction=2"], r"clean\.rules: drop_fraction is 2; pass a number in"),
        (["clean.rounds=0"], r"clean\.rounds: Input should be greater than or equal to 1"),
        (["clean.patience=0"], r"clean\.patience: Input should be greater than or equal to 1"),
        (["ensemble.blends=[best]"], r"ensemble\.blends: unknown blend 'best'; known: mean, "),
        (["ensemble.stacker.leaves=3"], r"ensemble\.stacker\.leaves: unknown field; did you mean"),
        (["ensemble.stacker.seed=3"], r"ensemble\.stacker\.seed: .*the recipe's seed sets it"),
        (["ensemble.stacker.rounds=0"], r"ensemble\.stacker: stacker rounds is 0; it must be >= 1"),
        (["ensemble.members=[lgbm]"], r"ensemble\.members: 'lgbm' is not a zoo member; the zoo "),
        (["distill.students=[{name: mlp}]"], r"distill: the teacher comes from the ensemble stage"),
        (["data.valid_fraction=0.7"], r"data\.valid_fraction is 0\.7; use a share in \[0\.01, "),
        (
            ["ensemble.blends=[mean]", "distill.final={name: mlp}", "distill.teacher=greedy"],
            r"distill\.teacher: 'greedy' is not made by the ensemble; use one of: best, mean",
        ),
        (["ensemble.blends=[mean]", "distill.lam=2"], r"distill\.lam: 2 is outside \[0, 1\]"),
        (
            ["ensemble.blends=[mean]", "distill.family=true", "distill.final={name: dbof}"],
            r"distill\.family: student 'dbof' has no family in the zoo \(its models: logistic, mlp",
        ),
        (
            ["ensemble.blends=[mean]", "distill.final={name: mlp, hparams: {x: 1}}"],
            r"distill\.final\[0\]\.hparams\.x: model 'mlp' takes no such hyper-parameter",
        ),
        (["ensemble.blends=[mean]", "distill.teacher=best"], r"distill: no students and no final"),
        (
            ["ensemble.blends=[mean]", "distill.final={name: mlp}", "distill.frame_views=1.0"],
            r"distill\.frame_views: Input should be less than 1",
        ),
        (
            ["ensemble.blends=[mean]", "distill.final={name: mlp}", "distill.frame_views=0"],
            r"distill\.frame_views: Input should be greater than 0",
        ),
        (
            [
                "ensemble.blends=[mean]",
                "distill.final={name: mlp}",
                "distill.unlabeled={soft: false}",
            ],
            r"distill\.unlabeled: hard targets \(soft: false\) need a threshold; give one",
        ),
        (
            ["ensemble.blends=[mean]", "distill.final={name: mlp}", "distill.unlabeled.t1=3"],
            r"distill\.unlabeled: t2 is 0\.0 < t1 3\.0; .* use t1 <= t2",
        ),
        (
            [
                "ensemble.blends=[mean]",
                "distill.final={name: mlp}",
                "data.synth.unlabeled_videos=0",
                "distill.unlabeled.max_rows=10",
            ],
            r"distill\.unlabeled: the data has no unlabeled split; give data\.store\.unlabeled",
        ),
    ],
)
def test_bad_recipe_or_override_is_one_line(
    tmp_path: Path, overrides: list[str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message) as err:
        load_recipe(write(tmp_path, RECIPE), overrides)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("data: [", r"invalid YAML at line \d+; fix its syntax"),
        ("seed: 1\nzoo: {}\nseed: 2\n", r"key 'seed' is given twice \(line 1 and line 3\)"),
        ("zoo: {k: 3, k: 4}\n", r"recipe\.yaml: key 'k' is given twice \(line 1 and line 1\)"),
        ("- a\n", r"holds list; write a mapping with data: and zoo:"),
        ("data: {synth: {kind: yt8m-like}}\n", r"zoo: Field required; fix the recipe"),
    ],
)
def test_bad_recipe_file(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_recipe(write(tmp_path, text))


def test_missing_recipe_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"none\.yaml: cannot be read \(No such file"):
        load_recipe(tmp_path / "none.yaml")


def test_one_validation_split_at_most(tmp_path: Path) -> None:
    data = {"store": {"train": str(tmp_path / "t"), "valid": str(tmp_path / "v")}}
    load_recipe(write(tmp_path, {**RECIPE, "data": data}))
    with pytest.raises(ConfigError, match=r"both valid_fraction and store\.valid give a valid"):
        load_recipe(write(tmp_path, {**RECIPE, "data": {**data, "valid_fraction": 0.1}}))
