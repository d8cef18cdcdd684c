"""The long tail: oversampling each class's top-ranked rows, a balanced fine-tune subset,
classifier re-training (cRT) and tau-normalization, with head / medium / tail figures for each
(the AliProducts solution; Kang et al. 2020). Class re-weighting is the trainer's
(`webly.train.reweight.class_weights`, ``TrainConfig.class_weight_power``).

Every function over labels and scores is pure; `apply_tau` and `retrain_classifier` change a
network in place, `tau_sweep` (one network on validation rows), `tau_sweep_folds` (fold models,
each on its held-out rows) and `score_network` leave it as it is.
"""

from webly.longtail.bands import BandReport, band_report
from webly.longtail.classifier import linear_classifier
from webly.longtail.crt import retrain_classifier
from webly.longtail.oversample import oversample_top
from webly.longtail.subset import balanced_subset
from webly.longtail.taunorm import (
    TauRow,
    TauSweep,
    apply_tau,
    lower_is_better,
    resolve_metric,
    score_network,
    tau_normalize,
    tau_sweep,
    tau_sweep_folds,
)

__all__ = [
    "BandReport",
    "TauRow",
    "TauSweep",
    "apply_tau",
    "balanced_subset",
    "band_report",
    "linear_classifier",
    "lower_is_better",
    "oversample_top",
    "resolve_metric",
    "retrain_classifier",
    "score_network",
    "tau_normalize",
    "tau_sweep",
    "tau_sweep_folds",
]
