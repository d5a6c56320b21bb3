"""apply_chat_template against transformers' rendering of the checkpoint's Jinja template, for
inputs the released template accepts that ours used to refuse: continuing a final message that is
not the assistant's, and a message whose content is null (an OpenAI-style assistant turn)."""

from __future__ import annotations

import pytest

IMAGE = {"type": "image"}


def _text(text: str) -> dict:
    return {"type": "text", "text": text}


CASES = {
    "continue-user-string": (
        [{"role": "user", "content": "Describe the screen"}], True),
    "continue-user-list-with-image": (
        [{"role": "system", "content": "Operate the phone."},
         {"role": "user", "content": [IMAGE, _text("Goal: open the ")]}], True),
    "continue-system": ([{"role": "system", "content": "You are"}], True),
    "null-content-assistant": (
        [{"role": "user", "content": [_text("hi"), IMAGE]},
         {"role": "assistant", "content": None},
         {"role": "user", "content": [IMAGE]}], False),
}


@pytest.fixture(scope="module")
def reference(tiny_checkpoint):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_checkpoint)  # renders the released Jinja template


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_rendering_matches_transformers(tiny_processor, reference, case):
    messages, cont = CASES[case]
    want = reference.apply_chat_template(messages, tokenize=False, continue_final_message=cont,
                                         add_generation_prompt=not cont)
    got = tiny_processor.apply_chat_template(messages, continue_final_message=cont,
                                             add_generation_prompt=not cont)
    assert got == want


@pytest.mark.parametrize("content", [None, [IMAGE]], ids=["null", "image-only"])
def test_continuing_a_message_without_text_is_refused_as_transformers_refuses(
        tiny_processor, reference, content):
    messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": content}]
    with pytest.raises(ValueError):
        reference.apply_chat_template(messages, tokenize=False, continue_final_message=True)
    with pytest.raises(ValueError, match="no text|needs text"):
        tiny_processor.apply_chat_template(messages, continue_final_message=True)
