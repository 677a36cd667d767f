"""DenseNet-169 feature extraction and the memory-mapped feature store (contracts sections 3 and 8).

Public API:
    :func:`build_backbone`, :func:`preprocess`: the image -> feature-map network and its input
        normalisation (shared with the CNN baseline and its ONNX export).
    :func:`extract_features`: streaming, resumable extraction of a dataset into a store.
    :func:`open_store` -> :class:`FeatureStore`: read-only access to a finished store.
"""

from __future__ import annotations

from neuroposter.features.backbone import (
    BACKBONE_NAME,
    FEATURE_DIM,
    IMAGENET_MEAN,
    IMAGENET_STD,
    WeightsSpec,
    build_backbone,
    feature_grid,
    imagenet_weights_path,
    preprocess,
    preprocess_batch,
    resolve_weights,
)
from neuroposter.features.extract import ExtractionResult, extract_features, run_backbone, select_rows
from neuroposter.features.store import FeatureStore, open_store, partial_dir, store_key

__all__ = [
    "BACKBONE_NAME",
    "FEATURE_DIM",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "WeightsSpec",
    "build_backbone",
    "feature_grid",
    "imagenet_weights_path",
    "preprocess",
    "preprocess_batch",
    "resolve_weights",
    "ExtractionResult",
    "extract_features",
    "run_backbone",
    "select_rows",
    "FeatureStore",
    "open_store",
    "partial_dir",
    "store_key",
]
