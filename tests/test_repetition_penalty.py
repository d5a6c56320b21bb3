"""generation_config.json's repetition_penalty, which transformers' generate (and vLLM) apply
by default: Qwen's Instruct checkpoints ship 1.05. Our generation applies it too, on one
sequence, on a left-padded batch, in a prefix-reusing session and through the backend."""

from __future__ import annotations

import pytest
import torch

from model import Qwen2VL, Qwen2VLProcessor
from model.generate import GenerationOptions, Sampling, generate
from model.session import GenerationSession
from tests.conftest import copy_checkpoint
from tests.probes import noise_image

#: Strong, so that on random tiny weights it changes greedy tokens early.
PENALTY = 1.8
STEPS = 24


def _penalized(config: dict) -> dict:
    return {**config, "repetition_penalty": PENALTY}


@pytest.fixture(scope="module")
def checkpoint(tiny_checkpoint, tmp_path_factory):
    return copy_checkpoint(tiny_checkpoint, tmp_path_factory.mktemp("penalty") / "ckpt",
                           file="generation_config.json", change=_penalized)


@pytest.fixture(scope="module")
def ours(checkpoint):
    return Qwen2VL.from_pretrained(checkpoint, device="cpu")


@pytest.fixture(scope="module")
def processor(checkpoint):
    return Qwen2VLProcessor.from_pretrained(checkpoint)


def _prompt(processor, text: str, images: int):
    content = [{"type": "image"}] * images + [{"type": "text", "text": text}]
    chat = processor.apply_chat_template([{"role": "user", "content": content}])
    return processor(text=chat, images=[noise_image(84, 56, i) for i in range(images)] or None)


def _reference(checkpoint, processor, batch, **settings) -> list[int]:
    """transformers' greedy tokens (to the EOS), with the checkpoint's generation_config.json."""
    from transformers import Qwen2VLForConditionalGeneration

    ref = Qwen2VLForConditionalGeneration.from_pretrained(checkpoint, dtype=torch.float32).eval()
    ids = batch["input_ids"]
    out = ref.generate(**batch, mm_token_type_ids=(ids == processor.image_token_id).int(),
                       do_sample=False, max_new_tokens=STEPS, **settings)
    return out[0, ids.shape[1]:].tolist()


def _ours(model, batch, **sampling) -> list[int]:
    inputs = {k: batch.get(k) for k in ("input_ids", "pixel_values", "image_grid_thw",
                                        "attention_mask")}
    options = GenerationOptions(max_new_tokens=STEPS, sampling=Sampling(**sampling))
    return generate(model, **inputs, options=options)[0].tokens


@pytest.mark.parametrize("images", [0, 1])
def test_the_checkpoints_penalty_is_applied_as_transformers_applies_it(checkpoint, ours,
                                                                       processor, images):
    batch = _prompt(processor, "say it again and again", images)
    expected = _reference(checkpoint, processor, batch)
    plain = _reference(checkpoint, processor, batch, repetition_penalty=1.0)
    assert expected != plain  # the penalty changes these tokens: the comparison means something
    assert ours.repetition_penalty == PENALTY
    assert _ours(ours, batch) == expected
    # Told otherwise, it is plain greedy decoding, as transformers' then.
    assert _ours(ours, batch, repetition_penalty=1.0) == plain


def test_a_padded_rows_padding_is_not_counted(ours, processor, monkeypatch):
    """transformers counts a left-padded row's pad tokens as its prompt's (vLLM pads nothing):
    here a row's prompt is its own tokens only, so it decodes as it would alone."""
    import model.generate

    seen = []
    real = model.generate.decode
    monkeypatch.setattr(model.generate, "decode", lambda model_, state, options, prompts: (
        seen.append(prompts), real(model_, state, options, prompts))[1])
    chats = [processor.apply_chat_template([{"role": "user", "content": text}])
             for text in ("hi", "a much longer question")]
    both = processor(text=chats)
    generate(ours, both["input_ids"], attention_mask=both["attention_mask"],
             options=GenerationOptions(max_new_tokens=2))
    assert seen == [[processor(text=chat)["input_ids"][0].tolist() for chat in chats]]


def test_a_session_and_a_padded_batch_penalize_each_row_by_its_own_tokens(ours, processor):
    """The padding of a shorter row is no token of its prompt; a session's reused prefix is."""
    short = _prompt(processor, "hi", 1)
    long = _prompt(processor, "a much longer question about the screen", 1)
    alone = [_ours(ours, short), _ours(ours, long)]
    chats = [processor.apply_chat_template([{"role": "user", "content": [
        {"type": "image"}, {"type": "text", "text": text}]}])
        for text in ("hi", "a much longer question about the screen")]
    both = processor(text=chats, images=[noise_image(84, 56, 0)] * 2)
    assert both["attention_mask"][0].sum() < both["attention_mask"].shape[1]  # padded
    assert [g.tokens for g in generate(
        ours, both["input_ids"], both["pixel_values"], both["image_grid_thw"],
        both["attention_mask"], GenerationOptions(max_new_tokens=STEPS))
    ] == alone

    session = GenerationSession(ours)
    options = GenerationOptions(max_new_tokens=STEPS)
    for _ in range(2):  # the second time from the cached prefix
        got = session.generate(long["input_ids"], long["pixel_values"], long["image_grid_thw"],
                               options)
        assert got.tokens == alone[1]


def test_a_penalty_that_is_no_number_above_0_is_named(tiny_checkpoint, tmp_path):
    for bad in (0, -1.1, "1.05", True):
        path = copy_checkpoint(tiny_checkpoint, tmp_path / f"ckpt{bad}",
                               file="generation_config.json",
                               change=lambda c, bad=bad: {**c, "repetition_penalty": bad})
        with pytest.raises(ValueError, match="generation_config.json: repetition_penalty must "
                                             "be a number above 0"):
            Qwen2VL.check_pretrained(path)
    with pytest.raises(ValueError, match="repetition_penalty must be a number above 0"):
        Sampling(repetition_penalty=float("nan"))
