"""How a poster image becomes the fixed-size RGB image every later stage sees.

Kaggle posters are 182x268 (W x H) thumbnails. DenseNet-169 gives a 7x7 map only for a 224x224
input, so the resize/crop policy changes what the features mean and is recorded in the dataset
manifest (``config.image_policy``) and in every feature store built from it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Mapping

from PIL import Image

__all__ = ["POLICY_MODES", "NATIVE_SIZE", "ImagePolicy"]

POLICY_MODES: tuple[str, ...] = ("native", "fit", "crop", "squash")
NATIVE_SIZE: tuple[int, int] = (268, 182)  # (H, W) of a Kaggle poster thumbnail
_RESAMPLE = Image.Resampling.BILINEAR


@dataclass(frozen=True)
class ImagePolicy:
    """A resize policy from any poster to an ``height x width`` RGB image.

    Modes:
        native: the posters' own size (default 268x182); images already at that size pass
            through untouched, the rare image of another size is resized to it.
        fit: letterbox: scale to fit inside ``height x width`` keeping the aspect ratio, pad
            with ``fill``.
        crop: scale so the short side fills the target, then centre crop.
        squash: resize to ``height x width`` ignoring the aspect ratio.

    Attributes:
        mode: one of :data:`POLICY_MODES`.
        height: output height in pixels.
        width: output width in pixels.
        fill: RGB padding colour of ``fit``.
    """

    mode: str = "native"
    height: int = NATIVE_SIZE[0]
    width: int = NATIVE_SIZE[1]
    fill: tuple[int, int, int] = (0, 0, 0)

    def __post_init__(self) -> None:
        if self.mode not in POLICY_MODES:
            raise ValueError(f"unknown image policy {self.mode!r}; valid: {', '.join(POLICY_MODES)}")
        for name in ("height", "width"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 8 or value > 4096:
                raise ValueError(f"image {name} must be an integer in [8, 4096], got {value!r}")
        fill = tuple(int(c) for c in self.fill)
        if len(fill) != 3 or any(not 0 <= c <= 255 for c in fill):
            raise ValueError(f"fill must be an RGB triple in [0, 255], got {self.fill!r}")
        object.__setattr__(self, "fill", fill)

    @property
    def output_size(self) -> tuple[int, int]:
        """``(H, W)`` of every image :meth:`apply` returns."""
        return (self.height, self.width)

    def apply(self, img: Image.Image) -> Image.Image:
        """Returns ``img`` as an RGB image of :attr:`output_size` under this policy."""
        img = img.convert("RGB") if img.mode != "RGB" else img
        tw, th = self.width, self.height
        w, h = img.size
        if (w, h) == (tw, th):
            return img
        if self.mode in ("native", "squash"):
            return img.resize((tw, th), _RESAMPLE)
        if self.mode == "fit":
            scale = min(tw / w, th / h)
            nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
            canvas = Image.new("RGB", (tw, th), self.fill)
            canvas.paste(img.resize((nw, nh), _RESAMPLE), ((tw - nw) // 2, (th - nh) // 2))
            return canvas
        # crop
        scale = max(tw / w, th / h)
        nw, nh = max(tw, round(w * scale)), max(th, round(h * scale))
        left, top = (nw - tw) // 2, (nh - th) // 2
        return img.resize((nw, nh), _RESAMPLE).crop((left, top, left + tw, top + th))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description (recorded in manifests)."""
        d = asdict(self)
        d["fill"] = list(self.fill)
        d["resample"] = "bilinear"
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ImagePolicy":
        """Rebuilds a policy from :meth:`to_dict` output (unknown keys are ignored)."""
        try:
            return cls(mode=str(d.get("mode", "native")), height=int(d.get("height", NATIVE_SIZE[0])),
                       width=int(d.get("width", NATIVE_SIZE[1])), fill=tuple(d.get("fill", (0, 0, 0))))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"bad image policy {dict(d)!r}: {exc}") from None
