"""Our model on Qwen2.5-VL checkpoints against transformers' Qwen2_5_VLForConditionalGeneration.

The tiny checkpoints keep the real 112-pixel windows (4x4 merged tokens), so images wider or taller
than 112 pixels split into several windows, most of them partial.
"""

from __future__ import annotations

import pytest
import torch
from test_model_parity import V, _chat, _mm

from model import Qwen2VL, Qwen2VLProcessor
from model.vision_qwen25 import window_order
from runtime.tiny_checkpoint import make_tiny_checkpoint
from tests.probes import noise_image


def _reference(path):
    from transformers import Qwen2_5_VLForConditionalGeneration

    return Qwen2_5_VLForConditionalGeneration.from_pretrained(path, dtype=torch.float32).eval()


@pytest.fixture(scope="module")
def proc(tiny_qwen25_checkpoint):
    return Qwen2VLProcessor.from_pretrained(tiny_qwen25_checkpoint)


@pytest.fixture(scope="module")
def ours(tiny_qwen25_checkpoint):
    return Qwen2VL.from_pretrained(tiny_qwen25_checkpoint, device="cpu")


@pytest.fixture(scope="module")
def ref(tiny_qwen25_checkpoint):
    return _reference(tiny_qwen25_checkpoint)


def test_config_picks_the_window_tower(ours):
    assert ours.config.model_type == "qwen2_5_vl" and ours.config.family == "Qwen2.5-VL"
    assert type(ours.visual).__name__ == "WindowVisionTower"
    assert ours.config.vision.window_tokens == 4 and ours.config.vision.fullatt_block_indexes == (1,)


# --- window order -----------------------------------------------------------------------------
GRIDS = {
    "one-partial-window": [[1, 4, 4]],
    "exact-windows": [[1, 16, 8]],
    "three-windows-in-a-row": [[1, 4, 24]],
    "partial-rows-and-cols": [[1, 10, 18], [1, 6, 14]],
    "two-frames": [[2, 10, 12]],
}


