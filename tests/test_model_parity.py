"""Our Qwen2VL against transformers' Qwen2VLForConditionalGeneration on tiny random checkpoints."""

from __future__ import annotations

import pytest
import torch

import model.text
from model import Qwen2VL, Qwen2VLProcessor
from runtime.tiny_checkpoint import make_tiny_checkpoint
from tests.probes import noise_image

V = "<|vision_start|><|image_pad|><|vision_end|>"


def _reference(path):
    from transformers import Qwen2VLForConditionalGeneration

    return Qwen2VLForConditionalGeneration.from_pretrained(path, dtype=torch.float32).eval()


def _mm(batch, tiny_processor):
    return (batch["input_ids"] == tiny_processor.image_token_id).int()


@pytest.fixture(scope="module")
def ours(tiny_checkpoint):
    return Qwen2VL.from_pretrained(tiny_checkpoint, device="cpu")


@pytest.fixture(scope="module")
def ref(tiny_checkpoint):
    return _reference(tiny_checkpoint)


# --- positions ------------------------------------------------------------------------------
POSITION_CASES = {
    "no-image": ("plain text only, nothing else", []),
    "one-at-start": (f"{V}what is this?", [(56, 84)]),
    "one-in-middle": (f"look at {V} and answer", [(112, 56)]),
    "one-at-end": (f"the screen: {V}", [(60, 60)]),
    "two-back-to-back": (f"compare {V}{V} now", [(56, 112), (84, 56)]),
    "three-start-middle-back-to-back": (f"{V}first {V}{V} end", [(56, 56), (140, 56), (56, 140)]),
}


@pytest.mark.parametrize("case", POSITION_CASES, ids=list(POSITION_CASES))
def test_mrope_positions_match_transformers(ours, ref, tiny_processor, case):
    text, sizes = POSITION_CASES[case]
    images = [noise_image(w, h, i) for i, (w, h) in enumerate(sizes)]
    batch = tiny_processor(text=text, images=images or None)
    grid = batch.get("image_grid_thw")
    expected, expected_deltas = ref.model.get_rope_index(
        batch["input_ids"], mm_token_type_ids=_mm(batch, tiny_processor), image_grid_thw=grid
    )
    positions, deltas = ours.positions(batch["input_ids"], grid)
    assert torch.equal(positions, expected)
    assert torch.equal(deltas, expected_deltas.view_as(deltas))
    if images:
        assert int(deltas) != 0  # an image compresses positions: the delta is real


def test_mrope_positions_with_left_padding_match_transformers(ours, ref, tiny_processor):
    images = [noise_image(56, 112, 0), noise_image(84, 84, 1), noise_image(56, 56, 2)]
    batch = tiny_processor(text=[f"a {V} b", f"longer {V} text {V} here too"], images=images)
    grid = batch["image_grid_thw"]
    expected, expected_deltas = ref.model.get_rope_index(
        batch["input_ids"], mm_token_type_ids=_mm(batch, tiny_processor), image_grid_thw=grid,
        attention_mask=batch["attention_mask"],
    )  # fmt: skip
    positions, deltas = ours.positions(batch["input_ids"], grid, batch["attention_mask"])
    assert torch.equal(positions, expected)
    assert torch.equal(deltas, expected_deltas.view_as(deltas))


# --- logits ---------------------------------------------------------------------------------
def _chat(tiny_processor, n_images: int) -> str:
    content = [{"type": "image"} for _ in range(n_images)] + [{"type": "text", "text": "Describe."}]
    return tiny_processor.apply_chat_template([{"role": "user", "content": content}])


def _logits_diff(ours, ref, tiny_processor, text, images) -> float:
    batch = tiny_processor(text=text, images=images or None)
    extra = {}
    if images:
        extra = dict(pixel_values=batch["pixel_values"], image_grid_thw=batch["image_grid_thw"])
    with torch.no_grad():
        got = ours(input_ids=batch["input_ids"], **extra)
        want = ref(input_ids=batch["input_ids"], mm_token_type_ids=_mm(batch, tiny_processor), **extra).logits
    assert got.shape == want.shape
    assert want.abs().max() > 1.0  # the weights give logits well above the tolerance
    return float((got - want).abs().max())


IMAGE_SETS = {
    "text-only": [],
    "one-image": [(84, 56)],
    "three-images": [(56, 56), (112, 84), (56, 140)],
}


@pytest.mark.parametrize("case", IMAGE_SETS, ids=list(IMAGE_SETS))
def test_logits_match_transformers(ours, ref, tiny_processor, case):
    images = [noise_image(w, h, i) for i, (w, h) in enumerate(IMAGE_SETS[case])]
    assert _logits_diff(ours, ref, tiny_processor, _chat(tiny_processor, len(images)), images) <= 1e-4


