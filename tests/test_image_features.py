"""Qwen2VL.image_features: the vision tower in groups of whole images equals one pass over all."""

import numpy as np
import pytest
import torch
from PIL import Image

from model import Qwen2VL, modeling


@pytest.fixture(scope="module", params=["qwen2", "qwen25"])
def model(request, tiny_checkpoint, tiny_qwen25_checkpoint):
    path = tiny_checkpoint if request.param == "qwen2" else tiny_qwen25_checkpoint
    return Qwen2VL.from_pretrained(path, device="cpu", dtype="fp32")


@pytest.mark.parametrize("cap", [1, 40, 150, 10_000])
def test_groups_give_the_features_of_one_pass(model, tiny_processor, monkeypatch, cap):
    rng = np.random.default_rng(cap)
    sizes = [(84, 56), (56, 112), (140, 84), (56, 56), (112, 168)]
    images = [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for w, h in sizes]
    content = [{"type": "image"} for _ in images] + [{"type": "text", "text": "x"}]
    text = tiny_processor.apply_chat_template([{"role": "user", "content": content}])
    batch = tiny_processor(text=text, images=images)
    pixels, grids = batch["pixel_values"], batch["image_grid_thw"]
    patches = grids.prod(-1).tolist()
    passes: list[list[int]] = []  # the patch count of each image in each pass
    forward = model.visual.forward
    with torch.inference_mode():
        whole = model.visual(pixels, grids)
        monkeypatch.setattr(modeling, "VISION_GROUP_PATCHES", cap)
        monkeypatch.setattr(model.visual, "forward",
                            lambda p, g: passes.append(g.prod(-1).tolist()) or forward(p, g))
        grouped = model.image_features(pixels, grids)
    torch.testing.assert_close(grouped, whole, rtol=1e-5, atol=1e-5)
    # Whole images, in order; a group within the cap unless it is one bigger image, and no
    # group could have taken the next image too.
    assert [n for group in passes for n in group] == patches
    assert all(len(group) == 1 or sum(group) <= cap for group in passes)
    assert all(sum(a) + b[0] > cap for a, b in zip(passes, passes[1:]))
    if cap >= sum(patches):
        assert len(passes) == 1
    if cap == 1:
        assert len(passes) == len(images)
