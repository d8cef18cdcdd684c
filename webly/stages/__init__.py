"""What each stage of a recipe does: one function per stage, from its section of the recipe and
the artifacts of the stages it reads to its own artifact in ``RUN/<stage>/``.

`webly.pipeline` orders the stages, hashes their configs, writes their manifests and skips what
is done; a stage function reads the records of the stages it declares (`StageContext`), makes
its artifact and says what it made (`StageResult`: its `webly.rundir.StageRecord`). Artifacts::

    data/       train/, test/ (and unlabeled/) stores, generated or imported (none for a
                ``store`` source: its stores are read in place, never copied or modified)
    folds/      folds.npy: (n_samples,) int8 fold of every training row
    zoo/        one folder per member (`webly.train.oof.fit_oof`), resumed in place
    clean/      round-<r>/: the zoo trained on labels cleaned r times, its NoiseReport
    ensemble/   blend-<method>/ and stacker/ prediction stores (`webly.stages.ensemble`)
    distill/    students/ (out-of-fold, like the zoo) and final/ (one model on every row)
    longtail/   final/: the final network with its classifier re-balanced (tau-norm or cRT)
    evaluate/   results.json: every model's figures and the zoo average's
    compress/   choice/: frontier.json, choice.json (and the chosen network when it is one)
    export/     model/: ONNX, safetensors and model.json of the final network
    report/     report.html: the run's figures in one static page, opens offline

Each stage also has a config function: the part of the recipe its artifact depends on, which
its manifest hash covers. Adding a stage: a config model in `webly.config` (a `Recipe` field),
its record in `webly.rundir.RECORDS`, a config function and a stage function here, and a line
in `webly.pipeline.STAGES` naming the stages it reads.
"""

from webly.stages.clean import clean_config, make_clean
from webly.stages.context import StageContext, StageResult, splits
from webly.stages.data import check_data, data_config, folds_config, make_data, make_folds
from webly.stages.deploy import compress_config, export_config, export_model, make_compress
from webly.stages.distill import distill_config, make_distill
from webly.stages.ensemble import ensemble_config, make_ensemble
from webly.stages.evaluate import evaluate_config, evaluate_zoo, results_table
from webly.stages.longtail import longtail_config, make_longtail
from webly.stages.report import make_report, report_config
from webly.stages.zoo import make_zoo, zoo_config

__all__ = [
    "StageContext",
    "StageResult",
    "check_data",
    "clean_config",
    "compress_config",
    "data_config",
    "distill_config",
    "ensemble_config",
    "evaluate_config",
    "evaluate_zoo",
    "export_config",
    "export_model",
    "folds_config",
    "longtail_config",
    "make_clean",
    "make_compress",
    "make_data",
    "make_distill",
    "make_ensemble",
    "make_folds",
    "make_longtail",
    "make_report",
    "make_zoo",
    "report_config",
    "results_table",
    "splits",
    "zoo_config",
]  # fmt: skip
