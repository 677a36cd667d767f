"""ImagePolicy: output sizes, aspect handling, serialisation."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from neuroposter.data import ImagePolicy


def _poster(w: int = 182, h: int = 268) -> Image.Image:
    arr = np.zeros((h, w, 3), np.uint8)
    arr[:, :, 0] = 200
    return Image.fromarray(arr)


def test_native_is_identity_at_poster_size():
    img = _poster()
    out = ImagePolicy().apply(img)
    assert ImagePolicy().output_size == (268, 182)
    assert out.size == (182, 268) and np.array_equal(np.asarray(out), np.asarray(img))
    assert ImagePolicy().apply(_poster(300, 400)).size == (182, 268)


@pytest.mark.parametrize("mode", ["native", "fit", "crop", "squash"])
@pytest.mark.parametrize("size", [(224, 224), (268, 182), (100, 300)])
def test_output_size_and_mode(mode, size):
    policy = ImagePolicy(mode, *size)
    out = policy.apply(_poster().convert("L"))
    assert out.mode == "RGB" and out.size == (size[1], size[0]) and policy.output_size == size


def test_fit_letterboxes_and_crop_fills():
    fit = np.asarray(ImagePolicy("fit", 224, 224, fill=(0, 0, 255)).apply(_poster()))
    assert (fit[112, 0] == [0, 0, 255]).all() and fit[112, 112, 0] > 150  # padded sides, poster centre
    crop = np.asarray(ImagePolicy("crop", 224, 224).apply(_poster()))
    assert (crop[..., 0] > 150).all()  # no padding anywhere
    squash = np.asarray(ImagePolicy("squash", 224, 224).apply(_poster()))
    assert (squash[..., 0] > 150).all()


def test_round_trip_and_validation():
    p = ImagePolicy("fit", 224, 160, fill=(1, 2, 3))
    assert ImagePolicy.from_dict(p.to_dict()) == p
    assert p.to_dict()["resample"] == "bilinear"
    with pytest.raises(ValueError, match="unknown image policy"):
        ImagePolicy("stretch")
    with pytest.raises(ValueError):
        ImagePolicy("fit", 0, 10)
    with pytest.raises(ValueError):
        ImagePolicy.from_dict({"mode": "fit", "height": "x"})
    with pytest.raises(Exception):
        p.mode = "crop"  # frozen
