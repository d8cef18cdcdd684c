"""What to deploy from a run under a size budget: the most accurate candidate that fits.

The YouTube-8M 2018 challenge capped the model at 1 GB; its winners kept their big models by
quantizing them, and chose which members to keep by their gain per byte. `choose_under_budget`
weighs every deployable product of a run (`webly.compress.run`) against one budget:

- the final distilled network (``distill.final``; its long-tail-adjusted form when the run has
  a ``longtail`` stage) as it is (``fp32``) and compressed
  (`webly.compress.compress_network`: ``fp16``, partial 8-bit ``int8_partial`` by default),
  each variant predicting the scoring split again, so its figure includes what compression
  cost;
- mean blends of subsets of the zoo's members (a member alone is its fold models' average):
  subsets from `webly.ensemble.budget.select_under_budget` (every subset for up to 12 members,
  else greedy under the budget), those on its frontier kept;
- the run's other fitted blends (``ensemble.blends`` other than ``mean``, which is the blend of
  every member) with their members of non-zero weight;
- the stacker: its members and its own fold models.

A candidate's size is the bytes of the files that load it: a network's ``model.json`` and
weights file, a LightGBM model's ``lgbm.json`` and booster files, the stacker's manifest and
fold models; an ensemble's is the sum over its members' fold models. Members count at their
stored (float32) size: compressing them would need their predictions made again.

Accuracy is GAP@k (multi-label) or accuracy (multi-class), measured as the run's evaluate stage
measured its figures (``results.json``): on the test split (its clean labels when the store has
them) when the run has test labels, else out of fold on the training labels. The final model
was trained on every row, so without test labels it cannot be scored and is not chosen. Choosing
among the candidates on the split they are reported on makes the chosen figure a little
optimistic, as choosing a blend's weights on its out-of-fold rows does.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import scipy.sparse as sp

from webly._fs import OutputKind
from webly.compress.files import write_json
from webly.compress.quantize import (
    MIN_ELEMENTS,
    QUANTIZED_FILE,
    REPORT_FILE,
    Method,
    compress_network,
    open_network,
)
from webly.compress.run import final_stage, is_run, run_results, run_store, stage_output
from webly.data.store import Dataset, atomic_output
from webly.ensemble.budget import BudgetPoint, format_size, pareto_frontier, parse_size
from webly.ensemble.budget import select_under_budget as select_subsets
from webly.ensemble.fit import STACKER
from webly.ensemble.members import open_members
from webly.ensemble.tta import scores_topk
from webly.errors import ConfigError, DataError
from webly.metrics.evaluate import task_metric
from webly.metrics.ranking import TopK
from webly.models.gbdt import CONFIG_FILE as LGBM_FILE
from webly.models.network import CONFIG_FILE, WEIGHTS_FILE
from webly.predictions import Predictions, merge_topk
from webly.train.loop import iter_scores

Kind = Literal["final", "ensemble", "stacker"]
CHOICE_FILE, FRONTIER_FILE = "choice.json", "frontier.json"
CHOICE = OutputKind("a webly size-budget choice", CHOICE_FILE)
"""What ``webly compress --max-size --overwrite`` replaces."""
_WORK = ".candidates"


@dataclass(frozen=True)
class Candidate:
    """One thing the run could deploy.

    Attributes
    ----------
    name : e.g. ``final mlp int8_partial``, ``member dbof``, ``mean dbof+resnet_av``,
        ``blend greedy``, ``stacker``
    kind : ``final`` (one network), ``ensemble`` (a weighted mean of zoo members) or
        ``stacker``
    size : bytes of the files that load it
    metric : its GAP@k or accuracy (`BudgetResult.metric`); None when it cannot be scored
    method : the final network's weights, ``fp32``, ``fp16``, ``int8_partial`` or ``kmeans``
    members, weights : the zoo members an ensemble or the stacker runs, and an ensemble's
        weights (summing to 1)
    parts : bytes of each component: ``member:<id>``, ``stacker`` (its own models), ``network``
    """

    name: str
    kind: Kind
    size: int
    metric: float | None
    method: str | None = None
    members: tuple[str, ...] = ()
    weights: tuple[float, ...] = ()
    parts: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class BudgetResult:
    """What `choose_under_budget` weighed and chose.

    Attributes
    ----------
    run : the run directory
    max_bytes : the budget
    metric : ``GAP@<k>`` or ``accuracy``
    scored_on : what the figures were measured on, in words
    candidates : every candidate, finals first
    frontier : the scored candidates no other is at least as small and as accurate as (with
        one of the two strictly), by ascending size; some may exceed the budget
    chosen : the most accurate scored candidate within the budget (ties: the smaller, then the
        one listed first)
    subsets_exact : whether every subset of the members was scored (else greedily chosen ones)
    out : the folder written, None when nothing was
    training_store : the run's training store (what an export of the chosen network reads)
    """

    run: Path
    max_bytes: int
    metric: str
    scored_on: str
    candidates: tuple[Candidate, ...]
    frontier: tuple[Candidate, ...]
    chosen: Candidate
    subsets_exact: bool
    out: Path | None
    training_store: Path | None = None

    def to_json(self) -> dict[str, Any]:
        """``frontier.json``: the budget, metric, the choice, the frontier and every candidate."""
        return {
            "run": str(self.run),
            "max_bytes": self.max_bytes,
            "metric": self.metric,
            "scored_on": self.scored_on,
            "subsets_exact": self.subsets_exact,
            "chosen": self.chosen.name,
            "frontier": [c.to_json() for c in self.frontier],
            "candidates": [c.to_json() for c in self.candidates],
        }

    def table(self) -> list[dict[str, str]]:
        """The frontier as table rows: candidate, kind, size, bytes, metric, fits, chosen."""
        return [
            {
                "candidate": c.name,
                "kind": c.kind,
                "size": format_size(c.size),
                "bytes": f"{c.size:,}",
                self.metric: f"{c.metric:.4f}" if c.metric is not None else "",
                "fits": "yes" if c.size <= self.max_bytes else "no",
                "chosen": "<-" if c is self.chosen else "",
            }
            for c in self.frontier
        ]

    def __str__(self) -> str:
        c = self.chosen
        line = (
            f"chose {c.name} ({c.kind}): {self.metric} {c.metric:.4f} on {self.scored_on}, "
            f"{format_size(c.size)} within {format_size(self.max_bytes)}"
        )
        if self.out is None:
            return line + "; nothing written (no --out given)"
        if c.kind == "final":
            data = f" --data {self.training_store}" if self.training_store is not None else ""
            return (
                f"{line}; wrote the network to {self.out} (export it: webly export {self.out} "
                f"--out EXPORT_DIR{data})"
            )
        return (
            line + f"; wrote its members and weights to {self.out / CHOICE_FILE}. Exporting an "
            "ensemble to ONNX is out of scope: deploy its members' models, or distil it into "
            "one network (distill.final) and compress that"
        )


@dataclass(frozen=True)
class _Scoring:
    """The split, labels and metric the run's figures are measured with."""

    split: str
    store: Dataset
    labels: sp.csr_matrix
    metric: str
    k: int
    words: str

    @property
    def task(self) -> str:
        return self.store.task

    def score(self, topk: TopK) -> float:
        return task_metric(topk, self.labels, self.task, self.k)


