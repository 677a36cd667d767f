"""Training: the loop, losses, metrics, checkpoints, data-parallel scale-out and run folders.

Public API:
    :func:`train_run`: train one model on a :class:`TaskData` and write ``WORKSPACE/runs/<name>/``.
    :func:`load_run` -> :class:`LoadedRun`: rebuild a finished run's model (eval mode, CPU).
    :func:`load_task_data`: the :class:`TaskData` of a model from workspace artifacts.
    :func:`fit`, :func:`predict`, :class:`TrainConfig`: the model-agnostic loop.
    :func:`multilabel_metrics`, :func:`tune_thresholds`, :func:`constant_baselines`: metrics.
"""

from __future__ import annotations

from neuroposter.train.data import SplitData, TaskData, load_task_data, to_model_input
from neuroposter.train.distributed import DistInfo, dist_info_from_env
from neuroposter.train.loop import FitResult, Prediction, TrainConfig, fit, predict
from neuroposter.train.metrics import METRIC_KEYS, constant_baselines, multilabel_metrics, tune_thresholds
from neuroposter.train.run import (
    IMAGE_SIZE_DEFAULTS,
    MODEL_TRAIN_DEFAULTS,
    QAT_DEFAULTS,
    QATPlan,
    LoadedRun,
    RunResult,
    default_model_kwargs,
    load_run,
    resolve_device,
    train_run,
)

__all__ = [
    "SplitData", "TaskData", "load_task_data", "to_model_input",
    "DistInfo", "dist_info_from_env",
    "FitResult", "Prediction", "TrainConfig", "fit", "predict",
    "METRIC_KEYS", "constant_baselines", "multilabel_metrics", "tune_thresholds",
    "IMAGE_SIZE_DEFAULTS", "MODEL_TRAIN_DEFAULTS", "QAT_DEFAULTS", "QATPlan", "LoadedRun", "RunResult", "default_model_kwargs", "load_run", "resolve_device",
    "train_run",
]
