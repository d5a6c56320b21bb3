"""A checkpoint's image settings other than the defaults: honoured as transformers'
Qwen2VLImageProcessorPil honours them (bit for bit), or refused by name."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest
from PIL import Image

from model.image_config import ImageProcessingConfig
from model.image_processing import preprocess_image
from tests.conftest import copy_checkpoint
from tests.test_model_processor import _image


def _checkpoint(tiny_checkpoint, tmp_path, settings: dict, drop: tuple[str, ...] = ()):
    """A copy of the tiny checkpoint whose preprocessor_config.json has ``settings``."""
    return copy_checkpoint(tiny_checkpoint, tmp_path / "ckpt", "preprocessor_config.json",
                           lambda raw: {**{k: v for k, v in raw.items() if k not in drop},
                                        **settings})


def _reference(path, images):
    from transformers import Qwen2VLImageProcessorPil

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Qwen2VLImageProcessorPil.from_pretrained(path)(images, return_tensors="np")


def _transparent_rgb() -> Image.Image:
    """An RGB image with a transparent colour (a PNG tRNS chunk): converting to RGB composites
    that colour onto white, taking the image as it is does not."""
    image = _image(90, 400, seed=6)
    image.info["transparency"] = image.getpixel((0, 0))
    return image


SETTINGS = {
    "nearest": {"resample": 0},
    "lanczos": {"resample": 1},
    "bilinear": {"resample": 2},
    "box": {"resample": 4},
    "hamming": {"resample": 5},
    "no-rescale": {"do_rescale": False},
    "rescale-factor": {"rescale_factor": 0.5 / 255},
    "no-normalize": {"do_normalize": False, "image_mean": None, "image_std": None},
    "neither": {"do_rescale": False, "do_normalize": False},
    "scalar-mean-std": {"image_mean": 0.5, "image_std": 0.25},
    "no-convert-rgb": {"do_convert_rgb": False},
    "size-only": {"size": {"shortest_edge": 20_000, "longest_edge": 60_000}},
    "size-and-bounds": {"size": {"shortest_edge": 20_000, "longest_edge": 60_000},
                        "min_pixels": 3136, "max_pixels": 200_000},
    "size-null": {"size": None},
}
#: Settings whose bounds come from size alone: the flat ones are left out of the file.
SIZE_ONLY = {"size-only", "size-null"}


@pytest.mark.parametrize("name", SETTINGS)
def test_image_settings_match_transformers(tiny_checkpoint, tmp_path, name):
    from model import Qwen2VLProcessor

    drop = ("min_pixels", "max_pixels") if name in SIZE_ONLY else ()
    path = _checkpoint(tiny_checkpoint, tmp_path, SETTINGS[name], drop)
    images = [_image(333, 517, seed=1), _image(1080, 2400, seed=2), _image(30, 30, seed=3),
              _transparent_rgb()]
    if name != "no-convert-rgb":  # which takes RGB images only (the next test)
        images += [_image(90, 400, "RGBA", seed=4), _image(50, 70, "L", seed=5)]
    reference = _reference(path, images)
    ours = Qwen2VLProcessor.from_pretrained(path)
    batch = ours(text="<|image_pad|>" * len(images), images=images)
    assert batch["image_grid_thw"].tolist() == reference["image_grid_thw"].tolist()
    assert np.array_equal(batch["pixel_values"].numpy(), reference["pixel_values"])  # bit for bit
    pads = (batch["input_ids"] == ours.image_token_id).sum().item()
    assert pads == int(reference["image_grid_thw"].prod(-1).sum()) // 4


@pytest.mark.parametrize("patch, temporal, merge", [(16, 2, 2), (14, 1, 2), (14, 2, 1), (8, 3, 4)])
def test_patch_settings_match_transformers(patch, temporal, merge):
    from transformers import Qwen2VLImageProcessorPil

    image = _image(333, 517, seed=7)
    config = ImageProcessingConfig(patch_size=patch, temporal_patch_size=temporal, merge_size=merge,
                                   max_pixels=200_000)
    reference = Qwen2VLImageProcessorPil(
        patch_size=patch, temporal_patch_size=temporal, merge_size=merge, max_pixels=200_000
    )([image], return_tensors="np")
    patches, grid = preprocess_image(image, config)
    assert [list(grid)] == reference["image_grid_thw"].tolist()
    assert np.array_equal(patches, reference["pixel_values"])


def test_without_rgb_conversion_other_modes_are_refused_by_name(tiny_checkpoint, tmp_path):
    """transformers feeds a non-RGB image's raw bands to the model, or fails on their count."""
    from model import Qwen2VLProcessor

    path = _checkpoint(tiny_checkpoint, tmp_path, {"do_convert_rgb": False})
    processor = Qwen2VLProcessor.from_pretrained(path)
    for mode in ("RGBA", "L"):
        with pytest.raises(ValueError, match=f"a {mode} image .*do_convert_rgb false"):
            processor(text="<|image_pad|>", images=[_image(90, 60, mode)])


@pytest.mark.parametrize("settings, drop, said", [
    ({"do_resize": False}, (), "do_resize False is not supported"),
    ({"resample": None}, (), "resample must be one of PIL's filters (Image.Resampling), not None"),
    ({"resample": 3.0}, (), "resample must be one of PIL's filters (Image.Resampling), not 3.0"),
    ({"resample": 9}, (), "resample must be one of PIL's filters (Image.Resampling), not 9"),
    ({"do_rescale": None}, (), "do_rescale must be true or false, not None"),
    ({"do_normalize": 0}, (), "do_normalize must be true or false, not 0"),
    ({"rescale_factor": None}, (), "rescale_factor must be a number, not None"),
    ({"rescale_factor": "1/255"}, (), "rescale_factor must be a number, not '1/255'"),
    ({"image_mean": None}, (), "image_mean must be a list of numbers, not None"),
    ({"size": {"shortest_edge": 3136}}, ("min_pixels", "max_pixels"),
     "max_pixels (or size's longest_edge) above 0, not 3136 and None"),
    ({"size": {"min_pixels": 3136, "max_pixels": 60_000}}, ("min_pixels", "max_pixels"),
     "not None and None"),
    ({"size": {"height": 224, "width": 224}}, ("min_pixels", "max_pixels"), "not None and None"),
    ({"min_pixels": 0}, (), "above 0, not 0 and 12845056"),
])
def test_settings_transformers_cannot_follow_are_refused_by_name(tiny_checkpoint, tmp_path,
                                                                 settings, drop, said):
    from model import Qwen2VLProcessor

    path = _checkpoint(tiny_checkpoint, tmp_path, settings, drop)
    with pytest.raises(ValueError, match=re.escape(said)) as caught:
        Qwen2VLProcessor.from_pretrained(path)
    assert str(path / "preprocessor_config.json") in str(caught.value)