def choose_under_budget(
    run: str | Path,
    max_bytes: int | str,
    out: str | Path | None = None,
    *,
    methods: Sequence[Method] = ("fp16", "int8_partial"),
    min_elements: int = MIN_ELEMENTS,
    batch_size: int = 1024,
    overwrite: bool = False,
) -> BudgetResult:
    """Choose, among a run's deployable candidates, the most accurate within ``max_bytes``.

    Parameters
    ----------
    run : a run directory (``webly run RECIPE --out RUN``) whose evaluate stage finished
    max_bytes : the budget, bytes or a size string such as ``"1GB"`` (`parse_size`)
    out : folder to write (built in a temporary folder and renamed into place; nothing is left
        there on error); None writes nothing. It gets ``frontier.json`` (`BudgetResult.to_json`)
        and ``choice.json`` (the chosen candidate); for a final network, also the network
        folder's files (``model.json`` and its weights, plus ``compression.json`` for a
        compressed one), so ``webly export FOLDER`` takes it.
    methods : compressions of the final network weighed beside its float32 weights
    min_elements : only tensors with more elements are compressed (`compress_network`)
    batch_size : rows a forward pass when the final network's variants are scored
    overwrite : replace an existing ``out``

    Returns
    -------
    BudgetResult

    Raises
    ------
    ConfigError
        When the budget is below every candidate (naming the smallest), or only candidates that
        cannot be scored fit.
    """
    run = Path(run)
    budget = parse_size(max_bytes)
    if not is_run(run):
        raise DataError(
            f"{run} is not a run directory (no recipe.yaml); --max-size weighs a run's models, "
            "make one with webly run RECIPE --out RUN"
        )
    scoring = _scoring(run)
    with contextlib.ExitStack() as stack:
        if out is None:
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        else:
            folder = stack.enter_context(
                atomic_output(out, overwrite=overwrite, kind=CHOICE, hosts=[run])
            )
        work = folder / _WORK
        finals = _final_candidates(run, scoring, methods, min_elements, batch_size, work)
        ensembles, exact = _ensemble_candidates(run, scoring, budget)
        candidates = [c for c, _ in finals] + ensembles
        chosen = _choose(candidates, budget, scoring)
        scored = [c for c in candidates if c.metric is not None]
        points = [
            BudgetPoint(c.size, 0.0, c.metric or 0.0, (str(i),)) for i, c in enumerate(scored)
        ]
        frontier = tuple(scored[int(p.members[0])] for p in pareto_frontier(points))
        result = BudgetResult(
            run, budget, scoring.metric, scoring.words, tuple(candidates), frontier, chosen,
            exact, Path(out) if out is not None else None, run_store(run, "train"),
        )  # fmt: skip
        if out is not None:
            source = next((f for c, f in finals if c is chosen), None)
            if source is not None:
                for name in (CONFIG_FILE, WEIGHTS_FILE, QUANTIZED_FILE, REPORT_FILE, LGBM_FILE):
                    if (source / name).is_file():
                        shutil.copyfile(source / name, folder / name)
            choice = {"metric_name": scoring.metric, "scored_on": scoring.words}
            write_json(folder / CHOICE_FILE, choice | chosen.to_json())
            write_json(folder / FRONTIER_FILE, result.to_json())
        shutil.rmtree(work, ignore_errors=True)
    return result


