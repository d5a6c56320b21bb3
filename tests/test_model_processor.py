"""Our processor against transformers: pixels, grids, chat template, token expansion and counting."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from PIL import Image

from model.image_config import CLIP_MEAN, CLIP_STD, ImageProcessingConfig
from model.image_processing import (
    ImageCache,
    normalize_plane,
    normalize_table,
    preprocess_image,
)

SCREEN_MAX = 1280 * 28 * 28


def _image(width: int, height: int, mode: str = "RGB", seed: int = 0) -> Image.Image:
    """Smooth gradients plus noise, so resampling errors show in every channel."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 // max(width, 1), y * 255 // max(height, 1), (x + y) % 256], axis=-1)
    noise = rng.integers(0, 40, (height, width, 3))
    rgb = np.clip(base + noise, 0, 255).astype(np.uint8)
    if mode == "RGBA":
        alpha = (rng.integers(0, 256, (height, width, 1))).astype(np.uint8)
        return Image.fromarray(np.concatenate([rgb, alpha], axis=-1), "RGBA")
    image = Image.fromarray(rgb, "RGB")
    return image.convert("L") if mode == "L" else image


CASES = [
    (1080, 2400, "RGB"),
    (2400, 1080, "RGB"),
    (1920, 1080, "RGB"),
    (800, 1280, "RGB"),
    (30, 30, "RGB"),  # upscaled to min_pixels
    (28, 3000, "RGB"),
    (333, 517, "RGB"),  # not a multiple of 28
    (112, 84, "RGB"),  # already on the grid: no resize
    (640, 400, "RGBA"),
    (500, 300, "L"),
]


@pytest.mark.parametrize("max_pixels", [None, SCREEN_MAX], ids=["default", "screen"])
@pytest.mark.parametrize("width,height,mode", CASES, ids=[f"{w}x{h}-{m}" for w, h, m in CASES])
def test_pixels_match_transformers(width, height, mode, max_pixels):
    from transformers import Qwen2VLImageProcessorPil

    image = _image(width, height, mode)
    cfg = ImageProcessingConfig()  # the released checkpoints' values
    reference = Qwen2VLImageProcessorPil(
        min_pixels=cfg.min_pixels, max_pixels=max_pixels or cfg.max_pixels
    ).preprocess([image], return_tensors="np")
    patches, grid = preprocess_image(image, cfg, max_pixels=max_pixels)
    assert [list(grid)] == reference["image_grid_thw"].tolist()
    assert patches.shape == reference["pixel_values"].shape
    assert np.array_equal(patches, reference["pixel_values"])  # bit for bit


def test_processor_batch_matches_transformers_image_processor(tiny_processor):
    from transformers import Qwen2VLImageProcessorPil

    images = [_image(300, 200, seed=1), _image(90, 400, "RGBA", seed=2)]
    batch = tiny_processor(text="<|image_pad|> and <|image_pad|>", images=images, max_pixels=SCREEN_MAX)
    reference = Qwen2VLImageProcessorPil(max_pixels=SCREEN_MAX).preprocess(
        images, return_tensors="pt"
    )
    assert batch["image_grid_thw"].tolist() == reference["image_grid_thw"].tolist()
    assert (batch["pixel_values"] - reference["pixel_values"]).abs().max() <= 1e-6


def test_one_image_may_come_alone_as_transformers_takes_it(tiny_processor):
    from transformers import Qwen2VLImageProcessorPil

    image = _image(120, 90, seed=3)
    alone = tiny_processor(text="look: <|image_pad|>", images=image)
    listed = tiny_processor(text="look: <|image_pad|>", images=[image])
    reference = Qwen2VLImageProcessorPil().preprocess(image, return_tensors="pt")
    assert alone["input_ids"].tolist() == listed["input_ids"].tolist()
    assert alone["image_grid_thw"].tolist() == reference["image_grid_thw"].tolist()
    assert (alone["pixel_values"] - reference["pixel_values"]).abs().max() <= 1e-6


