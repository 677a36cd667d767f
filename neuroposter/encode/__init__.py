"""Spike encoding of DenseNet features and the tonic event bridge (contracts section 4).

Public API:
    :data:`ENCODERS`: registry of pure encoder functions ``(x, T, *, seed, **params) -> uint8 [T, *x.shape]``
        (``threshold``, ``multilevel``, ``rate``, ``latency``, ``delta``).
    :class:`Normalizer`, :class:`SpikeEncoder`: the train-fitted normalisation + thresholds; ``fit``,
        ``encode``, ``save``/``load`` (JSON + npz).
    :func:`spikes_to_events` / :func:`events_to_spikes`: dense <-> tonic events (``ToFrame``).
    :func:`encode_store`: feature store -> ``WORKSPACE/encoded/<name>`` with report.
    :func:`load_encoded` -> :class:`EncodedSet` (``.dataset(split)``, ``.features_dataset(split)``),
        :func:`collate_time_first`.
"""

from __future__ import annotations

from neuroposter.encode.build import FORMS, STOCHASTIC_ENCODERS, EncodeResult, encode_store, encoded_key
from neuroposter.encode.encoded import SPLITS, EncodedSet, collate_time_first, load_encoded
from neuroposter.encode.encoders import (
    ENCODERS,
    SpikeEncoder,
    default_levels,
    delta,
    fit_params,
    latency,
    multilevel,
    rate,
    spike_code,
    threshold,
)
from neuroposter.encode.events import (
    EVENT_DTYPE,
    events_to_spikes,
    pack_spikes,
    sample_events,
    spikes_to_events,
    unpack_sample,
)
from neuroposter.encode.normalize import Normalizer

__all__ = [
    "ENCODERS",
    "SpikeEncoder",
    "Normalizer",
    "default_levels",
    "delta",
    "fit_params",
    "latency",
    "multilevel",
    "rate",
    "spike_code",
    "threshold",
    "EVENT_DTYPE",
    "events_to_spikes",
    "pack_spikes",
    "sample_events",
    "spikes_to_events",
    "unpack_sample",
    "FORMS",
    "SPLITS",
    "STOCHASTIC_ENCODERS",
    "EncodeResult",
    "encode_store",
    "encoded_key",
    "EncodedSet",
    "collate_time_first",
    "load_encoded",
]
