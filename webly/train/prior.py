"""The output bias at each class's prior: a network's first loss is the labels' entropy, not
``n_classes * log 2``.

A freshly initialised linear classifier predicts p = 0.5 for every one of 3,862 classes, so the
summed BCE of the first batches is about 2,700 where the converged loss is near 10; the first
epochs are spent learning the class priors. Starting the bias at the training labels' log-odds
(multi-label) or log-frequencies (multi-class) skips that (``TrainConfig.output_bias``).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from webly.core import Task


def prior_logits(labels: sp.spmatrix, task: Task) -> np.ndarray:
    """(n_classes,) float32: the log-odds ``log(p / (1 - p))`` of each class's share ``p`` of
    the rows (multi-label), or ``log p`` (multi-class); ``p`` is smoothed by one positive and
    one negative row so that unseen classes stay finite."""
    n = labels.shape[0]
    counts = np.asarray((labels >= 0.5).sum(axis=0), dtype=np.float64).ravel()
    share = (counts + 1.0) / (n + 2.0)
    logits = np.log(share / (1.0 - share)) if Task.parse(task).multilabel else np.log(share)
    return logits.astype(np.float32)


def set_prior_bias(model: nn.Module, labels: sp.spmatrix, task: Task) -> bool:
    """Set the bias of ``model.classifier`` (a `torch.nn.Linear`) to `prior_logits`; a model
    without one (moe's experts, a gbdt) is left as it is. Returns whether the bias was set."""
    classifier = getattr(model, "classifier", None)
    if not isinstance(classifier, nn.Linear) or classifier.bias is None:
        return False
    if classifier.bias.shape != (labels.shape[1],):
        return False
    with torch.no_grad():
        classifier.bias.copy_(torch.from_numpy(prior_logits(labels, task)))
    return True