@pytest.mark.parametrize("case", GRIDS, ids=list(GRIDS))
@pytest.mark.parametrize("window_size", [112, 56, 168])
def test_window_order_matches_transformers(case, window_size):
    from transformers.vision_utils import get_vision_window_index

    grid = torch.tensor(GRIDS[case])
    want_index, want_cu = get_vision_window_index(grid, 2, window_size, 14)
    order, lengths = window_order(grid, 2, window_size // 28)
    assert torch.equal(order, want_index)
    cu = torch.tensor([0, *lengths]).cumsum(0) * 4
    assert torch.equal(cu.to(want_cu.dtype), want_cu)


# --- positions ----------------------------------------------------------------------------------
POSITION_CASES = {
    "no-image": ("plain text only", []),
    "one-wide": (f"look at {V} and answer", [(336, 56)]),
    "three-mixed": (f"{V}first {V}{V} end", [(56, 56), (252, 140), (140, 196)]),
}


@pytest.mark.parametrize("case", POSITION_CASES, ids=list(POSITION_CASES))
def test_positions_match_transformers(ours, ref, proc, case):
    text, sizes = POSITION_CASES[case]
    images = [noise_image(w, h, i) for i, (w, h) in enumerate(sizes)]
    batch = proc(text=text, images=images or None)
    grid = batch.get("image_grid_thw")
    want, want_deltas = ref.model.get_rope_index(
        batch["input_ids"], mm_token_type_ids=_mm(batch, proc), image_grid_thw=grid
    )
    positions, deltas = ours.positions(batch["input_ids"], grid)
    assert torch.equal(positions, want)
    assert torch.equal(deltas, want_deltas.view_as(deltas))


# --- vision features and logits -----------------------------------------------------------------
IMAGE_SETS = {
    # 4x4 merged tokens: less than one window
    "smaller-than-a-window": [(84, 56)],
    # 12x2 merged tokens: three windows (odd), each cut short in height
    "odd-windows-partial-height": [(336, 56)],
    # 9x5 merged tokens: 3x2 windows, the last column and row partial
    "partial-rows-and-columns": [(252, 140)],
    # several images in one prompt, each with its own windows
    "several-images": [(140, 196), (56, 56), (280, 112)],
}


def _inputs(batch):
    return {k: batch[k] for k in ("input_ids", "pixel_values", "image_grid_thw")}


@pytest.mark.parametrize("case", IMAGE_SETS, ids=list(IMAGE_SETS))
def test_vision_features_and_logits_match_transformers(ours, ref, proc, case):
    images = [noise_image(w, h, i) for i, (w, h) in enumerate(IMAGE_SETS[case])]
    batch = proc(text=_chat(proc, len(images)), images=images)
    pixels, grid = batch["pixel_values"], batch["image_grid_thw"]
    with torch.no_grad():
        features = ours.visual(pixels, grid)
        want_features = ref.model.visual(pixels, grid_thw=grid).pooler_output
        got = ours(**_inputs(batch))
        want = ref(**_inputs(batch), mm_token_type_ids=_mm(batch, proc)).logits
    assert (features - want_features).abs().max() <= 1e-4
    assert want.abs().max() > 1.0  # logits well above the tolerance
    assert (got - want).abs().max() <= 1e-4


def test_window_attention_changes_the_features(ours, proc):
    # With more than one window, attending over whole images in every block gives other features:
    # the parity above could not pass with window attention left out.
    batch = proc(text=_chat(proc, 1), images=[noise_image(252, 140, 0)])
    pixels, grid = batch["pixel_values"], batch["image_grid_thw"]
    windowed = ours.visual(pixels, grid)
    cfg = ours.visual.cfg
    all_full = tuple(range(cfg.depth))
    object.__setattr__(cfg, "fullatt_block_indexes", all_full)
    try:
        full = ours.visual(pixels, grid)
    finally:
        object.__setattr__(cfg, "fullatt_block_indexes", (1,))
    assert (windowed - full).abs().max() > 1e-2


def test_other_window_size_heads_and_full_blocks_match_transformers(tmp_path):
    # 56-pixel windows (2x2 merged tokens), full attention in the first and last of 4 blocks.
    path = make_tiny_checkpoint(
        tmp_path, seed=5, model_type="qwen2_5_vl",
        text_overrides=dict(
            hidden_size=128, num_attention_heads=4, num_key_value_heads=2,
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [4, 6, 6]},
        ),
        vision_overrides=dict(depth=4, hidden_size=48, num_heads=3, intermediate_size=40,
                              window_size=56, fullatt_block_indexes=[0, 3]),
    )  # fmt: skip
    ours = Qwen2VL.from_pretrained(path, device="cpu")
    assert ours.config.vision.window_tokens == 2
    proc = Qwen2VLProcessor.from_pretrained(path)
    images = [noise_image(182, 70, 0), noise_image(98, 126, 1)]
    batch = proc(text=_chat(proc, 2), images=images)
    with torch.no_grad():
        got = ours(**_inputs(batch))
        want = _reference(path)(**_inputs(batch), mm_token_type_ids=_mm(batch, proc)).logits
    assert (got - want).abs().max() <= 1e-4


# --- generation ---------------------------------------------------------------------------------
def test_greedy_16_tokens_identical_to_transformers(ours, ref, proc):
    images = [noise_image(336, 56, 7), noise_image(140, 196, 8)]
    batch = proc(text=_chat(proc, 2), images=images)
    out = ref.generate(**batch, mm_token_type_ids=_mm(batch, proc), max_new_tokens=16, do_sample=False)
    want = out[0, batch["input_ids"].shape[1] :].tolist()
    assert len(want) == 16  # no early EOS: all 16 are compared
    got = ours.generate(**_inputs(batch), max_new_tokens=16)
    assert got[0].tolist() == want


def test_video_input_keeps_its_clear_error(proc):
    video = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "What happens?"}]}]
    with pytest.raises(ValueError, match="video content is not supported"):
        proc.apply_chat_template(video)