def _array_forms() -> dict[str, object]:
    """Byte arrays as transformers' processor takes them; RGBA with an uneven alpha."""
    rgba = np.asarray(_image(77, 131, "RGBA", seed=4))
    forms = {"rgb hwc": rgba[..., :3], "rgba hwc": rgba, "gray hw1": rgba[..., :1],
             "rgb chw": rgba[..., :3].transpose(2, 0, 1), "rgba chw": rgba.transpose(2, 0, 1),
             "3 first and last": rgba[:3, :, :3]}  # ambiguous: channels first, as transformers
    forms["tensor chw"] = torch.from_numpy(forms["rgb chw"].copy())
    forms["tensor hwc"] = torch.from_numpy(forms["rgb hwc"].copy())
    return forms


@pytest.mark.parametrize("form", list(_array_forms()))
def test_image_arrays_are_read_as_transformers_reads_them(tiny_processor, form):
    from transformers import Qwen2VLImageProcessorPil

    array = _array_forms()[form]
    reference = Qwen2VLImageProcessorPil().preprocess(array, return_tensors="pt")
    for images in (array, [array]):  # alone or in a list
        batch = tiny_processor(text="look: <|image_pad|>", images=images)
        assert batch["image_grid_thw"].tolist() == reference["image_grid_thw"].tolist()
        assert torch.equal(batch["pixel_values"], reference["pixel_values"])


def test_images_may_come_in_a_list_per_text(tiny_processor):
    from transformers import Qwen2VLImageProcessorPil

    first, second = _image(70, 50, seed=7), _image(40, 90, seed=8)
    texts = ["<|image_pad|> then <|image_pad|>", "none here", "<|image_pad|>"]
    nested = tiny_processor(text=texts, images=[[first, second], [], [first]])
    flat = tiny_processor(text=texts, images=[first, second, first])
    reference = Qwen2VLImageProcessorPil().preprocess([[first, second], [], [first]],
                                                      return_tensors="pt")
    assert nested["input_ids"].tolist() == flat["input_ids"].tolist()
    assert nested["image_grid_thw"].tolist() == reference["image_grid_thw"].tolist()
    assert torch.equal(nested["pixel_values"], reference["pixel_values"])


def test_a_batch_of_arrays_is_several_images(tiny_processor):
    arrays = np.stack([np.asarray(_image(60, 40, seed=s)) for s in (5, 6)])
    batch = tiny_processor(text="<|image_pad|> <|image_pad|>", images=arrays)
    listed = tiny_processor(text="<|image_pad|> <|image_pad|>", images=list(arrays))
    assert batch["image_grid_thw"].shape[0] == 2
    assert torch.equal(batch["pixel_values"], listed["pixel_values"])


@pytest.mark.parametrize("bad, said", [
    (np.zeros((40, 60, 3), np.float32), "3-D bytes (uint8)"),
    (np.zeros((40, 60), np.uint8), "got 2-D uint8"),
    (np.zeros((1, 2, 40, 60, 3), np.uint8), "got 5-D uint8"),
    (torch.zeros(40, 60), "got 2-D float32"),
    (torch.zeros(40, 60, 3, requires_grad=True), "bytes (uint8) on the CPU"),
    (np.zeros((40, 60, 5), np.uint8), "no axis of 1, 3 or 4 channels"),
    ("photo.png", "PIL images or arrays of bytes, got str"),
])
def test_an_image_that_is_no_image_is_named(tiny_processor, bad, said):
    for images in ([bad], bad) if hasattr(bad, "__array__") else ([bad],):  # alone too
        with pytest.raises(TypeError, match=re.escape(said)):
            tiny_processor(text="look: <|image_pad|>", images=images)


MESSAGES = [
    [{"role": "user", "content": "Hello"}],
    [
        {"role": "system", "content": "Operate the phone."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Goal: open settings"},
                {"type": "image", "image": "ignored.png"},
                {"type": "image_url", "image_url": {"url": "data:,"}},
            ],
        },
        {"role": "assistant", "content": "*FUNCTION*: Tap *ARGS*: {\"point\": (1,2)}"},
        {"role": "user", "content": [{"type": "image"}, {"type": "image"}, {"type": "text", "text": "é 世界"}]},
    ],
]