def _scoring(run: Path) -> _Scoring:
    """What the run's evaluate stage measured its figures on (``results.json``)."""
    results = run_results(run)
    if results is None:
        raise DataError(
            f"{run}: the evaluate stage has not finished; finish the run (webly run RECIPE "
            f"--out {run}) before weighing its models"
        )
    split, which, metric = results["split"], results["labels"], results["metric"]
    path = run_store(run, "test" if split == "test" else "train")
    if path is None:
        raise DataError(f"{run}: its data stage records no {split} store; run the recipe again")
    store = Dataset.open(path)
    labels = store.clean_labels if which == "clean" else store.labels
    if labels is None:
        raise DataError(f"{path}: no {which} labels, though the run was scored on them")
    found = re.fullmatch(r"GAP@(\d+)", metric)
    words = f"{split} split, {which} labels, {len(store):,} rows"
    return _Scoring(split, store, labels, metric, int(found.group(1)) if found else 1, words)


def folder_bytes(folder: Path, names: Sequence[str] | None = None) -> int:
    """Bytes of the files directly in ``folder`` (only those named, if ``names``)."""
    files = [folder / n for n in names] if names is not None else list(folder.iterdir())
    return sum(f.stat().st_size for f in files if f.is_file())


def _final_candidates(
    run: Path,
    scoring: _Scoring,
    methods: Sequence[Method],
    min_elements: int,
    batch_size: int,
    work: Path,
) -> list[tuple[Candidate, Path]]:
    """The final network as it is and compressed by each of ``methods``, each with its folder."""
    stage = final_stage(run)
    if stage is None:
        return []
    (final_id,) = stage_output(run, stage, "final")
    folder = run / stage_output(run, stage, "model")
    if (folder / LGBM_FILE).is_file():  # a LightGBM final: scored by its own predictions
        store = Predictions.open(run / stage_output(run, stage, "final")[final_id])
        metric = scoring.score(store.topk("test")) if scoring.split == "test" else None
        size = folder_bytes(folder)
        return [(Candidate(f"final {final_id}", "final", size, metric, "fp32"), folder)]
    variants: list[tuple[str, Path, tuple[str, str]]] = [
        ("fp32", folder, (CONFIG_FILE, WEIGHTS_FILE))
    ]
    for method in dict.fromkeys(methods):
        compress_network(folder, work / method, method, min_elements=min_elements)
        variants.append((method, work / method, (CONFIG_FILE, QUANTIZED_FILE)))
    found = []
    for weights, path, files in variants:
        size = folder_bytes(path, files)
        metric = _network_metric(path, scoring, batch_size) if scoring.split == "test" else None
        name = f"final {final_id} {weights}"
        candidate = Candidate(name, "final", size, metric, weights, parts={"network": size})
        found.append((candidate, path))
    return found


def _network_metric(folder: Path, scoring: _Scoring, batch_size: int) -> float:
    """The metric of the (possibly compressed) network in ``folder`` on the scoring split."""
    network = open_network(folder)
    groups = list(network.config["input_dims"])
    batches = iter_scores(network, scoring.store, groups, batch_size)
    return scoring.score(scores_topk(batches, max(scoring.k, 1)))


