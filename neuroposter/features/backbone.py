"""The DenseNet-169 image backbone: weights resolution, the module, and the input normalisation.

The backbone is torchvision's ``densenet169().features`` followed by the final ReLU (the same
activation torchvision applies before its global pooling), so its output ``[B, 1664, H', W']``
is non-negative. Everything that needs "the network that produced these features" (the feature
store, the CNN baseline, its ONNX export) rebuilds it through :func:`build_backbone` from the
weights id recorded in the feature-store manifest.

Weights ids:
    ``imagenet``: torchvision's published ``DenseNet169_Weights.IMAGENET1K_V1``, read from the local
        torch hub cache (``$TORCH_HOME/hub/checkpoints``) or downloaded when online.
    ``random`` / ``random:<seed>``: a deterministic seeded initialisation (torchvision's own init
        scheme under ``torch.manual_seed(seed)``, seed 0 for ``random``): the same id gives the
        same weights in every process.
    ``file:<path>`` or a plain path: a ``state_dict`` loaded with ``torch.load(weights_only=True)``;
        recorded as ``file:<sha256 prefix>`` (with the path next to it) so a changed file is noticed.
    ``auto``: ``imagenet`` if it is available, otherwise ``random`` with a warning.
"""

from __future__ import annotations

import logging
import os
import re
import urllib.request
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from neuroposter._io import sha256_file
from neuroposter.errors import NeuroposterError

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from PIL import Image

__all__ = [
    "BACKBONE_NAME",
    "FEATURE_DIM",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "WeightsSpec",
    "resolve_weights",
    "imagenet_weights_path",
    "build_backbone",
    "preprocess",
    "preprocess_batch",
    "feature_grid",
]

log = logging.getLogger(__name__)

BACKBONE_NAME = "densenet169"
FEATURE_DIM = 1664  # channels of densenet169().features
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
FILE_ID_CHARS = 16  # hex chars of the sha256 kept in a ``file:`` weights id

# Old torchvision checkpoints name dense-layer modules ``norm.1`` etc. (dots are no longer allowed).
_OLD_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var|num_batches_tracked))$"
)


@dataclass(frozen=True)
class WeightsSpec:
    """A resolved weights choice.

    Attributes:
        id: the id recorded in manifests (``"imagenet"``, ``"random"``, ``"random:<seed>"``,
            ``"file:<sha256 prefix>"``).
        source: what to load: ``"imagenet"``, ``"random:<seed>"`` or an absolute file path.
        note: why the id differs from what was asked (e.g. the offline fallback of ``auto``), or "".
    """

    id: str
    source: str
    note: str = ""

    @property
    def path(self) -> Path | None:
        """The state-dict file for ``file:`` weights, else None."""
        return Path(self.source) if self.id.startswith("file:") else None


def imagenet_weights_path() -> Path:
    """Where torch's hub cache keeps torchvision's DenseNet-169 ImageNet checkpoint."""
    import torch
    from torchvision.models import DenseNet169_Weights

    url = DenseNet169_Weights.IMAGENET1K_V1.url
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)


def _offline() -> bool:
    return os.environ.get("NEUROPOSTER_OFFLINE", "") not in ("", "0")


def _can_download(timeout: float = 3.0) -> bool:
    """True when torchvision's weights server answers within ``timeout`` seconds."""
    if _offline():
        return False
    from torchvision.models import DenseNet169_Weights

    try:
        req = urllib.request.Request(DenseNet169_Weights.IMAGENET1K_V1.url, method="HEAD")
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - fixed https URL
            return 200 <= int(resp.status) < 400
    except Exception:  # noqa: BLE001 - any network failure means "not available"
        return False


def _no_imagenet_message() -> str:
    return (
        f"ImageNet weights for DenseNet-169 are not cached at {imagenet_weights_path()} and cannot be "
        "downloaded (offline); either copy torchvision's densenet169-b2777c0a.pth there (or set TORCH_HOME "
        "to a torch cache that holds it), or pass --weights PATH to a DenseNet-169 state dict, or use "
        "--weights random"
    )


