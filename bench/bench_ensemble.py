"""Issue 6's ordering on a trained zoo: best single < mean blend < weighted blend < stacker, and
distilled students, scored on test labels (the generator's clean ones on yt8m-like).

Works on a zoo trained out-of-fold by `webly.train.oof.fit_oof` (trained here when missing, with
the same call; a second run resumes):

* ``--data yt8m-like``: the frame-level benchmark and ``bench/zoo-quality.yaml`` in the layout
  of ``bench_zoo_quality.py --out OUT`` (``OUT/yt8m-like/{train,test}``, ``OUT/zoo``);
* ``--data real``: the YouTube-8M sample in ``../shared/data/yt8m-2018-validate`` (files
  0000-0019 train, 0020-0029 test, real labels) and ``bench/zoo-real.yaml`` (``OUT/train``,
  ``OUT/test``, ``OUT/zoo``).

Second level, all fitted on the members' out-of-fold predictions against the given (noisy)
training labels: the mean blend, random-search weights, Caruana selection, the LightGBM
stacker over candidate classes (K-fold on the zoo's folds). Distillation, with the stacker's
out-of-fold predictions as soft labels (``lam`` 0.5): the ``--student`` member trained
out-of-fold like the zoo (beside the same member on labels alone), and the final single model,
the same architecture trained once on every row (beside its twin trained on labels alone).
With ``--unlabeled N`` (yt8m-like only), the final model once more, also taught the stacker's
predictions of N unlabeled videos of the same generator (`webly.distill.unlabeled`), and with
``--unlabeled-students`` the 3-fold student too.
Run:

    .venv/bin/python bench/bench_ensemble.py --out /tmp/quality-cpu [--data real --out DIR]
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from webly.core import TopK
from webly.data import Dataset
from webly.data.synth import YT8MLikeConfig, synth_yt8m_like
from webly.data.yt8m import import_yt8m
from webly.distill.soft_labels import soft_targets
from webly.distill.unlabeled import teach_unlabeled
from webly.ensemble.blend import fit_blend
from webly.ensemble.members import open_members, zoo_members
from webly.ensemble.stack import Stacker, StackerConfig, fit_stacker
from webly.metrics.evaluate import task_metric
from webly.train.oof import fit_full, fit_oof, predict_zoo
from webly.train.zoo import Zoo, load_zoo, parse_zoo

BENCH = Path(__file__).parent
REAL = BENCH.resolve().parents[1] / "shared" / "data" / "yt8m-2018-validate"
ZOOS = {"yt8m-like": BENCH / "zoo-quality.yaml", "real": BENCH / "zoo-real.yaml"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", choices=tuple(ZOOS), default="yt8m-like")
    parser.add_argument("--out", type=Path, required=True, help="data, zoo and students here")
    parser.add_argument("--zoo", type=Path, help="zoo file (default: by --data)")
    parser.add_argument("--student", default="dbof_cg15", help="zoo member id to distil into")
    parser.add_argument("--lam", type=float, default=0.5, help="weight of the label loss")
    parser.add_argument("--rounds", type=int, default=300, help="stacker boosting rounds")
    parser.add_argument("--members", help="comma-separated member ids the second level uses "
                        "(default: every member; the others are still listed)")  # fmt: skip
    parser.add_argument("--unlabeled", type=int, default=0, help="unlabeled videos to distil on")
    parser.add_argument("--unlabeled-students", action="store_true",
                        help="with --unlabeled: the 3-fold student on them too (slow)")  # fmt: skip
    parser.add_argument("--unlabeled-train", type=yaml.safe_load, default={},
                        help="with --unlabeled: training settings of those students, e.g. "
                        "'{epochs: 10, batch_size: 32}' (a batch carries its share of the "
                        "unlabeled rows: smaller batches, more steps)")  # fmt: skip
    args = parser.parse_args()
    if args.unlabeled and args.data != "yt8m-like":
        parser.error("--unlabeled: only the generated yt8m-like data has unlabeled videos")
    print(f"`{shlex.join(['.venv/bin/python', *sys.argv])}`\n")
    train, test = load_data(args)
    zoo = load_zoo(args.zoo or ZOOS[args.data])
    folds = train.folds(zoo.folds, zoo.seed)
    started = time.perf_counter()
    fit_oof(zoo, train, test, args.out / "zoo", folds)
    names = [m.member_id for m in zoo.members]
    chosen_ids = args.members.split(",") if args.members else names
    unknown = sorted(set(chosen_ids) - set(names))
    if unknown:
        parser.error(f"--members: {', '.join(unknown)} not in the zoo ({', '.join(names)})")
    everyone = open_members(zoo_members(args.out / "zoo", names), ("oof", "test"))
    members = everyone.select(chosen_ids)
    # second-level students of a member subset go to their own folders
    second = args.out if not args.members else args.out / f"members-{len(chosen_ids)}"
    truth = test.clean_labels if test.clean_labels is not None else test.labels
    task = train.task
    print(
        f"{args.data}: {len(train):,} train rows ({zoo.folds} folds), {len(test):,} test rows "
        f"({'clean' if test.clean_labels is not None else 'given'} labels), "
        f"{train.n_classes:,} classes, {len(members)} members; zoo ready in "
        f"{time.perf_counter() - started:.0f} s\n"
    )

    rows: list[dict[str, Any]] = []
    for name, store in zip(everyone.names, everyone.stores, strict=True):
        figures = store.fold_metrics["test"]
        rows.append({"model": name, "gap": figures["metric"], "bce": figures["loss"]})
    best = max((r for r in rows if r["model"] in chosen_ids), key=lambda r: r["gap"])
    oof, test_topk = members.topk("oof"), members.topk("test")
    blends = {}
    for method in ("mean", "weighted", "greedy"):
        begin = time.perf_counter()
        blend = fit_blend(method, oof, train.labels, task, members.names)
        blends[method] = blend
        gap = task_metric(blend.apply(test_topk), truth, task, 20)
        rows.append({"model": f"blend: {method}", "gap": gap, "s": time.perf_counter() - begin})
    begin = time.perf_counter()
    config = StackerConfig(rounds=args.rounds, seed=zoo.seed)
    stacked = fit_stacker(members, train.labels, folds, task, config)
    assert stacked.test is not None
    stacker_gap = task_metric(stacked.test, truth, task, 20)
    rows.append({"model": "stacker (LightGBM)", "gap": stacker_gap,
                 "s": time.perf_counter() - begin})  # fmt: skip

    teacher = soft_targets(stacked.oof, train.n_classes, task)
    (spec,) = [m for m in zoo.members if m.member_id == args.student]
    student = {**spec.model_dump(exclude_none=True), "id": f"{args.student}_student"}
    shared = {"folds": zoo.folds, "seed": zoo.seed, "k": zoo.k,
              "train": {**zoo.train, "distill_lam": args.lam}}  # fmt: skip
    students = parse_zoo({**shared, "members": [student]})
    for kind, result in (
        ("student (3-fold, soft labels)", fit_oof(students, train, test, second / "students",
                                                 folds, teacher)),
        ("final (every row, soft labels)", fit_full(students, train, test, second / "final",
                                                   teacher)),
        ("final twin (every row, labels)", fit_full(
            parse_zoo({**shared, "members": [{**student, "id": f"{args.student}_labels"}]}),
            train, test, second / "final", None)),
    ):  # fmt: skip
        (member,) = result.members
        rows.append({"model": f"{kind}: {args.student}", "gap": member.test_metric,
                     "bce": member.test_loss, "s": member.seconds})  # fmt: skip
    if args.unlabeled:
        unlabeled = unlabeled_split(args)
        teacher_u = unlabeled_teacher(args, zoo, train, unlabeled, stacked.stacker)
        taught = teach_unlabeled(teacher_u, unlabeled, np.arange(len(unlabeled)))
        settings = "".join(f"_{key}{value}" for key, value in args.unlabeled_train.items())
        student = {**student, "train": {**student.get("train", {}), **args.unlabeled_train}}
        kind = f"final (every row + {len(unlabeled):,} unlabeled{settings}, soft labels)"
        twin = {**student, "id": f"{args.student}_u{len(unlabeled)}_lam{args.lam}{settings}"}
        (final_u,) = fit_full(parse_zoo({**shared, "members": [twin]}), train, test,
                              second / "final-u", teacher, pseudo=taught).members  # fmt: skip
        rows.append({"model": f"{kind}: {args.student}", "gap": final_u.test_metric,
                     "bce": final_u.test_loss, "s": final_u.seconds})  # fmt: skip
        if args.unlabeled_students:
            kind = f"student (3-fold + {len(unlabeled):,} unlabeled{settings}, soft labels)"
            name = f"{args.student}_student_u{len(unlabeled)}_lam{args.lam}{settings}"
            twin = {**student, "id": name}
            (student_u,) = fit_oof(parse_zoo({**shared, "members": [twin]}), train, test,
                                   second / "students-u", folds, teacher,
                                   pseudo=taught).members  # fmt: skip
            rows.append({"model": f"{kind}: {args.student}", "gap": student_u.test_metric,
                         "bce": student_u.test_loss, "s": student_u.seconds})  # fmt: skip

    chosen = {n for n, w in zip(blends["greedy"].names, blends["greedy"].weights, strict=True)
              if w > 0}  # fmt: skip
    print("| model | GAP@20 | BCE | in ensemble (greedy) | seconds |")
    print("|---|---:|---:|---|---:|")
    for row in rows:
        bce = f"{row['bce']:.4f}" if row.get("bce") is not None else ""
        chosen_mark = "yes" if row["model"] in chosen else ("no" if row["model"] in names else "")
        seconds = f"{row['s']:.0f}" if "s" in row else ""
        print(f"| {row['model']} | {row['gap']:.4f} | {bce} | {chosen_mark} | {seconds} |")
    figures = {row["model"]: row["gap"] for row in rows}
    logistic = figures.get("logistic")
    print(
        f"\n- best single {best['model']} {best['gap']:.4f} < mean {figures['blend: mean']:.4f}"
        f" < weighted {figures['blend: weighted']:.4f} < stacker {stacker_gap:.4f}: "
        f"{best['gap'] < figures['blend: mean'] < figures['blend: weighted'] < stacker_gap}"
    )
    print(f"- stacker - best single: {stacker_gap - best['gap']:+.4f}")
    zoo_twin = figures[args.student]
    distilled = figures[f"student (3-fold, soft labels): {args.student}"]
    print(f"- student on soft labels - same member on labels: {distilled - zoo_twin:+.4f}")
    for name in [row["model"] for row in rows if row["model"].startswith("student (3-fold +")]:
        print(f"- {name} - same member on labels: {figures[name] - zoo_twin:+.4f}")
    finals = [row["model"] for row in rows if row["model"].startswith("final (every row")]
    for name in finals:
        if logistic is None:
            break
        kept = (figures[name] - logistic) / (stacker_gap - logistic)
        print(f"- {name} keeps {kept:.1%} of the stacker's GAP above logistic "
              f"({figures[name]:.4f} vs {stacker_gap:.4f}, logistic {logistic:.4f})")  # fmt: skip
    stacker_weights = ", ".join(
        f"{n} {w:.2f}" for n, w in zip(blends["weighted"].names, blends["weighted"].weights,
                                       strict=True) if w >= 0.01
    )  # fmt: skip
    print(f"- weighted blend: {stacker_weights}")
    print(
        f"- stacker fold metrics: {[round(f['metric'], 4) for f in stacked.fold_metrics]}, "
        f"seconds {dict((k, round(v, 1)) for k, v in stacked.seconds.items())}"
    )


def unlabeled_teacher(
    args: argparse.Namespace, zoo: Zoo, train: Dataset, unlabeled: Dataset, stacker: Stacker
) -> TopK:
    """The stacker's predictions of the unlabeled videos, kept in ``OUT/yt8m-like-u`` (a
    second run reuses them, so its students find the targets they were trained on: inference
    is not bit-stable across thread counts). Delete the file when the zoo changes."""
    subset = f"-members-{len(stacker.members)}" if args.members else ""
    kept = args.out / "yt8m-like-u" / f"stacker-teacher-{len(unlabeled)}{subset}.npz"
    if not kept.is_file():
        begin = time.perf_counter()
        predicted = predict_zoo(zoo, train, unlabeled, args.out / "zoo")
        top = stacker.predict_topk([predicted[name] for name in stacker.members])
        np.savez(kept.with_suffix(".tmp.npz"), indices=top.indices, scores=top.scores)
        kept.with_suffix(".tmp.npz").replace(kept)
        print(f"stacker's predictions of {len(unlabeled):,} unlabeled videos: "
              f"{time.perf_counter() - begin:.0f} s\n")  # fmt: skip
    with np.load(kept) as saved:
        return TopK(saved["indices"], saved["scores"])


def unlabeled_split(args: argparse.Namespace) -> Dataset:
    """``args.unlabeled`` videos of the yt8m-like generator's unlabeled split (the train and
    test splits written beside them are the same videos as ``load_data``'s)."""
    data = args.out / "yt8m-like-u"
    manifest = data / "unlabeled" / "manifest.json"
    if not manifest.is_file() or len(Dataset.open(data / "unlabeled")) != args.unlabeled:
        config = YT8MLikeConfig(
            videos=4000, classes=200, max_frames=60, unlabeled_videos=args.unlabeled
        )
        synth_yt8m_like(data, config, overwrite=True)
    return Dataset.open(data / "unlabeled")


def load_data(args: argparse.Namespace) -> tuple[Dataset, Dataset]:
    """The train and test stores under ``args.out``, generated or imported when missing."""
    if args.data == "yt8m-like":
        data = args.out / "yt8m-like"
        if not (data / "test" / "manifest.json").is_file():
            config = YT8MLikeConfig(videos=4000, classes=200, max_frames=60, unlabeled_videos=0)
            synth_yt8m_like(data, config, overwrite=True)
        return Dataset.open(data / "train"), Dataset.open(data / "test")
    patterns = {"train": "validate00[01]?.tfrecord", "test": "validate002?.tfrecord"}
    for split, pattern in patterns.items():
        if not (args.out / split / "manifest.json").is_file():
            import_yt8m(str(REAL / pattern), args.out / split, "video")
    return Dataset.open(args.out / "train"), Dataset.open(args.out / "test")


if __name__ == "__main__":
    main()
