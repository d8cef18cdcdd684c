"""Exporting what a run chose, whole: an ensemble export (members' fold graphs and the blend or
the stacker) that `load_exported`, ``webly predict`` and ``webly serve`` run, predicting the
run's own test figures; every shipped file counted and checked; broken folders refused in one
line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import webly.compress.budget as budget_module
from tests.compress.conftest import RUN_RECIPE, finished_run
from tests.deploy.test_commands import assert_user_error, webly
from tests.deploy.test_serve import Server, post
from webly.compress.budget import Candidate, choose_under_budget
from webly.compress.choice import export_candidate, export_choice
from webly.core import TopK
from webly.data import Dataset
from webly.deploy.exported import (
    MANIFEST,
    ExportedEnsemble,
    ExportedModel,
    ExportedTrees,
    load_exported,
    shipped_bytes,
)
from webly.deploy.inputs import store_batches
from webly.deploy.serve import Limits
from webly.ensemble.blend import Blend
from webly.ensemble.members import open_members
from webly.ensemble.stack import Stacker
from webly.errors import ConfigError, DataError
from webly.io import read_submission
from webly.metrics.evaluate import task_metric
from webly.predictions import Predictions
from webly.rundir import RunDir

MIXED_RECIPE: dict[str, Any] = {
    **RUN_RECIPE,
    "zoo": {
        **RUN_RECIPE["zoo"],
        "members": [
            {"name": "logistic"},  # video level: mean_rgb + mean_audio
            {"name": "dbof", "hparams": {"cluster_size": 16, "hidden": 16}},  # rgb/audio frames
            {"name": "mlp", "hparams": {"hidden": [8]}},
            # LightGBM over the video-level groups: shipped as LightGBM's own files
            {"name": "lgbm", "hparams": {"n_estimators": 5, "min_child_samples": 5}},
        ],
    },
}
MIXED_RECIPE.pop("distill")


@pytest.fixture(scope="session")
def mixed_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished run whose zoo reads both levels of one frame-level store."""
    return finished_run(tmp_path_factory, MIXED_RECIPE, "mixed")


def candidates(run: Path) -> dict[str, Candidate]:
    weighed = choose_under_budget(run, "1GB", measure_latency=False)
    return {c.name: c for c in weighed.candidates}


def scores_of(model: ExportedModel, store: Dataset) -> np.ndarray:
    (batch,) = store_batches(store, model.features, len(store))
    return model.predict(batch.groups, batch.lengths)


def dense(top: TopK, n_classes: int) -> np.ndarray:
    out = np.zeros((top.n_samples, n_classes), np.float32)
    rows, slots = np.nonzero(top.indices >= 0)
    out[rows, top.indices[rows, slots]] = top.scores[rows, slots]
    return out


def assert_same_ranking(got: np.ndarray, expected: np.ndarray, atol: float, k: int = 5) -> None:
    """Scores within ``atol`` and the same top-``k`` classes of each row (as sets, so that two
    classes tied within ``atol`` may swap)."""
    np.testing.assert_allclose(got, expected, atol=atol)
    for a, b, row in zip(np.argsort(-got)[:, :k], np.argsort(-expected)[:, :k], got, strict=True):
        differ = set(a) ^ set(b)
        assert not differ or np.ptp(row[list(differ)]) <= 2 * atol


