"""Compression and the size-budget choice: what of a run to deploy, and in which form.

- `compress_network`: partial 8-bit (the YouTube-8M 2018 winners'), float16 or k-means
  compression of a saved network's big tensors (`quantize_state`), with a per-tensor report
  (`CompressionResult`, `TensorReport`); the compressed folder's format, and opening it, are
  `webly.models.quantized`'s.
- `choose_under_budget`: among a run's final network (plain and compressed), member subsets,
  blends and stacker (members as stored and in 8-bit), the most accurate on validation rows
  within a size (and latency) budget, with the accuracy/size/latency frontier
  (`BudgetResult`, `Candidate`).
- `export_choice` / `export_best` / `export_candidate`: that choice exported whole (a network,
  a blend or the stacker), and `export_run`: the run's final network with the run's figures;
  they read the run directory and hand `webly.deploy` the folders to export.
- `run_compress` / `run_export`: the ``compress`` and ``export`` stages on their recipe
  sections (what ``webly compress RUN`` and ``webly export RUN`` run).

The names below are imported on first use (`webly._lazy`), so importing the package loads
neither PyTorch nor LightGBM.
"""

from typing import TYPE_CHECKING

from webly._lazy import lazy_names

_WHERE = {
    "BudgetResult": "webly.compress.budget",
    "Candidate": "webly.compress.budget",
    "choose_under_budget": "webly.compress.budget",
    "export_best": "webly.compress.choice",
    "export_candidate": "webly.compress.choice",
    "export_choice": "webly.compress.choice",
    "run_compress": "webly.compress.choice",
    "run_export": "webly.compress.choice",
    "CompressionResult": "webly.compress.quantize",
    "TensorReport": "webly.compress.quantize",
    "compress_network": "webly.compress.quantize",
    "quantize_state": "webly.compress.quantize",
    "export_run": "webly.compress.run",
}
__all__ = sorted(_WHERE)

if TYPE_CHECKING:
    from webly.compress.budget import BudgetResult as BudgetResult
    from webly.compress.budget import Candidate as Candidate
    from webly.compress.budget import choose_under_budget as choose_under_budget
    from webly.compress.choice import export_best as export_best
    from webly.compress.choice import export_candidate as export_candidate
    from webly.compress.choice import export_choice as export_choice
    from webly.compress.choice import run_compress as run_compress
    from webly.compress.choice import run_export as run_export
    from webly.compress.quantize import CompressionResult as CompressionResult
    from webly.compress.quantize import TensorReport as TensorReport
    from webly.compress.quantize import compress_network as compress_network
    from webly.compress.quantize import quantize_state as quantize_state
    from webly.compress.run import export_run as export_run

__getattr__, __dir__ = lazy_names(__name__, _WHERE)
