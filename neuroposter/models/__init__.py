"""Models: the Norse Spike-Driven Transformer, a spiking MLP, chip-fitted spiking chains, and the ANN / CNN / ViT baselines.

Shape convention (whole project): spike tensors are time-first ``[T, B, N, D]`` (time steps,
batch, tokens, channels), float32 0/1 in the models; SNN models return logits ``[T, B, C]`` whose
mean over ``T`` is the prediction. ANN models return ``[B, C]``.

:data:`MODELS` maps each registry name to a :class:`ModelSpec` (a ``"module:Class"`` entry point
plus what the model eats), so listing models imports nothing heavy (``neuroposter --help`` stays
instant). The classes are importable from here too; they load torch on first access.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable, Literal, get_args

from neuroposter._registry import Registry

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

    from neuroposter.models.ann_transformer import ANNTransformer, ANNTransformerConfig
    from neuroposter.models.chip_cnn import ChipCNN
    from neuroposter.models.chip_snn import ChipSNN, ChipSNNConfig
    from neuroposter.models.cnn import CNNClassifier
    from neuroposter.models.lif import LIF
    from neuroposter.models.sdt import SDTConfig, SpikeDrivenTransformer
    from neuroposter.models.sdt_frontend import FrontendSDT
    from neuroposter.models.sdt_pixels import PixelSDT
    from neuroposter.models.snn_mlp import SpikingMLPConfig, SpikingMLPNet
    from neuroposter.models.vit import ViTClassifier

__all__ = [
    "MODELS", "ModelSpec", "FEATURE_INPUTS", "CHIP_FITTED_MODELS", "names", "model_class", "build_model",
    "LIF", "SDTConfig", "SpikeDrivenTransformer", "PixelSDT", "FrontendSDT", "SpikingMLPConfig", "SpikingMLPNet",
    "ChipSNNConfig", "ChipSNN", "ChipCNN", "ANNTransformerConfig", "ANNTransformer", "CNNClassifier", "ViTClassifier",
]

InputKind = Literal["spike_tokens", "spike_pooled", "feature_tokens", "images"]
# The input kinds computed from the DenseNet-169 features: a model that reads one of them needs the feature
# extractor in front of it (its pipeline includes that front end); an ``images`` model reads posters itself.
FEATURE_INPUTS: tuple[InputKind, ...] = ("spike_tokens", "spike_pooled", "feature_tokens")
#: models made for one chip by ``neuroposter fit`` (a host part + the chip's neurons): they are deployed and priced
#: on their chip (its bundle's op counts, chip and host part), not in the chip-independent energy views.
CHIP_FITTED_MODELS: tuple[str, ...] = ("chip-snn", "chip-cnn")


@dataclass(frozen=True)
class ModelSpec:
    """A registered model: where its class lives and what it consumes."""

    entry: str          # "module:Class"
    kind: Literal["snn", "ann"]
    inputs: InputKind   # spike_tokens [T,B,N,D] | spike_pooled [T,B,1,D] | feature_tokens [B,N,D] | images [B,3,H,W]
    description: str


MODELS: Registry[ModelSpec] = Registry("model")
MODELS.add("sdt", ModelSpec("neuroposter.models.sdt:SpikeDrivenTransformer", "snn", "spike_tokens",
                            "Spike-Driven Transformer (SDSA blocks, Norse LIF) on spike tokens"))
MODELS.add("snn-mlp", ModelSpec("neuroposter.models.snn_mlp:SpikingMLPNet", "snn", "spike_pooled",
                                "chain-shaped spiking MLP on pooled spikes (lava-dl netx friendly)"))
MODELS.add("chip-snn", ModelSpec("neuroposter.models.chip_snn:ChipSNN", "snn", "spike_pooled",
                                 "spiking chain fitted to a chip's limits (host projection + chip neurons; "
                                 "`neuroposter fit`)"))
MODELS.add("ann-transformer", ModelSpec("neuroposter.models.ann_transformer:ANNTransformer", "ann",
                                        "feature_tokens", "the SDT's ANN twin on float feature tokens"))
MODELS.add("cnn", ModelSpec("neuroposter.models.cnn:CNNClassifier", "ann", "images",
                            "DenseNet-169 backbone + head trained on stored pooled features"))
MODELS.add("vit", ModelSpec("neuroposter.models.vit:ViTClassifier", "ann", "images",
                            "torchvision VisionTransformer on poster images"))
MODELS.add("sdt-pixels", ModelSpec("neuroposter.models.sdt_pixels:PixelSDT", "snn", "images",
                                   "Spike-Driven Transformer on poster pixels (spiking conv stem, direct encoding)"))
MODELS.add("chip-cnn", ModelSpec("neuroposter.models.chip_cnn:ChipCNN", "snn", "images",
                                 "convolutional variant of the pixel SDT fitted to a conv chip's limits (stem + conv "
                                 "layers instead of SDSA; `neuroposter fit --input images`)"))
MODELS.add("sdt-frontend", ModelSpec("neuroposter.models.sdt_frontend:FrontendSDT", "snn", "images",
                                     "the seed's SDT (frozen, from an sdt run) behind a spiking conv front end that "
                                     "makes its DenseNet token spikes from the poster (--init-from sdt)"))

_LAZY = {
    "LIF": "neuroposter.models.lif",
    "SDTConfig": "neuroposter.models.sdt",
    "SpikeDrivenTransformer": "neuroposter.models.sdt",
    "PixelSDT": "neuroposter.models.sdt_pixels",
    "FrontendSDT": "neuroposter.models.sdt_frontend",
    "SpikingMLPConfig": "neuroposter.models.snn_mlp",
    "SpikingMLPNet": "neuroposter.models.snn_mlp",
    "ChipSNNConfig": "neuroposter.models.chip_snn",
    "ChipSNN": "neuroposter.models.chip_snn",
    "ChipCNN": "neuroposter.models.chip_cnn",
    "ANNTransformerConfig": "neuroposter.models.ann_transformer",
    "ANNTransformer": "neuroposter.models.ann_transformer",
    "CNNClassifier": "neuroposter.models.cnn",
    "ViTClassifier": "neuroposter.models.vit",
}


def __getattr__(name: str) -> Any:
    """Imports the model classes on first access (PEP 562), keeping ``import neuroposter.models`` light."""
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'neuroposter.models' has no attribute {name!r}")


def names(*, kind: str | None = None, inputs: str | Iterable[str] | None = None) -> tuple[str, ...]:
    """Registered model names (registration order), optionally only those of one ``kind`` and input kind(s).

    Args:
        kind: ``"snn"`` or ``"ann"`` (None: both).
        inputs: an input kind or several (e.g. :data:`FEATURE_INPUTS`; None: any).

    Raises:
        ValueError: an unknown kind or input kind (the message lists the valid ones).
    """
    if kind is not None and kind not in ("snn", "ann"):
        raise ValueError(f"unknown model kind {kind!r}; available: snn, ann")
    wanted = None if inputs is None else ({inputs} if isinstance(inputs, str) else set(inputs))
    valid = set(get_args(InputKind))
    if wanted is not None and not wanted <= valid:
        raise ValueError(f"unknown input kind(s) {sorted(wanted - valid)}; available: {', '.join(get_args(InputKind))}")
    return tuple(n for n in MODELS if (kind is None or MODELS.get(n).kind == kind)
                 and (wanted is None or MODELS.get(n).inputs in wanted))


def model_class(name: str) -> type[nn.Module]:
    """The class registered under ``name`` (imports its module now).

    Raises:
        KeyError: unknown model name (the message lists the valid names).
    """
    module, cls = MODELS.get(name).entry.split(":")
    return getattr(importlib.import_module(module), cls)


def build_model(name: str, **kwargs: Any) -> nn.Module:
    """Builds model ``name`` from its constructor keyword arguments (as stored in ``model.json``)."""
    return model_class(name)(**kwargs)
