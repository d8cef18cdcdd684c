"""Distillation: soft labels from the ensemble, students, pseudo-labels, and `run_distill`,
the recipe's ``distill`` section run (the distill stage's and ``webly distill``'s one call).

The names below are imported on first use (`webly._lazy`): a module of the package (e.g.
``settings``) loads without the trainer."""

from typing import TYPE_CHECKING

from webly._lazy import lazy_names

_WHERE = {
    "DistillInputs": "webly.distill.teachers",
    "DistillResult": "webly.distill.run",
    "PseudoLabels": "webly.distill.pseudo",
    "ensemble_entries": "webly.distill.teachers",
    "run_distill": "webly.distill.run",
    "select_pseudo_labels": "webly.distill.pseudo",
    "soft_targets": "webly.distill.soft_labels",
}
__all__ = sorted(_WHERE)

if TYPE_CHECKING:
    from webly.distill.pseudo import PseudoLabels as PseudoLabels
    from webly.distill.pseudo import select_pseudo_labels as select_pseudo_labels
    from webly.distill.run import DistillResult as DistillResult
    from webly.distill.run import run_distill as run_distill
    from webly.distill.soft_labels import soft_targets as soft_targets
    from webly.distill.teachers import DistillInputs as DistillInputs
    from webly.distill.teachers import ensemble_entries as ensemble_entries

__getattr__, __dir__ = lazy_names(__name__, _WHERE)
