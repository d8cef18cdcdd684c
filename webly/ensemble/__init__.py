"""Second level: blends, the LightGBM stacker over candidate classes, group aggregation, TTA.

The names below are imported on first use (`webly._lazy`): a module of the package (e.g.
``blend``) loads without LightGBM."""

from typing import TYPE_CHECKING

from webly._lazy import lazy_names

_WHERE = {
    "Blend": "webly.ensemble.blend",
    "fit_blend": "webly.ensemble.blend",
    "fit_ensemble": "webly.ensemble.fit",
    "Stacker": "webly.ensemble.stack",
    "StackerConfig": "webly.ensemble.stack",
    "fit_stacker": "webly.ensemble.stack",
}
__all__ = sorted(_WHERE)

if TYPE_CHECKING:
    from webly.ensemble.blend import Blend as Blend
    from webly.ensemble.blend import fit_blend as fit_blend
    from webly.ensemble.fit import fit_ensemble as fit_ensemble
    from webly.ensemble.stack import Stacker as Stacker
    from webly.ensemble.stack import StackerConfig as StackerConfig
    from webly.ensemble.stack import fit_stacker as fit_stacker

__getattr__, __dir__ = lazy_names(__name__, _WHERE)
