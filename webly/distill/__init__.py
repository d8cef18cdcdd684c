"""Distillation: soft labels from the ensemble, students, pseudo-labels.

The names below are imported on first use (`webly._lazy`): a module of the package (e.g.
``settings``) loads without the trainer."""

from typing import TYPE_CHECKING

from webly._lazy import lazy_names

_WHERE = {
    "PseudoLabels": "webly.distill.pseudo",
    "select_pseudo_labels": "webly.distill.pseudo",
    "soft_targets": "webly.distill.soft_labels",
    "predict_teacher": "webly.distill.student",
    "train_students": "webly.distill.student",
}
__all__ = sorted(_WHERE)

if TYPE_CHECKING:
    from webly.distill.pseudo import PseudoLabels as PseudoLabels
    from webly.distill.pseudo import select_pseudo_labels as select_pseudo_labels
    from webly.distill.soft_labels import soft_targets as soft_targets
    from webly.distill.student import predict_teacher as predict_teacher
    from webly.distill.student import train_students as train_students

__getattr__, __dir__ = lazy_names(__name__, _WHERE)
