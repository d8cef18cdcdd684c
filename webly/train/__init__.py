"""Training one network: the loop, losses, class weights, mixup, EMA, row samplers and frame
sampling."""

from webly.train.ema import EMA
from webly.train.frames import FrameSampling, cosine_keep, gather_frames, regular_indices
from webly.train.loop import (
    EpochStats,
    FitResult,
    TrainConfig,
    evaluate,
    fit,
    iter_scores,
)
from webly.train.losses import classification_loss
from webly.train.lr_search import LRSearch
from webly.train.mixup import Mixed, mixup
from webly.train.reweight import class_weights
from webly.train.samplers import Sampler, epoch_rows, row_weights
from webly.train.schedule import SCHEDULES, Schedule, epoch_scale, lr_factor

__all__ = [
    "EMA",
    "SCHEDULES",
    "EpochStats",
    "FitResult",
    "FrameSampling",
    "LRSearch",
    "Mixed",
    "Sampler",
    "Schedule",
    "TrainConfig",
    "class_weights",
    "classification_loss",
    "cosine_keep",
    "epoch_rows",
    "epoch_scale",
    "evaluate",
    "fit",
    "gather_frames",
    "iter_scores",
    "lr_factor",
    "mixup",
    "regular_indices",
    "row_weights",
]
