"""Distillation: soft labels from the ensemble, students, pseudo-labels."""

from webly.distill.pseudo import PseudoLabels, select_pseudo_labels
from webly.distill.soft_labels import soft_targets
from webly.distill.student import predict_teacher, train_students

__all__ = [
    "PseudoLabels",
    "predict_teacher",
    "select_pseudo_labels",
    "soft_targets",
    "train_students",
]