@pytest.mark.parametrize("messages", MESSAGES, ids=["text", "images"])
@pytest.mark.parametrize("add_generation_prompt", [True, False])
def test_chat_template_matches_transformers(tiny_checkpoint, tiny_processor, messages, add_generation_prompt):
    from transformers import AutoTokenizer

    reference = AutoTokenizer.from_pretrained(tiny_checkpoint)  # renders the released Jinja template
    expected = reference.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=add_generation_prompt
    )
    assert tiny_processor.apply_chat_template(messages, add_generation_prompt=add_generation_prompt) == expected


def test_continue_final_message_matches_transformers(tiny_checkpoint, tiny_processor):
    from transformers import AutoTokenizer

    messages = MESSAGES[1][:2] + [{"role": "assistant", "content": "Thought: the gear icon"}]
    expected = AutoTokenizer.from_pretrained(tiny_checkpoint).apply_chat_template(
        messages, tokenize=False, continue_final_message=True
    )
    text = tiny_processor.apply_chat_template(messages, continue_final_message=True)
    assert text == expected
    assert text.endswith("Thought: the gear icon")


def test_tokenizer_matches_transformers_and_round_trips(tiny_checkpoint, tiny_processor):
    from transformers import AutoTokenizer

    text = "<|im_start|>user\nTap ✿FUNCTION✿ 🙂 <|box_start|>(1,2)<|box_end|><|im_end|>"
    reference = AutoTokenizer.from_pretrained(tiny_checkpoint)
    ids = tiny_processor.encode(text)
    assert ids == reference.encode(text, add_special_tokens=False)
    assert tiny_processor.decode(ids) == text
    assert "<|im_end|>" not in tiny_processor.decode(ids, skip_special_tokens=True)


def test_the_tiny_tokenizer_splits_and_normalizes_as_the_released_ones(tiny_checkpoint,
                                                                         tiny_processor):
    """Released checkpoints' tokenizer.json normalize to NFC and split digits one by one, and
    transformers' Qwen2Tokenizer does so whatever the file says; ours reads the file. The tiny
    checkpoint holds the same rule, so both count a runtime's "tapped (540, 478)" alike."""
    import json

    from transformers import AutoTokenizer
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    saved = json.loads((tiny_checkpoint / "tokenizer.json").read_text())
    split, byte_level = saved["pre_tokenizer"]["pretokenizers"]
    assert split["pattern"]["Regex"] == PRETOKENIZE_REGEX and saved["normalizer"]["type"] == "NFC"
    assert byte_level == {**byte_level, "type": "ByteLevel", "use_regex": False}
    reference = AutoTokenizer.from_pretrained(tiny_checkpoint)
    for text in ["Tap (1080, 2400) 0123456789", "tapped (540, 478)", "2026-05-16 step 12345",
                 "e\u0301 cafe\u0301 \ufb01 A\u030a", "line\r\n\r\n  two\tthree  ",
                 "it's 3.14 they'LL"]:
        ids = tiny_processor.encode(text)
        assert ids == reference.encode(text, add_special_tokens=False), text
        assert tiny_processor.decode(ids) == reference.decode(ids)


