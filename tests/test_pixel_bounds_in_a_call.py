"""A pixel bound given with a call (0 or below) is refused by name. transformers' processor
fails on it too; ours once read 0 as "the checkpoint's bound" and resized anyway."""

from __future__ import annotations

import pytest
from PIL import Image

from agent.backends.base import Params
from core.geometry import smart_resize
from model.image_config import ImageProcessingConfig
from model.image_processing import preprocess_image


@pytest.mark.parametrize("bounds", [dict(max_pixels=0), dict(min_pixels=0),
                                    dict(max_pixels=-784), dict(min_pixels=-1, max_pixels=9)])
def test_a_bound_below_one_is_refused(bounds):
    image = Image.new("RGB", (500, 400), (10, 20, 30))
    name = next(k for k, v in bounds.items() if v < 1)
    with pytest.raises(ValueError, match=f"{name} must be above 0"):
        Params(**bounds)
    with pytest.raises(ValueError, match="min_pixels and max_pixels must be above 0"):
        preprocess_image(image, ImageProcessingConfig(), **bounds)
    with pytest.raises(ValueError, match="min_pixels and max_pixels must be above 0"):
        smart_resize(400, 500, **bounds)


def test_a_bound_of_one_is_taken_as_given():
    config = ImageProcessingConfig()
    # 1 pixel at most: the smallest image smart_resize makes, one factor square.
    assert config.resized_size(500, 400, max_pixels=1) == (28, 28)
    assert config.resized_size(500, 400, min_pixels=1) == config.resized_size(500, 400)
    assert Params(min_pixels=1, max_pixels=1).max_pixels == 1