def test_logits_match_with_other_head_dim_and_mrope_section(tmp_path):
    # head_dim 32 needs mrope_section summing to 16; GQA with 2 query heads per kv head.
    path = make_tiny_checkpoint(
        tmp_path,
        seed=3,
        text_overrides=dict(
            hidden_size=128, num_attention_heads=4, num_key_value_heads=2,
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [4, 6, 6]},
        ),
        vision_overrides=dict(embed_dim=48, num_heads=3),
    )  # fmt: skip
    ours = Qwen2VL.from_pretrained(path, device="cpu")
    assert ours.config.text.mrope_section == (4, 6, 6) and ours.config.text.head_dim == 32
    tiny_processor = Qwen2VLProcessor.from_pretrained(path)
    images = [noise_image(84, 56, 0), noise_image(56, 112, 1)]
    assert _logits_diff(ours, _reference(path), tiny_processor, _chat(tiny_processor, 2), images) <= 1e-4


@pytest.mark.parametrize("repeat_kv", [False, True], ids=["grouped", "repeated"])
def test_masked_forward_matches_unpadded_rows(ours, tiny_processor, monkeypatch, repeat_kv):
    """Left padding masks the batch's attention; "repeated" takes CUDA's path for that (keys
    and values repeated per query head) on the CPU."""
    if repeat_kv:
        monkeypatch.setattr(model.text, "REPEAT_KV_DEVICES", {"cpu"})
    texts = ["short one", "a rather longer prompt than the other"]
    batch = tiny_processor(text=texts)
    logits = ours(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    for i, text in enumerate(texts):
        alone = ours(input_ids=tiny_processor(text=text)["input_ids"])[0]
        assert (logits[i, -alone.shape[0] :] - alone).abs().max() <= 1e-4


# --- generation -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def image_prompt(tiny_processor):
    images = [noise_image(112, 84, 7), noise_image(56, 56, 8)]
    return tiny_processor(text=_chat(tiny_processor, 2), images=images)


@pytest.fixture(scope="module")
def reference_greedy(ref, tiny_processor, image_prompt):
    out = ref.generate(
        **image_prompt, mm_token_type_ids=_mm(image_prompt, tiny_processor), max_new_tokens=20, do_sample=False
    )
    return out[0, image_prompt["input_ids"].shape[1] :].tolist()


def _inputs(batch):
    return {k: batch[k] for k in ("input_ids", "pixel_values", "image_grid_thw")}


def test_greedy_20_tokens_identical_to_transformers(ours, image_prompt, reference_greedy):
    got = ours.generate(**_inputs(image_prompt), max_new_tokens=20)
    assert len(reference_greedy) == 20  # no EOS early on with these weights: all 20 are compared
    assert got.shape == (1, 20) and got.dtype == torch.long
    assert got[0].tolist() == reference_greedy


def test_generate_stops_at_eos_and_stop_string(ours, tiny_processor, image_prompt, reference_greedy):
    eos = reference_greedy[5]
    cut = reference_greedy.index(eos) + 1
    got = ours.generate(**_inputs(image_prompt), max_new_tokens=20, eos_token_ids=[eos])
    assert got[0].tolist() == reference_greedy[:cut]

    stop = tiny_processor.decode(reference_greedy[:9])[-3:]
    expected = next(k for k in range(1, 21) if stop in tiny_processor.decode(reference_greedy[:k]))
    for tokenizer in (tiny_processor, tiny_processor.tokenizer):
        got = ours.generate(**_inputs(image_prompt), max_new_tokens=20, stop=[stop], tokenizer=tokenizer)
        assert got[0].tolist() == reference_greedy[:expected]
    with pytest.raises(ValueError, match="tokenizer"):
        ours.generate(**_inputs(image_prompt), stop=["x"])


def test_sampling_is_seeded(ours, image_prompt, reference_greedy):
    kwargs = dict(_inputs(image_prompt), max_new_tokens=12, do_sample=True, temperature=1.5)
    a = ours.generate(**kwargs, seed=1)
    assert torch.equal(a, ours.generate(**kwargs, seed=1))
    assert any(not torch.equal(a, ours.generate(**kwargs, seed=s)) for s in (2, 3, 4))
    # A vanishing nucleus keeps only the top token: sampling degenerates to greedy.
    nucleus = ours.generate(**kwargs, seed=5, top_p=1e-6)
    assert nucleus[0].tolist() == reference_greedy[:12]


def test_default_eos_comes_from_generation_config(ours, tiny_processor):
    assert ours.eos_token_ids == tiny_processor.eos_token_ids
    assert set(ours.eos_token_ids) == {
        tiny_processor.tokenizer.token_to_id("<|im_end|>"), tiny_processor.tokenizer.token_to_id("<|endoftext|>")
    }
