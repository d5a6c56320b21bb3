"""Checkpoint folders as users have them, and images no other test sends, against transformers:
image settings that leave a bound out, weights saved over an older save, tiny and extreme images."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from model import Qwen2VL, Qwen2VLProcessor
from runtime.tiny_checkpoint import make_tiny_checkpoint
from tests.conftest import copy_checkpoint

IDS = torch.tensor([[1, 5, 9, 200, 301, 17, 4, 88, 19, 23]])


def _image(width: int, height: int, mode: str = "RGB", seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (height, width, 4), dtype=np.uint8)
    if mode == "RGBA":
        return Image.fromarray(pixels, "RGBA")
    return Image.fromarray(pixels[..., :3].copy(), "RGB").convert(mode)


def _reference_class(model_type: str):
    import transformers

    if model_type == "qwen2_5_vl":
        return transformers.Qwen2_5_VLForConditionalGeneration
    return transformers.Qwen2VLForConditionalGeneration


# --- image settings -----------------------------------------------------------------------------
@pytest.mark.parametrize("settings", [{}, {"min_pixels": 6272}], ids=["no-bounds", "only-min"])
def test_image_settings_without_a_maximum_take_transformers_default(tiny_checkpoint, tmp_path,
                                                                    settings):
    """A preprocessor_config.json that names no max_pixels resizes as transformers does, to its
    default 1280*28*28, not to the released checkpoints' 12,845,056."""
    from transformers import Qwen2VLImageProcessorPil

    path = copy_checkpoint(tiny_checkpoint, tmp_path / "ckpt", "preprocessor_config.json",
                           lambda raw: {**{k: v for k, v in raw.items()
                                           if k not in ("min_pixels", "max_pixels")}, **settings})
    image = _image(1920, 1080)
    batch = Qwen2VLProcessor.from_pretrained(path)(text="<|image_pad|>", images=[image])
    reference = Qwen2VLImageProcessorPil.from_pretrained(path).preprocess([image],
                                                                          return_tensors="pt")
    assert batch["image_grid_thw"].tolist() == reference["image_grid_thw"].tolist()
    assert torch.equal(batch["pixel_values"], reference["pixel_values"])


# --- weights saved over an older save -------------------------------------------------------------
@pytest.mark.parametrize("first, then", [("1MB", None), (None, "1MB")],
                         ids=["single-over-shards", "shards-over-single"])
def test_a_folder_saved_twice_loads_the_weights_transformers_loads(tmp_path, first, then):
    """save_pretrained into a folder that holds an older save leaves part of it behind: the old
    index next to a new model.safetensors, or an old model.safetensors next to new shards. Both
    load, and give transformers' logits (it reads model.safetensors first)."""
    reference_class = _reference_class("qwen2_vl")
    path = make_tiny_checkpoint(tmp_path / "ckpt", seed=2, max_shard_size=first)
    resaved = reference_class.from_pretrained(path, dtype=torch.float32)
    with torch.no_grad():  # other weights, so that the old save and the new one tell apart
        for p in resaved.parameters():
            p.mul_(0.5)
    resaved.save_pretrained(path, **({"max_shard_size": then} if then else {}))
    assert (path / "model.safetensors").is_file()
    assert (path / "model.safetensors.index.json").is_file()

    reference = reference_class.from_pretrained(path, dtype=torch.float32).eval()
    with torch.no_grad():
        want = reference(input_ids=IDS, mm_token_type_ids=torch.zeros_like(IDS)).logits
        got = Qwen2VL.from_pretrained(path, device="cpu")(input_ids=IDS)
    assert (got - want).abs().max() <= 1e-4


# --- images no other test sends -------------------------------------------------------------------
ODD_IMAGES = [
    (1, 1, "RGB"),  # upscaled to min_pixels
    (27, 29, "P"),  # a palette image just under one merged token
    (28, 3000, "RGB"),  # one patch row wide, far above the budget's width
    (5, 990, "L"),  # aspect ratio 198, just inside transformers' limit of 200
    (100, 37, "RGBA"),
    (3000, 28, "CMYK"),
]


@pytest.mark.parametrize("model_type", ["qwen2_vl", "qwen2_5_vl"])
def test_odd_images_in_one_prompt_match_transformers(tmp_path, model_type):
    from transformers import Qwen2VLImageProcessorPil

    path = make_tiny_checkpoint(tmp_path / "ckpt", model_type=model_type,
                                preprocessor_overrides={"max_pixels": 200_704})
    processor = Qwen2VLProcessor.from_pretrained(path)
    images = [_image(w, h, mode, seed) for seed, (w, h, mode) in enumerate(ODD_IMAGES)]
    content = [{"type": "image"} for _ in images] + [{"type": "text", "text": "Describe."}]
    batch = processor(text=processor.apply_chat_template([{"role": "user", "content": content}]),
                      images=images)
    pixels = Qwen2VLImageProcessorPil.from_pretrained(path).preprocess(images, return_tensors="pt")
    assert batch["image_grid_thw"].tolist() == pixels["image_grid_thw"].tolist()
    assert torch.equal(batch["pixel_values"], pixels["pixel_values"])

    inputs = {k: batch[k] for k in ("input_ids", "pixel_values", "image_grid_thw")}
    mm = (batch["input_ids"] == processor.image_token_id).int()
    ours = Qwen2VL.from_pretrained(path, device="cpu")
    reference = _reference_class(model_type).from_pretrained(path, dtype=torch.float32).eval()
    want_positions, want_deltas = reference.model.get_rope_index(
        batch["input_ids"], mm_token_type_ids=mm, image_grid_thw=batch["image_grid_thw"])
    positions, deltas = ours.positions(batch["input_ids"], batch["image_grid_thw"])
    assert torch.equal(positions, want_positions)
    assert torch.equal(deltas, want_deltas.view_as(deltas))
    with torch.no_grad():
        want = reference(**inputs, mm_token_type_ids=mm).logits
        got = ours(**inputs)
    assert (got - want).abs().max() <= 1e-4
    out = reference.generate(**inputs, mm_token_type_ids=mm, max_new_tokens=8, do_sample=False)
    want_tokens = out[0, batch["input_ids"].shape[1] :].tolist()
    assert ours.generate(**inputs, max_new_tokens=8)[0].tolist() == want_tokens


@pytest.mark.parametrize("width, height, ratio", [(1, 201, "201"), (4020, 20, "201"),
                                                  (28, 5601, "200.036")])
def test_an_aspect_ratio_past_200_is_refused_as_transformers_refuses_it(tiny_processor, width,
                                                                        height, ratio):
    from transformers import Qwen2VLImageProcessorPil

    image = _image(width, height)
    with pytest.raises(ValueError, match="aspect ratio must be smaller than 200"):
        Qwen2VLImageProcessorPil().preprocess([image])
    with pytest.raises(ValueError, match=f"smaller than 200, got {ratio} for {width}x{height}"):
        tiny_processor(text="<|image_pad|>", images=[image])


def test_a_folder_named_like_weights_is_no_weights_file(tiny_checkpoint, tmp_path):
    """A ``model.safetensors`` folder (an unpacked archive, say) beside the shards is skipped:
    reading it was an IsADirectoryError."""
    from model.weight_files import checkpoint_files

    path = copy_checkpoint(tiny_checkpoint, tmp_path / "ckpt")
    (path / "model.safetensors").rename(path / "model-00001-of-00001.safetensors")
    (path / "model.safetensors").mkdir()
    assert checkpoint_files(path) == [path / "model-00001-of-00001.safetensors"]
    assert Qwen2VL.from_pretrained(path, device="cpu").lm_head.weight.shape[0] > 0