def resolve_weights(weights: str | os.PathLike[str]) -> WeightsSpec:
    """Turns a user's weights choice into the id recorded in manifests and what to load.

    Args:
        weights: ``"auto"``, ``"imagenet"``, ``"random"``, ``"random:<seed>"``, ``"file:<path>"`` or a
            path to a state dict.

    Returns:
        The resolved :class:`WeightsSpec`.

    Raises:
        NeuroposterError: ``imagenet`` is not cached and cannot be downloaded, a file does not
            exist, or the id is not understood.
    """
    w = str(weights)
    if w == "auto":
        if imagenet_weights_path().is_file() or _can_download():
            return WeightsSpec("imagenet", "imagenet")
        note = (
            "ImageNet weights unavailable (offline and not in the torch cache at "
            f"{imagenet_weights_path()}); fell back to deterministic random weights 'random' - the features "
            "carry no ImageNet knowledge; pass --weights imagenet or PATH to change this"
        )
        warnings.warn(note, stacklevel=2)
        return WeightsSpec("random", "random:0", note)
    if w == "imagenet":
        if not imagenet_weights_path().is_file() and not _can_download():
            raise NeuroposterError(_no_imagenet_message())
        return WeightsSpec("imagenet", "imagenet")
    if w == "random":
        return WeightsSpec("random", "random:0")
    m = re.fullmatch(r"random:(\d+)", w)
    if m:
        return WeightsSpec(w, f"random:{int(m.group(1))}")
    path_str = w[len("file:"):] if w.startswith("file:") else w
    path = Path(path_str).expanduser()
    if path.is_file():
        digest = sha256_file(path)[:FILE_ID_CHARS]
        return WeightsSpec(f"file:{digest}", str(path.resolve()))
    if w.startswith("file:") and re.fullmatch(r"[0-9a-f]{%d}" % FILE_ID_CHARS, path_str):
        raise NeuroposterError(
            f"weights id {w!r} names a state-dict file by its hash; pass the file's path instead "
            "(the feature store manifest records it as extra.weights_path)"
        )
    raise NeuroposterError(
        f"weights {w!r}: not 'auto', 'imagenet', 'random', 'random:<seed>' or an existing state-dict file"
    )


class _Backbone:  # namespace for the lazily-defined torch module class
    cls: Any = None


def _backbone_class() -> Any:
    if _Backbone.cls is None:
        import torch
        from torch import nn

        class DenseNetBackbone(nn.Module):
            """``densenet169().features`` + ReLU: image ``[B,3,H,W]`` -> map ``[B,1664,H/32,W/32]``."""

            def __init__(self, features: nn.Module) -> None:
                super().__init__()
                self.features = features

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                # channels-last input: oneDNN's CPU convolutions run DenseNet-169 about twice as fast (measured:
                # 0.55 vs 1.06 s for 16 posters at 268x182 on 2 cores; outputs agree to ~2e-5); an ONNX export or
                # a trace keeps the default layout so that the exported graph has no layout ops
                if x.device.type == "cpu" and not (torch.onnx.is_in_onnx_export() or torch.jit.is_tracing()):
                    x = x.contiguous(memory_format=torch.channels_last)
                return torch.relu(self.features(x))

        _Backbone.cls = DenseNetBackbone
    return _Backbone.cls


def _clean_state_dict(sd: Mapping[str, Any]) -> dict[str, Any]:
    """Accepts a full densenet169, a ``.features`` or a backbone state dict; returns backbone keys."""
    out: dict[str, Any] = {}
    for key, value in sd.items():
        k = key[len("module."):] if key.startswith("module.") else key
        if k.startswith("classifier."):
            continue
        m = _OLD_KEY.match(k)
        if m:
            k = m.group(1) + m.group(2)
        if not k.startswith("features."):
            k = "features." + k
        out[k] = value
    return out