def test_image_placeholders_expand_to_merged_grid(tiny_processor):
    images = [_image(100, 60), _image(56, 56)]
    text = tiny_processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "x"}, {"type": "image"}]}]
    )
    batch = tiny_processor(text=text, images=images)
    grids = batch["image_grid_thw"]
    pads = (batch["input_ids"] == tiny_processor.image_token_id).sum().item()
    assert pads == int((grids.prod(-1) // 4).sum())
    assert batch["pixel_values"].shape == (int(grids.prod(-1).sum()), 1176)
    # Same length as transformers' processor would produce: text tokens + expanded pads.
    assert batch["input_ids"].shape[1] == len(tiny_processor.encode(text)) - 2 + pads
    assert tiny_processor.count_tokens(text, image_sizes=[im.size for im in images]) == batch["input_ids"].shape[1]


def test_count_tokens_honours_max_pixels(tiny_processor):
    text = tiny_processor.apply_chat_template([{"role": "user", "content": [{"type": "image"}]}])
    full = tiny_processor.count_tokens(text, image_sizes=[(1080, 2400)])
    small = tiny_processor.count_tokens(text, image_sizes=[(1080, 2400)], max_pixels=SCREEN_MAX)
    base = len(tiny_processor.encode(text)) - 1
    assert full - base == 3354  # 1092x2408 at the released checkpoints' bounds
    from transformers import Qwen2VLImageProcessorPil

    patches = Qwen2VLImageProcessorPil(max_pixels=SCREEN_MAX).get_number_of_image_patches(2400, 1080)
    assert small - base == patches // 4 <= 1280


def test_placeholder_count_mismatch_is_a_clear_error(tiny_processor):
    with pytest.raises(ValueError, match="1 image placeholder.*2 image"):
        tiny_processor(text="<|vision_start|><|image_pad|><|vision_end|>", images=[_image(28, 28)] * 2)
    with pytest.raises(ValueError, match="0 image placeholder.*1 image"):
        tiny_processor(text="no image here", images=[_image(28, 28)])
    with pytest.raises(ValueError, match="placeholder"):
        tiny_processor.count_tokens("<|image_pad|>", image_sizes=[])


def test_text_batch_is_left_padded(tiny_processor):
    batch = tiny_processor(text=["a", "a longer prompt"])
    ids, mask = batch["input_ids"], batch["attention_mask"]
    assert ids.shape[0] == 2 and mask[0, 0] == 0 and mask[0, -1] == 1
    assert ids[0, mask[0].bool()].tolist() == tiny_processor.encode("a")


def _counting_resizes(monkeypatch) -> list[tuple[int, int]]:
    """Record the size of every PIL resize (on any thread) from now on."""
    sizes: list[tuple[int, int]] = []
    resize = Image.Image.resize

    def counting(self, size, *args, **kwargs):
        sizes.append(tuple(size))
        return resize(self, size, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "resize", counting)
    return sizes


def test_a_repeated_image_is_preprocessed_once(tiny_checkpoint, monkeypatch):
    from model import Qwen2VLProcessor

    processor = Qwen2VLProcessor.from_pretrained(tiny_checkpoint)  # a cache of its own
    resizes = _counting_resizes(monkeypatch)
    screen, other = _image(333, 517, seed=3), _image(333, 517, seed=4)  # same size, other pixels
    first = processor(text="<|image_pad|>", images=[screen], max_pixels=SCREEN_MAX)
    assert resizes, "the first call resizes"
    resizes.clear()
    again = processor(
        text="<|image_pad|> <|image_pad|>", images=[screen.copy(), screen], max_pixels=SCREEN_MAX
    )
    assert resizes == []
    n = first["pixel_values"].shape[0]
    assert torch.equal(again["pixel_values"][:n], first["pixel_values"])
    assert torch.equal(again["pixel_values"][n:], first["pixel_values"])

    changed = processor(text="<|image_pad|>", images=[other], max_pixels=SCREEN_MAX)
    assert resizes, "a different image of the same size is preprocessed"
    expected, _ = preprocess_image(other, processor.image_config, max_pixels=SCREEN_MAX)
    assert np.array_equal(changed["pixel_values"].numpy(), expected)
    resizes.clear()
    smaller = processor(text="<|image_pad|>", images=[screen], max_pixels=100 * 28 * 28)
    assert resizes, "pixel bounds that give another size are another entry"
    assert smaller["pixel_values"].shape[0] < n


def test_image_cache_keeps_only_the_latest_entries(monkeypatch):
    cache = ImageCache(ImageProcessingConfig(), entries=2)
    images = [_image(100, 60, seed=s) for s in range(3)]
    resizes = _counting_resizes(monkeypatch)
    for image in images:
        cache(image)
    cache(images[2])  # the newest: still there
    cache(images[1])
    per_image = len(resizes) // 3
    assert per_image > 0 and len(resizes) == 3 * per_image
    cache(images[0])  # the oldest was dropped when the third came in
    assert len(resizes) == 4 * per_image
    patches, _ = cache(images[0])
    assert not patches.flags.writeable  # shared by every hit: nobody may write to it


def test_odd_pixel_count_normalizes_like_the_byte_table():
    planes = np.random.default_rng(5).integers(0, 256, (3, 5, 7), dtype=np.uint8)
    config = ImageProcessingConfig()
    table = normalize_table(config)
    for c in range(3):
        out = np.empty(planes[c].shape, np.float32)
        normalize_plane(planes[c], c, config, out)
        assert np.array_equal(out, table[c][planes[c]])
    reference = (planes.astype(np.float64) * (1 / 255)).astype(np.float32)  # transformers' rescale
    mean, std = (np.asarray(v, np.float32)[:, None, None] for v in (CLIP_MEAN, CLIP_STD))
    assert np.array_equal(table[np.arange(3)[:, None, None], planes], (reference - mean) / std)


def test_image_digests_tell_images_apart_as_their_patches_do(tiny_processor):
    screen, other = _image(333, 517, seed=3), _image(333, 517, seed=4)
    prompt = "<|image_pad|> <|image_pad|> <|image_pad|>"
    assert "image_digests" not in tiny_processor(text="<|image_pad|>", images=[screen])

    def digests(images, max_pixels=SCREEN_MAX):
        out = tiny_processor(text=prompt, images=images, max_pixels=max_pixels,
                             return_image_digests=True)["image_digests"]
        assert out.shape == (3, 32) and out.dtype == torch.uint8
        return [bytes(row.tolist()) for row in out]

    same, copy, different = digests([screen, screen.copy(), other])
    assert same == copy and same != different
    assert digests([screen] * 3, max_pixels=100 * 28 * 28)[0] != same  # other pixel bounds


NESTED = {"min_pixels": 3136, "max_pixels": 200_704, "patch_size": 14, "temporal_patch_size": 2,
          "merge_size": 2, "image_mean": [0.5, 0.5, 0.5], "image_std": [0.25, 0.5, 0.75],
          "image_processor_type": "Qwen2VLImageProcessor"}


@pytest.mark.parametrize("flat_too", [False, True], ids=["nested-only", "both"])
def test_image_settings_nested_in_processor_config_are_read_as_transformers_reads_them(
        tiny_checkpoint, tmp_path, flat_too):
    """transformers 5 saves a processor's image settings inside processor_config.json (and
    prefers them to preprocessor_config.json when both are there)."""
    import json
    import shutil

    from transformers import Qwen2VLImageProcessorPil

    from model import Qwen2VLProcessor

    path = shutil.copytree(tiny_checkpoint, tmp_path / "ckpt")
    if not flat_too:
        (path / "preprocessor_config.json").unlink()
    (path / "processor_config.json").write_text(json.dumps(
        {"image_processor": NESTED, "processor_class": "Qwen2VLProcessor"}))
    image = _image(1080, 2400, seed=3)
    ours = Qwen2VLProcessor.from_pretrained(path)
    assert ours.image_config.max_pixels == NESTED["max_pixels"]
    batch = ours(text="<|image_pad|>", images=[image])
    reference = Qwen2VLImageProcessorPil.from_pretrained(path).preprocess(
        [image], return_tensors="pt")
    assert batch["image_grid_thw"].tolist() == reference["image_grid_thw"].tolist()
    assert (batch["pixel_values"] - reference["pixel_values"]).abs().max() <= 1e-6


@pytest.mark.parametrize("settings, said", [
    ({"max_pixels": "lots"}, "max_pixels must be a whole number"),
    ({"min_pixels": 10_000, "max_pixels": 5_000}, "min_pixels 10000 is above max_pixels 5000"),
    ({"image_mean": [0.5, 0.5]}, "image_mean must be 3 numbers"),
    ({"image_std": [0.5, 0.0, 0.5]}, "image_std must be above 0"),
    ({"size": "big"}, "size must be an object"),
    ({"patch_size": 16}, "vision tower takes (14, 2, 2)"),
])
def test_unusable_image_settings_are_refused_naming_the_file(tiny_checkpoint, tmp_path, settings,
                                                             said):
    import re

    from model import Qwen2VLProcessor
    from tests.conftest import copy_checkpoint

    path = copy_checkpoint(tiny_checkpoint, tmp_path / "ckpt", "preprocessor_config.json",
                           lambda raw: {**raw, **settings})
    file = path / "preprocessor_config.json"
    with pytest.raises(ValueError, match=re.escape(said)) as caught:
        Qwen2VLProcessor.from_pretrained(path)
    if "vision tower" not in said:
        assert str(file) in str(caught.value)
