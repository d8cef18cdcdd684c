"""Second level: blends, the LightGBM stacker over candidate classes, group aggregation, TTA."""

from webly.ensemble.blend import Blend, fit_blend
from webly.ensemble.fit import fit_ensemble
from webly.ensemble.stack import Stacker, StackerConfig, fit_stacker

__all__ = ["Blend", "Stacker", "StackerConfig", "fit_blend", "fit_ensemble", "fit_stacker"]