def build_backbone(weights: str | os.PathLike[str] | WeightsSpec = "auto") -> Any:
    """Builds the image -> feature-map module (eval mode, on CPU).

    Args:
        weights: a weights id or choice (see the module docstring) or a resolved :class:`WeightsSpec`.

    Returns:
        A ``torch.nn.Module`` mapping ``[B, 3, H, W]`` normalised images to ``[B, 1664, H', W']``
        non-negative feature maps (``H' = H // 32`` for even sizes, see :func:`feature_grid`).

    Raises:
        NeuroposterError: weights unavailable or not a DenseNet-169 state dict.
    """
    import torch
    from torchvision.models import densenet169

    spec = weights if isinstance(weights, WeightsSpec) else resolve_weights(weights)
    if spec.source == "imagenet":
        from torchvision.models import DenseNet169_Weights

        try:
            net = densenet169(weights=DenseNet169_Weights.IMAGENET1K_V1, progress=False)
        except Exception as exc:  # noqa: BLE001 - network / cache failures
            raise NeuroposterError(f"{_no_imagenet_message()} ({type(exc).__name__}: {exc})") from None
        model = _backbone_class()(net.features)
    elif spec.source.startswith("random:"):
        seed = int(spec.source.split(":", 1)[1])
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = densenet169(weights=None)
        model = _backbone_class()(net.features)
    else:
        path = Path(spec.source)
        try:
            sd = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001
            raise NeuroposterError(f"cannot load state dict {path}: {type(exc).__name__}: {exc}") from None
        if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
            sd = sd["state_dict"]
        if not isinstance(sd, dict):
            raise NeuroposterError(f"{path} does not hold a state dict (got {type(sd).__name__})")
        model = _backbone_class()(densenet169(weights=None).features)
        try:
            model.load_state_dict(_clean_state_dict(sd), strict=True)
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()
            raise NeuroposterError(
                f"{path} is not a DenseNet-169 state dict: {' '.join(first[:2])[:300]}"
            ) from None
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def preprocess(img: Image.Image) -> torch.Tensor:
    """An RGB PIL image (already sized by the dataset's image policy) -> ImageNet-normalised tensor.

    Args:
        img: a PIL image; converted to RGB if needed. No resizing happens here: the dataset's
            ``ImagePolicy`` fixes the size.

    Returns:
        float32 ``[3, H, W]``: ``(pixel / 255 - mean) / std`` per channel with the ImageNet mean/std.
    """
    import torch

    arr = np.asarray(img.convert("RGB") if img.mode != "RGB" else img, dtype=np.float32)  # [H, W, 3]
    mean = np.asarray(IMAGENET_MEAN, dtype=np.float32) * 255.0
    std = np.asarray(IMAGENET_STD, dtype=np.float32) * 255.0
    arr = (arr - mean) / std
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))  # [3, H, W]


def preprocess_batch(images: list[Image.Image]) -> torch.Tensor:
    """Stacks :func:`preprocess` over same-sized images -> ``[B, 3, H, W]``.

    Raises:
        ValueError: images of different sizes.
    """
    import torch

    sizes = {im.size for im in images}
    if len(sizes) > 1:
        raise ValueError(f"images in one batch must share a size, got {sorted(sizes)}")
    return torch.stack([preprocess(im) for im in images])


def feature_grid(height: int, width: int) -> tuple[int, int]:
    """Spatial size ``(H', W')`` of the DenseNet-169 feature map for an ``height x width`` input.

    conv0 (k7 s2 p3), pool0 (k3 s2 p1), then three 2x2 average-pool transitions:
    268x182 -> 8x5 (40 tokens), 224x224 -> 7x7 (49 tokens).
    """

    def _down(n: int) -> int:
        n = (n + 2 * 3 - 7) // 2 + 1  # conv0
        n = (n + 2 * 1 - 3) // 2 + 1  # pool0
        for _ in range(3):  # transitions
            n //= 2
        return n

    h, w = _down(int(height)), _down(int(width))
    if h < 1 or w < 1:
        raise ValueError(f"image {height}x{width} is too small for DenseNet-169 (needs at least 32x32)")
    return h, w