def _ensemble_candidates(run: Path, scoring: _Scoring, budget: int) -> tuple[list[Candidate], bool]:
    """Subsets of the zoo's members, the run's other blends and the stacker; and whether every
    subset was scored."""
    paths = stage_output(run, "zoo", "members")
    if not paths:
        return [], True
    sizes = {name: _member_bytes(run / path) for name, path in paths.items()}
    members = open_members({name: run / path for name, path in paths.items()}, (scoring.split,))
    topks = dict(zip(members.names, members.topk(scoring.split), strict=True))
    names = list(topks)
    fits = min(sizes.values()) <= budget
    choice = select_subsets(
        [topks[n] for n in names], scoring.labels, scoring.task, names,
        [sizes[n] for n in names], max_bytes=budget if fits else None, metric_k=scoring.k,
    )  # fmt: skip
    subsets = dict.fromkeys([*choice.frontier, *((choice.chosen,) if fits else ())])
    candidates = []
    for p in subsets:
        name = f"member {p.members[0]}" if len(p.members) == 1 else f"mean {'+'.join(p.members)}"
        metric = scoring.score(merge_topk([topks[n] for n in p.members]))
        candidates.append(_ensemble(name, p.members, (1.0,) * len(p.members), sizes, metric))
    stores = stage_output(run, "ensemble", "stores") or {}
    for entry, path in stores.items():
        store = Predictions.open(run / path)
        metric = scoring.score(store.topk(scoring.split))
        if entry == STACKER:
            stacker = store.model["members"]
            own = folder_bytes((run / path).parent / "model")
            candidates.append(
                Candidate(
                    "stacker", "stacker", own + sum(sizes[n] for n in stacker), metric,
                    members=tuple(stacker),
                    parts={**{f"member:{n}": sizes[n] for n in stacker}, "stacker": own},
                )
            )  # fmt: skip
        elif entry != "mean":
            blend = store.model["blend"]
            kept = [(n, w) for n, w in zip(blend["names"], blend["weights"], strict=True) if w > 0]
            used = tuple(n for n, _ in kept)
            candidates.append(
                _ensemble(f"blend {entry}", used, tuple(w for _, w in kept), sizes, metric)
            )
    return candidates, choice.exact


def _ensemble(
    name: str,
    members: tuple[str, ...],
    weights: tuple[float, ...],
    sizes: dict[str, int],
    metric: float,
) -> Candidate:
    total = sum(weights)
    return Candidate(
        name, "ensemble", sum(sizes[n] for n in members), metric, None, members,
        tuple(w / total for w in weights), {f"member:{n}": sizes[n] for n in members},
    )  # fmt: skip


def _member_bytes(store: Path) -> int:
    """Bytes of a zoo member's fold models (``fold-<f>/model`` beside its prediction store)."""
    folds = sorted((store.parent).glob("fold-*/model"))
    expected = int(Predictions.open(store).model.get("folds", len(folds)))
    if len(folds) != expected or not folds:
        raise DataError(
            f"{store.parent}: {len(folds)} fold models, its predictions come from {expected}; "
            "the zoo member is incomplete, run the recipe again"
        )
    return sum(folder_bytes(f) for f in folds)


def _choose(candidates: Sequence[Candidate], budget: int, scoring: _Scoring) -> Candidate:
    """The most accurate scored candidate within ``budget``; a `ConfigError` when none fits."""
    if not candidates:
        raise DataError("the run has no final model and no zoo members to weigh; run the recipe")
    fitting = [(i, c) for i, c in enumerate(candidates) if c.size <= budget]
    scored = [(i, c) for i, c in fitting if c.metric is not None]
    if not scored:
        small = min(candidates, key=lambda c: c.size)
        if fitting:
            raise ConfigError(
                f"within {format_size(budget)} only {', '.join(c.name for _, c in fitting)} "
                f"fit, and the run scores on the {scoring.split} split, where the final model "
                "(trained on every row) has no figure; compress it directly (webly compress "
                "NETWORK_DIR --out FOLDER) or raise --max-size"
            )
        raise ConfigError(
            f"max size {format_size(budget)} ({budget:,} bytes) is below every candidate; the "
            f"smallest is {small.name} at {format_size(small.size)} ({small.size:,} bytes), "
            "raise --max-size"
        )
    _, chosen = max(scored, key=lambda ic: (ic[1].metric, -ic[1].size, -ic[0]))
    return chosen
