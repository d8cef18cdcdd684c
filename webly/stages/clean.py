"""The ``clean`` stage: noisy labels found from the zoo's out-of-fold predictions, repaired, and
the zoo trained again on the repaired labels (`webly.clean.iterate.clean_iteratively`).

``RUN/clean/round-<r>/`` holds round r's zoo, `NoiseReport` and table row; round 0 is the zoo
stage's own zoo (``round-0/zoo`` links to ``RUN/zoo``: its members are found finished, not
trained again). The members of the round with the best validation metric (out-of-fold, against
the store's labels; round 0 when cleaning did not help) are what the ensemble stage combines.

Methods that judge rows by data rather than predictions take it from the training store, as a
recipe cannot write it: ``cluster`` its video-level features, ``semantic`` its text column and
class descriptions (`store_inputs`).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from webly.clean._registry import method_entry
from webly.clean.actions import ActionRules
from webly.clean.iterate import REPORT_DIR, ZOO_DIR, clean_iteratively
from webly.config import Recipe
from webly.data.store import MANIFEST, Dataset
from webly.rundir import CleanRecord, FoldsRecord
from webly.stages.context import StageContext, StageResult, splits
from webly.train.oof import STORE_DIR


def clean_config(recipe: Recipe) -> dict[str, Any]:
    section = recipe.clean
    return {"clean": section.model_dump(mode="json") if section else None}


def make_clean(ctx: StageContext) -> StageResult:
    """Clean up to ``clean.rounds`` times; record each round's figures and the stores of the
    best round's zoo."""
    section = ctx.recipe.clean
    if section is None:
        return StageResult(key="not in the recipe")
    train, test = splits(ctx)
    folds = np.load(ctx.need(FoldsRecord).folds)
    first = ctx.folder / "round-0"
    first.mkdir(parents=True, exist_ok=True)
    link = first / ZOO_DIR
    if not link.exists():
        os.symlink(os.path.relpath(ctx.rundir.folder("zoo"), first), link)
    result = clean_iteratively(
        ctx.recipe.zoo, train, test, ctx.folder, rounds=section.rounds, method=section.method,
        rules=ActionRules(**section.rules), folds=folds,
        options={**store_inputs(section.method, section.options, train), **section.options},
        executor=ctx.executor, patience=section.patience,
    )  # fmt: skip
    best = result.rows[result.best]
    zoo_dir = ctx.folder / f"round-{best.round}" / ZOO_DIR
    members = {
        m.member_id: zoo_dir / m.member_id / STORE_DIR
        for m in ctx.recipe.zoo.members
        if (zoo_dir / m.member_id / STORE_DIR / MANIFEST).is_file()
    }
    first_row = result.rows[0]
    key = (
        f"round {best.round} of {len(result.rows) - 1} kept (valid {result.metric} "
        f"{first_row.valid_metric:.4f} -> {best.valid_metric:.4f}): {best.dropped:,} rows "
        f"dropped, {best.relabelled:,} relabelled; noise estimate "
        f"{first_row.noise_estimate:.3f} -> {best.noise_estimate:.3f}"
    )
    if best.test_metric is not None and first_row.test_metric is not None:
        key += f"; test {result.metric} {first_row.test_metric:.4f} -> {best.test_metric:.4f}"
    return StageResult(
        key=key,
        record=CleanRecord(
            members=members,
            # the detection whose actions round ``best`` trained on (round 0: what was found)
            report=ctx.folder / f"round-{max(best.round - 1, 0)}" / REPORT_DIR,
            metric=result.metric,
            rounds=result.table(),
            best=result.best,
        ),
    )


def store_inputs(method: str, given: dict[str, Any], train: Dataset) -> dict[str, Any]:
    """The data inputs of ``method`` that ``given`` lacks, read from ``train``: ``features``
    ``(n_samples, d)`` float32, its video-level groups concatenated; ``texts`` ``(n_samples,)``
    (when the store has a text column); ``class_descriptions`` ``(n_classes,)`` str, the
    manifest's descriptions, else the class names."""
    wanted = method_entry(method).inputs - set(given)
    found: dict[str, Any] = {}
    if "features" in wanted:
        groups = [f.name for f in train.layout.features if f.level == "video"]
        found["features"] = train.features(np.arange(len(train)), groups)
    if "texts" in wanted and train.texts is not None:
        found["texts"] = train.texts
    if "class_descriptions" in wanted:
        found["class_descriptions"] = list(train.layout.class_descriptions or train.class_names)
    return found
