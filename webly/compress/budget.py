"""What to deploy from a run under a size (and latency) budget: the most accurate candidate
that fits, chosen on validation rows, never on the test split.

The YouTube-8M 2018 challenge capped the model at 1 GB; its winners kept their big models by
quantizing them, chose which members to keep by their gain per byte, and shipped small
ensembles whole. `choose_under_budget` weighs every deployable product of a run
(`webly.rundir.RunDir`) against the budgets:

- the final distilled network (``distill.final``; its long-tail-adjusted form when the run has
  a ``longtail`` stage) as it is (``fp32``) and compressed
  (`webly.compress.compress_network`: ``fp16``, partial 8-bit ``int8_partial`` by default),
  each variant predicting the validation rows again, so its figure includes what compression
  cost;
- every member the ensemble combines alone (the clean stage's last round, else the zoo's; a
  member is its fold models' average), and mean blends of subsets of them: subsets from
  `webly.ensemble.budget.select_under_budget` (every subset for up to 12 members, else greedy
  under the budgets), those on its frontier kept;
- the run's other fitted blends (``ensemble.blends`` other than ``mean``) with their members of
  non-zero weight;
- the stacker: its members and its own fold models.

Every candidate is one `webly export` folder (`webly.compress.choice`). A member's fold models
are ONNX graphs there, or, for a LightGBM member, LightGBM's own files; those stay as they are
in the compressed pools (8 bits applies to networks).

**Size** is the bytes of the files that load it: a network's ``model.json`` and weights file,
the stacker's manifest and fold models; an ensemble's adds its members' fold models (stored
float32; the export ships each as an ONNX graph of about the same size).

**Accuracy** is GAP@k (multi-label) or accuracy (multi-class), the metric of the run's evaluate
stage, measured on **validation rows carved from training**, against their labels as given.
When the run has a validation split carved before the zoo (``data.valid_fraction``), every
candidate predicts it whole, as it would the test split: no model of the run trained on those
rows, so a distilled final network is scored there beside the ensembles. Otherwise they are
the rows the final network's `fit` held out (``held_out.npy``, `held_out_rows`), which it
never trained on, where the other candidates are scored by their out-of-fold predictions; every
training row out of fold when the run has no such network, or when the final learned a
teacher's predictions (its held-out rows flatter it, `_taught`): the final then has no
validation figure and is not chosen. The test split, when the run has test labels, is only
reported (``test_metric``).

**Latency** (``measure_latency``) is milliseconds a row with ONNX Runtime on this machine
(`webly.deploy.latency`): each fold model of each member and each final variant exported and
timed on a batch of validation rows, the stacker timed on its members' predictions of them; an
ensemble's is the sum of its parts.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp

from webly._fs import OutputKind, atomic_output, write_json
from webly.compress.quantize import MIN_ELEMENTS, REPORT_FILE, compress_network
from webly.core import Task, TopK, select_top_k
from webly.data.store import Dataset
from webly.deploy.latency import LATENCY_ROWS, ms_per_row, network_latency, trees_latency
from webly.ensemble.blend import Blend, fit_blend
from webly.ensemble.budget import BudgetPoint, pareto_frontier
from webly.ensemble.budget import select_under_budget as select_subsets
from webly.ensemble.fit import STACKER
from webly.ensemble.members import open_members
from webly.ensemble.stack import Stacker, fit_stacker
from webly.ensemble.tta import scores_topk
from webly.errors import ConfigError, DataError
from webly.metrics.evaluate import task_metric
from webly.models.gbdt import CONFIG_FILE as LGBM_FILE
from webly.models.network import CONFIG_FILE, WEIGHTS_FILE
from webly.models.quantized import QUANTIZED_FILE, Method, open_network
from webly.predictions import Predictions, float16_topk, write_predictions
from webly.rundir import DataRecord, DistillRecord, EnsembleRecord, FoldsRecord, RunDir
from webly.sizes import format_size, parse_size
from webly.train.loop import iter_scores
from webly.train.oof import held_out_rows, predict_members

Kind = Literal["final", "ensemble", "stacker"]
CHOICE_FILE, FRONTIER_FILE = "choice.json", "frontier.json"
CHOICE = OutputKind("a webly size-budget choice", CHOICE_FILE)
"""What ``webly compress RUN --out DIR --overwrite`` replaces."""
_WORK = ".candidates"


@dataclass(frozen=True)
class Candidate:
    """One thing the run could deploy.

    Attributes
    ----------
    name : e.g. ``final mlp int8_partial``, ``member dbof``, ``mean dbof+resnet_av``,
        ``blend greedy``, ``stacker``
    kind : ``final`` (one network), ``ensemble`` (a blend of members) or ``stacker``
    size : bytes of the files that load it
    metric : its GAP@k or accuracy on the validation rows (`BudgetResult.scored_on`); None when
        it cannot be scored there
    test_metric : the same on the test split, reported only; None without test labels
    latency_ms : milliseconds a row with ONNX Runtime; None when not measured
    method : the final network's weights, ``fp32``, ``fp16``, ``int8_partial`` or ``kmeans``
    members : the members an ensemble or the stacker runs
    blend : an ensemble's rule (`webly.ensemble.blend.Blend.to_json`: method, names, weights)
    compression : how every fold model of its members is compressed (``int8_partial``, ...);
        None for their stored float32 weights
    min_elements : with ``compression``, only tensors with more elements are compressed
    refit : a stacker the chooser fitted on these members to fit the budgets (its fold models
        are written to the choice folder's ``stacker/``), not the run's
    parts : bytes of each component: ``member:<id>``, ``stacker`` (its own models), ``network``
    """

    name: str
    kind: Kind
    size: int
    metric: float | None
    test_metric: float | None = None
    latency_ms: float | None = None
    method: str | None = None
    members: tuple[str, ...] = ()
    blend: dict[str, Any] | None = None
    compression: str | None = None
    min_elements: int = MIN_ELEMENTS
    refit: bool = False
    parts: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Candidate:
        """The candidate `to_json` wrote (``choice.json`` holds one)."""
        known = {f.name for f in fields(cls)}
        values = {key: value for key, value in obj.items() if key in known}
        return cls(**values | {"members": tuple(values.get("members", ()))})


@dataclass(frozen=True)
class BudgetResult:
    """What `choose_under_budget` weighed and chose.

    Attributes
    ----------
    run : the run directory
    max_bytes : the size budget
    max_latency_ms : the latency budget (ms a row), None for none
    metric : ``GAP@<k>`` or ``accuracy``
    scored_on : the validation rows the choice was made on, in words
    reported_on : the test split the ``test_metric`` figures are on, in words; None without
    candidates : every candidate, finals first
    frontier : the scored candidates no other is at least as small, as fast and as accurate as
        (with one of them strictly), by ascending size; some may exceed the budgets
    chosen : the most accurate scored candidate within the budgets (ties: the smaller, then the
        one listed first)
    subsets_exact : whether every subset of the members was scored (else greedily chosen ones)
    out : the folder written, None when nothing was
    training_store : the run's training store (what an export of the chosen network reads)
    """

    run: Path
    max_bytes: int
    max_latency_ms: float | None
    metric: str
    scored_on: str
    reported_on: str | None
    candidates: tuple[Candidate, ...]
    frontier: tuple[Candidate, ...]
    chosen: Candidate
    subsets_exact: bool
    out: Path | None
    training_store: Path | None = None

    def to_json(self) -> dict[str, Any]:
        """``frontier.json``: the budgets, metric, the choice, the frontier and every candidate."""
        return {
            "run": str(self.run),
            "max_bytes": self.max_bytes,
            "max_latency_ms": self.max_latency_ms,
            "metric": self.metric,
            "scored_on": self.scored_on,
            "reported_on": self.reported_on,
            "subsets_exact": self.subsets_exact,
            "chosen": self.chosen.name,
            "frontier": [c.to_json() for c in self.frontier],
            "candidates": [c.to_json() for c in self.candidates],
        }

    def table(self) -> list[dict[str, str]]:
        """The frontier as table rows: candidate, kind, size, bytes, the validation metric, the
        test figure, ms a row, fits, chosen."""
        rows = []
        for c in self.frontier:
            row = {
                "candidate": c.name,
                "kind": c.kind,
                "size": format_size(c.size),
                "bytes": f"{c.size:,}",
                f"{self.metric} (validation)": _figure(c.metric),
            }
            if self.reported_on is not None:
                row[f"{self.metric} (test)"] = _figure(c.test_metric)
            row["ms/row"] = f"{c.latency_ms:.3f}" if c.latency_ms is not None else ""
            row["fits"] = "yes" if self._fits(c) else "no"
            row["chosen"] = "<-" if c is self.chosen else ""
            rows.append(row)
        return rows

    def _fits(self, c: Candidate) -> bool:
        return c.size <= self.max_bytes and (
            self.max_latency_ms is None
            or (c.latency_ms is not None and c.latency_ms <= self.max_latency_ms)
        )

    def __str__(self) -> str:
        c = self.chosen
        line = (
            f"chose {c.name} ({c.kind}): {self.metric} {c.metric:.4f} on {self.scored_on}"
            + (f", {c.test_metric:.4f} on the test split" if c.test_metric is not None else "")
            + f", {format_size(c.size)} within {format_size(self.max_bytes)}"
            + (f", {c.latency_ms:.3f} ms a row" if c.latency_ms is not None else "")
        )
        if self.out is None:
            return line + "; nothing written (no --out given)"
        what = f"the network to {self.out}" if c.kind == "final" else f"the choice to {self.out}"
        return f"{line}; wrote {what} (export it: webly export {self.out} --out EXPORT_DIR)"


def _figure(value: float | None) -> str:
    return f"{value:.4f}" if value is not None else ""


@dataclass(frozen=True)
class _Split:
    """Rows, labels and metric candidates are scored with: ``rows`` (positions in ``store``,
    None for every row) and their ``labels``. ``oof``: rows of the training store, where the
    members and the stacker are scored by their out-of-fold predictions; False for a store of
    its own (the test split, or the validation split carved before the zoo), which every
    candidate predicts whole."""

    store: Dataset
    rows: np.ndarray | None
    labels: sp.csr_matrix
    metric: str
    k: int
    words: str
    oof: bool = True

    @property
    def unseen(self) -> bool:
        """Whether a network trained on every training row never saw these rows."""
        return self.rows is not None or not self.oof

    @property
    def task(self) -> Task:
        return self.store.task

    @property
    def data(self) -> Dataset:
        """The scored rows as a store view."""
        return self.store if self.rows is None else self.store.subset(self.rows)

    def cut(self, topk: TopK) -> TopK:
        """``topk`` of every row of ``store`` restricted to the scored rows."""
        if self.rows is None:
            return topk
        return TopK(topk.indices[self.rows], topk.scores[self.rows])

    def score(self, topk: TopK) -> float:
        """The metric of ``topk``, one row per scored row."""
        return task_metric(topk, self.labels, self.task, self.k)


def choose_under_budget(
    run: str | Path | RunDir,
    max_bytes: int | str,
    out: str | Path | None = None,
    *,
    max_latency_ms: float | None = None,
    measure_latency: bool = True,
    methods: Sequence[Method] = ("fp16", "int8_partial"),
    member_methods: Sequence[Method] = ("int8_partial",),
    min_elements: int = MIN_ELEMENTS,
    batch_size: int = 1024,
    overwrite: bool = False,
) -> BudgetResult:
    """Choose, among a run's deployable candidates, the most accurate on validation rows within
    ``max_bytes`` (and ``max_latency_ms``).

    Parameters
    ----------
    run : a run directory (``webly run RECIPE --out RUN``) whose evaluate stage finished
    max_bytes : the budget, bytes or a size string such as ``"1GB"`` (`parse_size`)
    out : folder to write (built in a temporary folder and renamed into place; nothing is left
        there on error); None writes nothing. It gets ``frontier.json`` (`BudgetResult.to_json`)
        and ``choice.json`` (the chosen candidate and the run); for a final network, also the
        network folder's files (``model.json`` and its weights, plus ``compression.json`` for a
        compressed one). ``webly export FOLDER`` exports the choice.
    max_latency_ms : the most milliseconds a row a candidate may take (`measure_latency` must
        be on); None for no limit
    measure_latency : time every candidate with ONNX Runtime (see the module docstring)
    methods : compressions of the final network weighed beside its float32 weights
    member_methods : compressions of every member's fold models weighed beside their float32
        weights (each a pool of members the subsets, blends and stacker are weighed over)
    min_elements : only tensors with more elements are compressed (`compress_network`)
    batch_size : rows a forward pass when compressed networks are scored
    overwrite : replace an existing ``out``

    Returns
    -------
    BudgetResult

    Raises
    ------
    ConfigError
        When the size budget is below every candidate (naming the smallest), the latency budget
        below every candidate within it (naming the fastest), or only candidates without a
        validation figure fit.
    """
    rundir = RunDir.of(run)
    run = rundir.root
    budget = parse_size(max_bytes)
    if max_latency_ms is not None and not (max_latency_ms > 0 and measure_latency):
        raise ConfigError(
            f"max latency {max_latency_ms!r} ms: give a positive number of milliseconds a row, "
            "with latency measured"
        )
    if not rundir.is_run():
        raise DataError(
            f"{run} is not a run directory (no recipe.yaml made by webly run); make one with "
            "webly run RECIPE --out RUN, or compress one network with webly quantize "
            "NETWORK_DIR --out DIR"
        )
    valid, test = _splits(rundir)
    train = Dataset.open(rundir.need(DataRecord).train)
    with contextlib.ExitStack() as stack:
        if out is None:
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        else:
            folder = stack.enter_context(
                atomic_output(out, overwrite=overwrite, kind=CHOICE, hosts=[run])
            )
        work = folder / _WORK
        timing = _Timing(valid, work) if measure_latency else None
        finals = _final_candidates(
            rundir, valid, test, methods, min_elements, batch_size, work, timing
        )
        ensembles, exact = _ensemble_candidates(
            rundir, train, valid, test, (budget, max_latency_ms), member_methods, min_elements,
            batch_size, work, timing,
        )  # fmt: skip
        candidates = [c for c, _ in finals] + ensembles
        chosen = _choose(candidates, budget, max_latency_ms, valid)
        scored = [c for c in candidates if c.metric is not None]
        points = [
            BudgetPoint(c.size, c.latency_ms or 0.0, c.metric or 0.0, (str(i),))
            for i, c in enumerate(scored)
        ]
        frontier = tuple(scored[int(p.members[0])] for p in pareto_frontier(points))
        result = BudgetResult(
            run, budget, max_latency_ms, valid.metric, valid.words,
            test.words if test is not None else None, tuple(candidates), frontier, chosen,
            exact, Path(out) if out is not None else None, rundir.need(DataRecord).train,
        )  # fmt: skip
        if out is not None:
            source = next((f for c, f in finals if c is chosen), None)
            if source is not None:
                for name in (CONFIG_FILE, WEIGHTS_FILE, QUANTIZED_FILE, REPORT_FILE, LGBM_FILE):
                    if (source / name).is_file():
                        shutil.copyfile(source / name, folder / name)
            if chosen.refit:
                shutil.copytree(work / "stackers" / (chosen.compression or "fp32") / "model",
                                folder / STACKER)  # fmt: skip
            choice = {
                "metric_name": valid.metric,
                "scored_on": valid.words,
                "run": str(run.resolve()),
            }
            write_json(folder / CHOICE_FILE, choice | chosen.to_json())
            write_json(folder / FRONTIER_FILE, result.to_json())
        shutil.rmtree(work, ignore_errors=True)
    return result


def read_choice(folder: str | Path) -> tuple[Path, Candidate]:
    """The run and the candidate a `choose_under_budget` folder records (``choice.json``)."""
    path = Path(folder) / CHOICE_FILE
    try:
        recorded = json.loads(path.read_text())
        return Path(recorded["run"]), Candidate.from_json(recorded)
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise DataError(
            f"{path}: not a readable choice ({err}); choose again with webly compress RUN "
            "--out FOLDER"
        ) from None


def _splits(run: RunDir) -> tuple[_Split, _Split | None]:
    """The validation rows candidates are chosen on, and the test split they are reported on
    (None when the run's figures are not on test labels)."""
    results = run.results()
    if results is None:
        raise DataError(
            f"{run.root}: the evaluate stage has not finished; finish the run (webly run RECIPE "
            f"--out {run.root}) before weighing its models"
        )
    found = re.fullmatch(r"GAP@(\d+)", results["metric"])
    metric, k = results["metric"], int(found.group(1)) if found else 1
    data = run.need(DataRecord)
    train_path = data.train
    train = Dataset.open(train_path)
    if train.labels is None:
        raise DataError(f"{train_path}: no labels to choose a candidate on; import them")
    rows = _final_held_out(run) if data.valid is None else None
    if data.valid is not None:
        store = Dataset.open(data.valid)
        words = (
            f"the validation split carved before the zoo (no model trained on it), given "
            f"labels, {len(store):,} rows"
        )
        valid = _Split(store, None, store.labels, metric, k, words, oof=False)
    elif rows is None:
        words = f"every training row out of fold, given labels, {len(train):,} rows"
        valid = _Split(train, None, train.labels, metric, k, words)
    else:
        words = (
            f"validation rows (held out of the final network's training; the others out of "
            f"fold), given labels, {rows.size:,} rows"
        )
        valid = _Split(train, rows, train.labels[rows], metric, k, words)
    if results["split"] != "test":
        return valid, None
    test_path = data.test
    if test_path is None:
        raise DataError(f"{run.root}: its data stage records no test store; run it again")
    store = Dataset.open(test_path)
    which = results["labels"]
    labels = store.clean_labels if which == "clean" else store.labels
    if labels is None:
        raise DataError(f"{test_path}: no {which} labels, though the run was scored on them")
    words = f"test split, {which} labels, {len(store):,} rows"
    return valid, _Split(store, None, labels, metric, k, words, oof=False)


def _final_held_out(run: RunDir) -> np.ndarray | None:
    """The training rows the run's final network never trained on and that can score it
    against the other candidates; None without them, or when it learned a teacher's
    predictions (`_taught`)."""
    final = run.final()
    if final is None or final.model is None or _taught(run):
        return None
    rows = held_out_rows(final.model)
    return rows if rows is not None and rows.size else None


def _taught(run: RunDir) -> bool:
    """Whether the run's final network learned a teacher's predictions (soft labels or
    pseudo-labelled rows). Its held-out rows then flatter it: its teacher's fold models trained
    on them, and what they learned of their labels reaches the final through the teacher's
    predictions of the other rows (on the yt8m-like benchmark a distilled final scored 0.69 on
    its held-out rows, where the stacker's out-of-fold predictions scored 0.59, and lost to it
    on the test split, 0.85 against 0.92: bench/RESULTS.md). Such a network has no validation
    figure here and is not chosen."""
    distill = run.read(DistillRecord)
    stores = distill.final if distill is not None else {}
    return any(
        bool(model.get("distilled")) or int(model.get("pseudo_rows") or 0) > 0
        for model in (Predictions.open(path).model for path in stores.values())
    )


class _Timing:
    """Latency measurement on the first `LATENCY_ROWS` validation rows, exports in ``work``."""

    def __init__(self, valid: _Split, work: Path) -> None:
        rows = np.arange(len(valid.store)) if valid.rows is None else valid.rows
        self.store = valid.store
        self.rows = rows[:LATENCY_ROWS]
        self.work = work / "latency"

    def network(self, folder: Path, name: str) -> float:
        return network_latency(folder, self.store, self.rows, self.work / name)

    def member(self, store: Path) -> float:
        """Every fold model of the member whose prediction store is ``store``."""
        return sum(
            trees_latency(fold, self.store, self.rows)
            if (fold / LGBM_FILE).is_file()
            else self.network(fold, f"{store.parent.name}-{fold.parent.name}")
            for fold in _fold_models(store)
        )

    def stacker(self, stacker: Stacker, oof: dict[str, TopK]) -> float:
        """The stacker alone, on its members' predictions ``oof`` of the validation rows."""
        n = len(self.rows)
        topks = [TopK(oof[m].indices[:n], oof[m].scores[:n]) for m in stacker.members]
        return ms_per_row(lambda: stacker.predict_topk(topks), n)


def folder_bytes(folder: Path, names: Sequence[str] | None = None) -> int:
    """Bytes of the files directly in ``folder`` (only those named, if ``names``)."""
    files = [folder / n for n in names] if names is not None else list(folder.iterdir())
    return sum(f.stat().st_size for f in files if f.is_file())


def _final_candidates(
    run: RunDir,
    valid: _Split,
    test: _Split | None,
    methods: Sequence[Method],
    min_elements: int,
    batch_size: int,
    work: Path,
    timing: _Timing | None,
) -> list[tuple[Candidate, Path]]:
    """The final network as it is and compressed by each of ``methods``, each with its folder
    (a LightGBM final is not exported to ONNX, so it is not a candidate)."""
    final = run.final()
    if final is None or final.model is None:
        return []
    (final_id,) = final.final
    folder = final.model
    if (folder / LGBM_FILE).is_file():
        return []
    variants: list[tuple[str, Path, tuple[str, str]]] = [
        ("fp32", folder, (CONFIG_FILE, WEIGHTS_FILE))
    ]
    for method in dict.fromkeys(methods):
        compress_network(folder, work / method, method, min_elements=min_elements)
        variants.append((method, work / method, (CONFIG_FILE, QUANTIZED_FILE)))
    found = []
    for weights, path, files in variants:
        size = folder_bytes(path, files)
        candidate = Candidate(
            f"final {final_id} {weights}", "final", size,
            metric=_network_metric(path, valid, batch_size) if valid.unseen else None,
            test_metric=_network_metric(path, test, batch_size) if test is not None else None,
            latency_ms=timing.network(path, f"final-{weights}") if timing is not None else None,
            method=weights, parts={"network": size},
        )  # fmt: skip
        found.append((candidate, path))
    return found


def _network_metric(folder: Path, split: _Split, batch_size: int) -> float:
    """The metric of the (possibly compressed) network in ``folder`` on ``split``."""
    network = open_network(folder)
    groups = list(network.config["input_dims"])
    batches = iter_scores(network, split.data, groups, batch_size)
    return split.score(scores_topk(batches, max(split.k, 1)))


@dataclass(frozen=True)
class _Pool:
    """The members at one precision: ``method`` None for their stored float32 fold models, else
    every fold model compressed by it. ``every``: each member's out-of-fold predictions of
    every training row (each row by the fold model that did not see it), ``oof``: of the
    validation rows (out of fold, or the fold models' mean of a validation store), ``test``: of
    the test split (the fold models' mean; empty without test labels), ``sizes`` in bytes,
    ``costs`` in ms a row (empty when not timed); ``min_elements``: tensors with fewer elements
    stay float32; ``as_stored``: members the method leaves as they are (LightGBM's)."""

    method: str | None
    every: dict[str, TopK]
    oof: dict[str, TopK]
    test: dict[str, TopK]
    sizes: dict[str, int]
    costs: dict[str, float]
    min_elements: int = MIN_ELEMENTS
    as_stored: set[str] = field(default_factory=set)

    @property
    def suffix(self) -> str:
        return f" {self.method}" if self.method else ""


def _ensemble_candidates(
    run: RunDir,
    train: Dataset,
    valid: _Split,
    test: _Split | None,
    budgets: tuple[int, float | None],
    member_methods: Sequence[Method],
    min_elements: int,
    batch_size: int,
    work: Path,
    timing: _Timing | None,
) -> tuple[list[Candidate], bool]:
    """Subsets of the members, the run's other blends and the stacker, over the members as
    stored and compressed by each of ``member_methods``; and whether every subset was scored."""
    paths = run.members()
    if not paths:
        return [], True
    members = open_members(paths, ("oof", "test") if test is not None else ("oof",))
    names = members.names
    every = dict(zip(names, members.topk("oof"), strict=True))
    stored = _Pool(
        None,
        every,
        {n: valid.cut(t) for n, t in every.items()}
        if valid.oof
        else predict_members(paths, train, valid.store),
        dict(zip(names, members.topk("test"), strict=True)) if test is not None else {},
        {name: _member_bytes(paths[name]) for name in names},
        {n: timing.member(paths[n]) for n in names} if timing is not None else {},
    )
    folds = np.load(run.need(FoldsRecord).folds)
    k = {name: store.k for name, store in zip(names, members.stores, strict=True)}
    pools = [stored] + [
        _compressed_pool(
            method,
            stored,
            paths,
            k,
            train,
            valid,
            test,
            folds,
            min_elements,
            batch_size,
            work / f"members-{method}",
            timing,
        )
        for method in dict.fromkeys(member_methods)
    ]
    fitted = _fitted_entries(run, set(paths))
    candidates, exact = [], True
    for pool in pools:
        found, all_scored = _pool_candidates(pool, fitted, valid, test, folds, budgets, timing)
        candidates += found
        exact = exact and all_scored
        if STACKER in fitted:
            stacker = fitted[STACKER].model
            assert isinstance(stacker, Stacker)
            refit = _budget_stacker(
                pool, stacker, fitted[STACKER].own, train, valid, test, folds, budgets,
                work / "stackers", timing,
            )  # fmt: skip
            candidates += [refit] if refit is not None else []
    return candidates, exact


def _budget_stacker(
    pool: _Pool,
    fitted: Stacker,
    own: int,
    train: Dataset,
    valid: _Split,
    test: _Split | None,
    folds: np.ndarray,
    budgets: tuple[int, float | None],
    work: Path,
    timing: _Timing | None,
) -> Candidate | None:
    """A stacker with the run's stacker's settings fitted on the pool's best members that fit
    the budgets beside it: members by their own validation figure, best first, each taken while
    the members so far and the stacker's own files (as many bytes as the run's stacker's) fit.
    It is fitted on the training rows' out-of-fold predictions, and scored by its out-of-fold
    predictions of the validation rows (or its prediction of the validation split). None when
    fewer than two members fit, or all of the run's stacker's do (that stacker is already
    weighed). The fold models are kept in ``work/<pool>/model``."""
    budget, max_latency_ms = budgets
    chosen, size, ms = [], own, 0.0
    for name in sorted(pool.oof, key=lambda n: -valid.score(pool.oof[n])):
        cost = pool.costs.get(name, 0.0)
        if size + pool.sizes[name] <= budget and (
            max_latency_ms is None or ms + cost <= max_latency_ms
        ):
            chosen.append(name)
            size, ms = size + pool.sizes[name], ms + cost
    if len(chosen) < 2 or set(chosen) >= set(fitted.members):
        return None
    folder = work / (pool.method or "fp32")
    stores = {}
    for name in chosen:
        splits = {"oof": pool.every[name]} | ({"test": pool.test[name]} if pool.test else {})
        store = write_predictions(
            folder / "members" / name, splits, n_classes=valid.store.n_classes,
            model={"name": name}, k=pool.every[name].k, overwrite=True,
        )  # fmt: skip
        stores[name] = store.path
    result = fit_stacker(
        open_members(stores, ("oof", "test") if pool.test else ("oof",)), train.labels,
        folds, valid.task, replace(fitted.config, members=None), out_dir=folder / "model",
        overwrite=True,
    )  # fmt: skip
    on_valid = (
        valid.cut(result.oof)
        if valid.oof
        else result.stacker.predict_topk([pool.oof[n] for n in chosen])
    )
    own = folder_bytes(folder / "model")
    parts = {f"member:{n}": pool.sizes[n] for n in chosen} | {"stacker": own}
    latency = None
    if timing is not None:
        latency = sum(pool.costs[n] for n in chosen) + timing.stacker(result.stacker, pool.oof)
    return Candidate(
        f"stacker {'+'.join(chosen)}{pool.suffix}", "stacker", sum(parts.values()),
        valid.score(on_valid),
        test.score(result.test) if test is not None and result.test is not None else None,
        latency, members=tuple(chosen), compression=pool.method,
        min_elements=pool.min_elements, refit=True, parts=parts,
    )  # fmt: skip


@dataclass(frozen=True)
class _Entry:
    """One of the run's fitted ensemble entries: the stacker (``own``: the bytes of its files),
    or a blend with its members of non-zero weight (``options``: its method's fitting options,
    the recipe's ``ensemble.blend_options``)."""

    model: Stacker | Blend
    own: int = 0
    options: dict[str, Any] = field(default_factory=dict)


def _fitted_entries(run: RunDir, members: set[str]) -> dict[str, _Entry]:
    """The run's stacker and its blends other than ``mean``, those whose members are all among
    ``members``."""
    section = run.recipe().ensemble
    ensemble = run.read(EnsembleRecord)
    entries: dict[str, _Entry] = {}
    for entry, path in (ensemble.stores if ensemble is not None else {}).items():
        if entry == STACKER:
            folder = path.parent / "model"
            stacker = Stacker.load(folder)
            if set(stacker.members) <= members:
                entries[entry] = _Entry(stacker, folder_bytes(folder))
        elif entry != "mean":
            blend = Blend.from_json(Predictions.open(path).model["blend"])
            kept = [(n, w) for n, w in zip(blend.names, blend.weights, strict=True) if w > 0]
            if {n for n, _ in kept} <= members:
                used, weights = zip(*kept, strict=True)
                options = dict(section.blend_options.get(entry, {})) if section else {}
                entries[entry] = _Entry(Blend(blend.method, used, weights), options=options)
    return entries


def _pool_candidates(
    pool: _Pool,
    fitted: dict[str, _Entry],
    valid: _Split,
    test: _Split | None,
    folds: np.ndarray,
    budgets: tuple[int, float | None],
    timing: _Timing | None,
) -> tuple[list[Candidate], bool]:
    """The candidates over one pool of members: the frontier of their mean subsets, the run's
    blends and the stacker."""
    names = list(pool.oof)
    budget, max_latency_ms = budgets
    costs = pool.costs
    # budgets no member meets are left to `_choose`, which names the smallest or fastest
    fits = min(pool.sizes.values()) <= budget and (
        max_latency_ms is None or not costs or min(costs.values()) <= max_latency_ms
    )
    choice = select_subsets(
        [pool.oof[n] for n in names], valid.labels, valid.task, names,
        [pool.sizes[n] for n in names], [costs[n] for n in names] if costs else None,
        max_bytes=budget if fits else None, max_cost=max_latency_ms if fits and costs else None,
        metric_k=valid.k,
    )  # fmt: skip

    def candidate(name: str, kind: Kind, used: Sequence[str], score: tuple[float, float | None],
                  blend: Blend | None = None, own: int = 0, own_ms: float = 0.0
                  ) -> Candidate:  # fmt: skip
        parts = {f"member:{n}": pool.sizes[n] for n in used} | ({"stacker": own} if own else {})
        return Candidate(
            name + pool.suffix, kind, sum(parts.values()), score[0], score[1],
            sum(costs[n] for n in used) + own_ms if costs else None, members=tuple(used),
            blend=blend.to_json() if blend is not None else None, compression=pool.method,
            min_elements=pool.min_elements, parts=parts,
        )  # fmt: skip

    def scores(blend: Blend) -> tuple[float, float | None]:
        return (
            valid.score(blend.apply([pool.oof[n] for n in blend.names])),
            test.score(blend.apply([pool.test[n] for n in blend.names])) if test else None,
        )

    found = []
    # every member alone (a leaderboard lists each), then the frontier's mean subsets; a subset
    # the pool's method leaves as stored is the stored pool's candidate already
    subsets = [(n,) for n in names] + [tuple(p.members) for p in choice.frontier]
    for used in dict.fromkeys([*subsets, *((tuple(choice.chosen.members),) if fits else ())]):
        if pool.method is not None and set(used) <= pool.as_stored:
            continue
        blend = Blend("mean", used, (1.0,) * len(used))
        name = f"member {used[0]}" if len(used) == 1 else f"mean {'+'.join(used)}"
        found.append(candidate(name, "ensemble", used, scores(blend), blend))
    rows = np.arange(len(folds)) if valid.rows is None else valid.rows
    for entry, fitted_entry in fitted.items():
        model, own = fitted_entry.model, fitted_entry.own
        if isinstance(model, Blend):
            on_valid = (
                _cross_fitted(model.method, fitted_entry.options, pool, valid, folds)
                if valid.oof
                else model.apply([pool.oof[n] for n in model.names])
            )
            score = (
                valid.score(on_valid),
                test.score(model.apply([pool.test[n] for n in model.names])) if test else None,
            )
            found.append(candidate(f"blend {entry}", "ensemble", model.names, score, model))
            continue
        tops = [pool.oof[n] for n in model.members]
        on_valid = _per_fold(model, tops, folds[rows]) if valid.oof else model.predict_topk(tops)
        score = (
            valid.score(on_valid),
            test.score(model.predict_topk([pool.test[n] for n in model.members])) if test else None,
        )
        ms = timing.stacker(model, pool.oof) if timing is not None else 0.0
        found.append(candidate("stacker", "stacker", model.members, score, None, own, ms))
    return found, choice.exact


def _per_fold(stacker: Stacker, topks: Sequence[TopK], row_folds: np.ndarray) -> TopK:
    """The stacker's out-of-fold predictions of rows whose members' predictions are ``topks``
    and whose folds are ``row_folds``: each row by the stacker model of its fold, which did not
    see it."""
    parts = []
    for fold in np.unique(row_folds):
        at = np.flatnonzero(row_folds == fold)
        parts.append((at, stacker.predict_topk(_rows(topks, at), fold=int(fold))))
    return _assemble(parts, len(row_folds))


def _cross_fitted(
    method: str, options: dict[str, Any], pool: _Pool, valid: _Split, folds: np.ndarray
) -> TopK:
    """A blend's out-of-fold predictions of the validation rows: for each fold, the weights
    fitted (`fit_blend`, as the run fitted them) on the other folds' rows, applied to its rows;
    so a blend's figure is as honest as the stacker's (weights fitted on the rows they are
    scored on would flatter it)."""
    names = list(pool.every)
    rows = np.arange(len(folds)) if valid.rows is None else valid.rows
    every = [pool.every[n] for n in names]
    parts = []
    for fold in np.unique(folds[rows]):
        others = np.flatnonzero(folds != fold)
        blend = fit_blend(
            method, _rows(every, others), valid.store.labels[others], valid.task, names,
            metric_k=valid.k, **options,
        )  # fmt: skip
        at = np.flatnonzero(folds[rows] == fold)
        parts.append((at, blend.apply(_rows(every, rows[at]))))
    return _assemble(parts, rows.size)


def _rows(topks: Sequence[TopK], rows: np.ndarray) -> list[TopK]:
    return [TopK(t.indices[rows], t.scores[rows]) for t in topks]


def _assemble(parts: Sequence[tuple[np.ndarray, TopK]], n_rows: int) -> TopK:
    """One ``(n_rows, w)`` TopK from parts predicting the rows ``at`` each, padded to the
    widest."""
    width = max(top.k for _, top in parts)
    indices = np.full((n_rows, width), -1, np.int32)
    scores = np.full((n_rows, width), -np.inf, np.float32)
    for at, top in parts:
        indices[at, : top.k], scores[at, : top.k] = top.indices, top.scores
    return TopK(indices, scores)


def _compressed_pool(
    method: Method,
    stored: _Pool,
    paths: dict[str, Path],
    k: dict[str, int],
    train: Dataset,
    valid: _Split,
    test: _Split | None,
    folds: np.ndarray,
    min_elements: int,
    batch_size: int,
    work: Path,
    timing: _Timing | None,
) -> _Pool:
    """Every member with each fold model compressed by ``method`` (in ``work``), predicting
    the training rows out of fold, and the validation split (when it is a store of its own)
    and the test split by the fold models' mean, again, so its figures include what
    compression cost; predictions cut and rounded as a store holds them (`float16_topk`). A
    LightGBM member is as in the ``stored`` pool."""
    pool = _Pool(method, {}, {}, {}, {}, {}, min_elements)
    for name, store in paths.items():
        if _is_trees(store):
            for part in ("every", "oof", "test", "sizes", "costs"):
                if name in getattr(stored, part):
                    getattr(pool, part)[name] = getattr(stored, part)[name]
            pool.as_stored.add(name)
            continue
        compressed = []
        for f, fold in enumerate(_fold_models(store)):
            out = work / name / f"fold-{f}"
            compress_network(fold, out, method, min_elements=min_elements, overwrite=True)
            compressed.append(out)
        networks = [open_network(folder) for folder in compressed]
        pool.sizes[name] = sum(folder_bytes(c, (CONFIG_FILE, QUANTIZED_FILE)) for c in compressed)
        held = np.empty((len(folds), train.n_classes), np.float32)
        for f, network in enumerate(networks):
            at = np.flatnonzero(folds == f)
            for got, probs in _scores(network, train.subset(at), batch_size):
                held[at[got]] = probs
        pool.every[name] = float16_topk(TopK(*select_top_k(held, k[name], sort=True)))

        def mean_of(data: Dataset, networks: list[Any] = networks, k: int = k[name]) -> TopK:
            total = sum(_dense(network, data, batch_size) for network in networks)
            mean = np.asarray(total, np.float32) / len(networks)
            return float16_topk(TopK(*select_top_k(mean, k, sort=True)))

        pool.oof[name] = valid.cut(pool.every[name]) if valid.oof else mean_of(valid.store)
        if test is not None:
            pool.test[name] = mean_of(test.store)
        if timing is not None:
            pool.costs[name] = sum(
                timing.network(c, f"{name}-{method}-{c.name}") for c in compressed
            )
    return pool


def _scores(network: Any, data: Dataset, batch_size: int) -> Any:
    return iter_scores(network, data, list(network.config["input_dims"]), batch_size)


def _dense(network: Any, data: Dataset, batch_size: int) -> np.ndarray:
    """``(len(data), n_classes)`` probabilities of a network."""
    out = np.empty((len(data), data.n_classes), np.float32)
    for rows, probs in _scores(network, data, batch_size):
        out[rows] = probs
    return out


def _fold_models(store: Path) -> list[Path]:
    """A member's fold model folders (``fold-<f>/model`` beside its prediction store), checked
    to be all those its predictions come from."""
    folds = sorted(store.parent.glob("fold-*/model"), key=lambda p: int(p.parent.name[5:]))
    expected = int(Predictions.open(store).model.get("folds", len(folds)))
    if len(folds) != expected or not folds:
        raise DataError(
            f"{store.parent}: {len(folds)} fold models, its predictions come from {expected}; "
            "the zoo member is incomplete, run the recipe again"
        )
    return folds


def _is_trees(store: Path) -> bool:
    """Whether a member's fold models are LightGBM's, not networks."""
    return any((fold / LGBM_FILE).is_file() for fold in _fold_models(store))


def _member_bytes(store: Path) -> int:
    """Bytes of a member's fold models."""
    return sum(folder_bytes(f) for f in _fold_models(store))


def _choose(
    candidates: Sequence[Candidate], budget: int, max_latency_ms: float | None, valid: _Split
) -> Candidate:
    """The most accurate scored candidate within the budgets; a `ConfigError` when none fits."""
    if not candidates:
        raise DataError(
            "the run has no final network and no zoo members to weigh; run the recipe's zoo "
            "stage first"
        )
    fitting = [(i, c) for i, c in enumerate(candidates) if c.size <= budget]
    if not fitting:
        small = min(candidates, key=lambda c: c.size)
        raise ConfigError(
            f"max size {format_size(budget)} ({budget:,} bytes) is below every candidate; the "
            f"smallest is {small.name} at {format_size(small.size)} ({small.size:,} bytes), "
            "raise max_size"
        )
    if max_latency_ms is not None:
        fast = [(i, c) for i, c in fitting if (c.latency_ms or 0.0) <= max_latency_ms]
        if not fast:
            _, quick = min(fitting, key=lambda ic: ic[1].latency_ms or 0.0)
            raise ConfigError(
                f"no candidate within {format_size(budget)} runs a row in {max_latency_ms:g} ms; "
                f"the fastest is {quick.name} at {quick.latency_ms:.3f} ms a row "
                f"({format_size(quick.size)}), raise max_latency_ms"
            )
        fitting = fast
    scored = [(i, c) for i, c in fitting if c.metric is not None]
    if not scored:
        raise ConfigError(
            f"within the budgets only {', '.join(c.name for _, c in fitting)} fit, and the final "
            f"network has no validation figure on {valid.words} (it trained on every row); "
            "compress it directly (webly quantize NETWORK_DIR --out DIR) or raise max_size"
        )
    _, chosen = max(scored, key=lambda ic: (ic[1].metric, -ic[1].size, -ic[0]))
    return chosen
