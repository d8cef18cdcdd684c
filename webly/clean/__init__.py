"""Finding and repairing noisy labels from out-of-fold predictions.

``find_noisy_labels(labels, oof, method=...)`` returns a `NoiseVerdict` (per row a score and a
flag; per class a noise rate; the top confusions); ``NoiseReport.from_verdict(verdict)`` turns it
into per-row actions (keep, drop, down-weight, relabel, add missing labels), sample weights and
cleaned labels for the trainer, saved as Parquet + JSON. `Curriculum` weighs the rows judged
clean first and lets the others in with a rising weight; `webly.clean.iterate.clean_iteratively`
repeats train -> detect -> act for a few rounds.
"""

from webly.clean._registry import list_methods, register_method
from webly.clean.actions import ACTIONS, ActionRules
from webly.clean.curriculum import Curriculum
from webly.clean.detect import find_noisy_labels
from webly.clean.report import NoiseReport
from webly.clean.verdict import NoiseVerdict

__all__ = [
    "ACTIONS",
    "ActionRules",
    "Curriculum",
    "NoiseReport",
    "NoiseVerdict",
    "find_noisy_labels",
    "list_methods",
    "register_method",
]