@pytest.mark.slow
def test_the_stacker_of_both_levels_deploys_as_the_run_predicted(
    mixed_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stacker = candidates(mixed_run)["stacker"]
    exported = export_candidate(mixed_run, stacker, tmp_path / "deploy")
    assert isinstance(exported, ExportedEnsemble) and exported.level == "frame"
    assert {(s.name, s.level) for s in exported.features} == {
        ("mean_rgb", "video"), ("mean_audio", "video"), ("rgb", "frame"), ("audio", "frame"),
    }  # fmt: skip
    assert [m.id for m in exported.members] == ["logistic", "dbof", "mlp", "lgbm"]
    assert all(len(m.folds) == 3 for m in exported.members)
    trees = exported.members[3].folds
    assert all(isinstance(fold, ExportedTrees) for fold in trees)
    assert [s.name for s in trees[0].features] == ["mean_rgb", "mean_audio"]
    test = Dataset.open(mixed_run / "data" / "test")
    got = scores_of(exported, test)
    # the run's stacker applied to the run's member stores, and the run's stored predictions
    members = open_members(RunDir(mixed_run).members(), ("oof", "test"))
    fitted = Stacker.load(mixed_run / "ensemble" / "stacker" / "model")
    assert_same_ranking(got, dense(fitted.predict(members, "test"), test.n_classes), 1e-4)
    stored = Predictions.open(mixed_run / "ensemble" / "stacker" / "predictions").test.dense()
    assert_same_ranking(got, stored, 2.5e-4)  # the store keeps float16 scores
    # every file shipped is listed, counted and is what the size accounting adds up
    info = json.loads((tmp_path / "deploy" / MANIFEST).read_text())
    files = {str(p.relative_to(tmp_path / "deploy")) for p in (tmp_path / "deploy").rglob("*")}
    assert {name for name in files if (tmp_path / "deploy" / name).is_file()} == {
        *info["files"],
        MANIFEST,
    }
    listed = sum(entry["bytes"] for entry in info["files"].values())
    assert (
        shipped_bytes(tmp_path / "deploy")
        == listed + (tmp_path / "deploy" / MANIFEST).stat().st_size
    )
    assert info["combine"] == {"stacker": "stacker"} and info["metrics"]["test"] > 0
    assert not any(name.endswith("weights.safetensors") for name in info["files"])
    # webly predict gives the same top classes
    sub = tmp_path / "sub.csv"
    status, _, err = webly(
        capsys, "predict", str(tmp_path / "deploy"), str(test.path), "--out", str(sub),
        "--top-k", "3",
    )  # fmt: skip
    assert status == 0, err
    ids, top = read_submission(sub, None, test.n_classes)
    assert ids == [str(i) for i in test.ids]
    np.testing.assert_allclose(dense(top, test.n_classes), np.where(
        dense(top, test.n_classes) > 0, got, 0), atol=1e-6)  # fmt: skip
    # and so does webly serve, for rows given both levels' groups
    (batch,) = store_batches(test.subset(np.arange(4)), exported.features, 4)
    features = {
        name: [values[i, : batch.lengths[i]].tolist() if values.ndim == 3 else values[i].tolist()
               for i in range(4)]
        for name, values in batch.groups.items()
    }  # fmt: skip
    with Server(exported, Limits(max_wait_ms=5)) as server:
        status, body = post(server.url, {"features": features, "top_k": 3})
    assert status == 200, body
    for row, answer in enumerate(body["predictions"]):
        best = np.argsort(-got[row], kind="stable")[:3]
        np.testing.assert_allclose(answer["scores"], got[row, best], rtol=1e-5)
        assert answer["classes"] == best.tolist()


@pytest.mark.slow
def test_a_stacker_refitted_on_the_members_that_fit_deploys(
    mixed_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A budget the run's stacker is over, but its two best members and a stacker fit: the
    chooser fits one on them and, chosen (forced here: on this tiny run a member scores
    better), writes it beside its choice, and export ships that one."""
    weighed = candidates(mixed_run)
    own = weighed["stacker"].parts["stacker"]
    members = sorted(
        (c for name, c in weighed.items() if name.startswith("member ") and not c.compression),
        key=lambda c: -(c.metric or 0.0),
    )
    budget = own + members[0].size + members[1].size + 2_000
    assert budget < weighed["stacker"].size
    monkeypatch.setattr(
        budget_module, "_choose", lambda found, *_: next(c for c in found if c.refit)
    )
    result = choose_under_budget(mixed_run, budget, tmp_path / "choice", member_methods=(),
                                 measure_latency=False)  # fmt: skip
    refit = result.chosen
    assert refit.name == f"stacker {members[0].members[0]}+{members[1].members[0]}"
    assert refit.size == sum(refit.parts.values()) < weighed["stacker"].size
    assert refit.metric is not None and refit.metric != weighed["stacker"].metric
    assert (tmp_path / "choice" / "stacker" / "manifest.json").is_file()
    exported = export_choice(tmp_path / "choice", tmp_path / "deploy")
    assert [m.id for m in exported.members] == list(refit.members)  # type: ignore[attr-defined]
    test = Dataset.open(mixed_run / "data" / "test")
    top = TopK.from_dense(scores_of(exported, test), 20)
    measured = task_metric(top, test.clean_labels, "multilabel", 20)
    assert measured == pytest.approx(refit.test_metric, abs=2e-3)
    with pytest.raises(ConfigError, match="a stacker fitted by the chooser"):
        export_candidate(mixed_run, refit, tmp_path / "nowhere")


def test_a_blend_deploys_as_the_run_blended(tiny_run: Path, tmp_path: Path) -> None:
    weighed = candidates(tiny_run)
    greedy = weighed["blend greedy"]
    exported = export_candidate(tiny_run, greedy, tmp_path / "deploy")
    test = Dataset.open(tiny_run / "data" / "test")
    blend = Blend.from_json(greedy.blend or {})
    members = open_members({n: RunDir(tiny_run).members()[n] for n in blend.names}, ("oof", "test"))
    expected = dense(blend.apply(members.topk("test")), test.n_classes)
    assert_same_ranking(scores_of(exported, test), expected, 1e-4)
    assert load_exported(tmp_path / "deploy").info["combine"]["blend"] == greedy.blend


@pytest.mark.slow
def test_compressed_members_deploy_as_they_were_scored(tiny_run: Path, tmp_path: Path) -> None:
    weighed = choose_under_budget(tiny_run, "1GB", min_elements=0, measure_latency=False)
    small = next(c for c in weighed.candidates if c.name == "stacker int8_partial")
    exported = export_candidate(tiny_run, small, tmp_path / "deploy")
    test = Dataset.open(tiny_run / "data" / "test")
    top = TopK.from_dense(scores_of(exported, test), 20)
    assert task_metric(top, test.clean_labels, "multilabel", 20) == pytest.approx(
        small.test_metric, abs=2e-3
    )
    full = export_candidate(tiny_run, candidates(tiny_run)["stacker"], tmp_path / "full")
    assert shipped_bytes(exported.folder) < 0.5 * shipped_bytes(full.folder)


@pytest.mark.slow
def test_webly_export_ships_the_choice_and_refuses_what_fits_nothing(
    tiny_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # a run without a compress stage: the most accurate within 1 GB, as its export stage ships
    status, out, err = webly(capsys, "export", str(tiny_run), "--out", str(tmp_path / "best"))
    assert status == 0, err
    shipped = load_exported(tmp_path / "best").info["run"]["candidate"]
    best = choose_under_budget(tiny_run, "1GB", measure_latency=False).chosen.name
    assert shipped == best
    assert f"shipped {best}: the most accurate on validation rows within 1GB" in out
    # what webly compress RUN chose is what export ships from its folder
    status, out, err = webly(capsys, "compress", str(tiny_run), "--set", "measure_latency=false",
                             "--out", str(tmp_path / "choice"))  # fmt: skip
    assert status == 0, err
    status, _, err = webly(
        capsys, "export", str(tmp_path / "choice"), "--out", str(tmp_path / "shipped")
    )
    assert status == 0, err
    shipped = load_exported(tmp_path / "shipped").info
    recorded = json.loads((tmp_path / "choice" / "choice.json").read_text())["name"]
    assert shipped["run"]["candidate"] == recorded
    assert_user_error(
        webly(capsys, "compress", str(tiny_run), "--out", str(tmp_path / "x"), "--set",
              "max_size=1KB"),
        "is below every candidate; the smallest is",
    )  # fmt: skip
    assert_user_error(
        webly(capsys, "compress", str(tiny_run), "--out", str(tmp_path / "x"), "--set",
              "max_latency_ms=0.000001"),
        "runs a row in 1e-06 ms; the fastest is", "raise max_latency_ms",
    )  # fmt: skip
    assert_user_error(
        webly(capsys, "compress", str(tiny_run), "--out", str(tmp_path / "x"), "--set",
              "max_latency_ms=2", "--set", "measure_latency=false"),
        "max latency 2.0 ms: give a positive number of milliseconds a row, with latency measured",
    )  # fmt: skip
    assert_user_error(
        webly(capsys, "export", str(tiny_run), "--out", str(tmp_path / "x"), "--metric", "a=1"),
        "--metric records figures of a network",
    )
    assert not (tmp_path / "x").exists()


def test_a_broken_ensemble_folder_is_refused_in_one_line(
    tiny_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    export_candidate(tiny_run, candidates(tiny_run)["stacker"], tmp_path / "deploy")
    test = Dataset.open(tiny_run / "data" / "test")
    missing = shutil.copytree(tmp_path / "deploy", tmp_path / "missing")
    (missing / "members" / "mlp" / "fold-1" / "model.onnx").unlink()
    with pytest.raises(DataError, match=r"fold-1/model.onnx: no file, model.json records"):
        load_exported(missing)
    assert_user_error(
        webly(capsys, "predict", str(missing), str(test.path), "--out", str(tmp_path / "p.csv")),
        "model.onnx: no file",
    )
    assert_user_error(webly(capsys, "serve", str(missing)), "model.onnx: no file")
    other = shutil.copytree(tmp_path / "deploy", tmp_path / "other")
    info = json.loads((other / MANIFEST).read_text())
    info["members"] = [m for m in info["members"] if m["id"] != "mlp"]
    (other / MANIFEST).write_text(json.dumps(info))
    with pytest.raises(
        DataError, match=r"the stacker was fitted on logistic, mlp .* ships logistic"
    ):
        load_exported(other)
    assert_user_error(
        webly(capsys, "predict", str(other), str(test.path), "--out", str(tmp_path / "p.csv")),
        "the stacker was fitted on logistic, mlp",
    )
    assert not (tmp_path / "p.csv").exists()
