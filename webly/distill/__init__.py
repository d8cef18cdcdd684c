"""Distillation: soft labels from the ensemble, students, pseudo-labels."""
