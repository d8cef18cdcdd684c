"""Export, load, predict and serve: a model as one folder that runs without webly's trainer.

- `export_onnx`: an ONNX graph from stored features (uint8 codes included) to probabilities,
  with ``weights.safetensors`` and ``model.json``, from a saved network, plain or compressed;
  `export_ensemble`: members' fold models and a blend or the stacker, whole (`MemberFolds`).
- `load_exported`: an export folder checked and opened for ONNX Runtime (`ExportedModel`);
  `shipped_bytes`: the bytes it ships.
- `webly.deploy.predict.predict`: a data store or YouTube-8M TFRecord files through an export
  into a Kaggle submission, Parquet or JSON lines of top-k classes, with the test-time views
  and group aggregation the export asks for (`PredictOptions`; `PredictSummary`).
- `create_app`: the FastAPI service of ``webly serve`` over an export.

Exporting a run (its final network, or what its size-budget chooser chose) reads the run
directory and compresses: that is `webly.compress`, which uses this package, never the other
way round. ``predict`` and ``serve`` are imported from their modules, whose names they share.

The names below are imported on first use (`webly._lazy`): a module of the package (e.g.
``inputs`` or ``outputs``) loads without PyTorch or ONNX Runtime.
"""

from typing import TYPE_CHECKING

from webly._lazy import lazy_names

_WHERE = {
    "export_onnx": "webly.deploy.export",
    "MemberFolds": "webly.deploy.ensemble",
    "export_ensemble": "webly.deploy.ensemble",
    "ExportedModel": "webly.deploy.exported",
    "load_exported": "webly.deploy.exported",
    "shipped_bytes": "webly.deploy.exported",
    "PredictOptions": "webly.deploy.options",
    "PredictSummary": "webly.deploy.predict",
    "create_app": "webly.deploy.serve",
}
__all__ = sorted(_WHERE)

if TYPE_CHECKING:
    from webly.deploy.ensemble import MemberFolds as MemberFolds
    from webly.deploy.ensemble import export_ensemble as export_ensemble
    from webly.deploy.export import export_onnx as export_onnx
    from webly.deploy.exported import ExportedModel as ExportedModel
    from webly.deploy.exported import load_exported as load_exported
    from webly.deploy.exported import shipped_bytes as shipped_bytes
    from webly.deploy.options import PredictOptions as PredictOptions
    from webly.deploy.predict import PredictSummary as PredictSummary
    from webly.deploy.serve import create_app as create_app

__getattr__, __dir__ = lazy_names(__name__, _WHERE)
