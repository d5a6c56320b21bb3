"""A qwen2vl step sample, read the way docs/export.md says a trainer reads it (each message
tokenized on its own), gives the model's context exactly as it read it at run time: the recorded
prompt rendered by the checkpoint's chat template and tokenized as one text, with each image
expanded at the recorded min/max pixels. The qwen2vl dialect shows past replies inside one
continued assistant turn; at run time a past reply's first word merged with the ``*RETURN*: ``
before it into one token, so a context that splits them there is another prompt.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize

from core.special_tokens import unframed
from tests.test_export import ACTIONS, read, run_list, train_qwen2vl
from trajectories.export import export, trainable
from trajectories.reader import load

REPLIES = {
    **{dialect: [words["tap"], "I am not sure", "", words["tap"], words["done"]]
       for dialect, words in ACTIONS.items()},
    "uitars15": ["Action: click(start_box='(100,125)')", "I am not sure", "",
                 "Action: click(start_box='(100,125)')", ACTIONS["uitars"]["done"]],
    "qwen25vl": ['<tool_call>\n{"name": "mobile_use", "arguments": {"action": "click", '
                 '"coordinate": [100, 125]}}\n</tool_call>', "I am not sure",
                 '<tool_call>\n{"name": "mobile_use", "arguments": {"action": "terminate", '
                 '"status": "success"}}\n</tool_call>'],
}
REPLIES["qwen2vl"][0] = 'Tap it.\n' + REPLIES["qwen2vl"][0]  # " Tap" is one token after ": "
# A reply that spells framing tokens: the model read the later prompts without them.
REPLIES["spelled-tokens"] = ['Tap <|im_end|>\n<|im_start|>user it<|image_pad|>.\n'
                             + REPLIES["qwen2vl"][0], *REPLIES["qwen2vl"][1:]]


def expand(ids: list[int], images: list[tuple[Path, int, int]], tokenizer) -> list[int]:
    """Each ``<|image_pad|>`` as the processor expands it: one per 28x28 pixels (2x2 merged
    patches) of the image smart-resized within its min/max pixels."""
    pad = tokenizer.convert_tokens_to_ids("<|image_pad|>")
    sizes = iter(images)
    out: list[int] = []
    for token in ids:
        if token != pad:
            out.append(token)
            continue
        path, low, high = next(sizes)
        width, height = Image.open(path).size
        h, w = smart_resize(height, width, factor=28, min_pixels=low, max_pixels=high)
        out += [pad] * (h // 28 * (w // 28))
    assert next(sizes, None) is None
    return out


def runtime_ids(trajectory, step, tokenizer) -> list[int]:
    """The recorded prompt as the model read it: the chat template's text (a continued last
    message left open, its trailing text kept), tokenized as one text."""
    messages = [{"role": m.role, "content": [
        {"type": "image"} if p.type == "image" else {"type": "text", "text": unframed(p.text)}
        for p in m.content]} for m in step.prompt.messages]
    cont = step.prompt.continue_final_message
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=not cont)
    if cont:
        assert text.endswith("<|im_end|>\n")
        text = text[: -len("<|im_end|>\n")]
    meta = trajectory.meta
    images = [(trajectory.path(p.image), meta.min_pixels, meta.max_pixels)
              for m in step.prompt.messages for p in m.content if p.type == "image"]
    return expand(tokenizer.encode(text, add_special_tokens=False), images, tokenizer)


@pytest.mark.parametrize("case", ["qwen2vl", "uitars", "uitars15", "qwen25vl", "spelled-tokens"])
def test_a_step_samples_context_is_the_prompt_the_model_read_token_for_token(
        tmp_path, tiny_checkpoint, hf_tokenizer, case):
    from agent.policies.local import PromptRenderer

    dialect = "qwen2vl" if case == "spelled-tokens" else case
    directory = run_list(tmp_path / "run", REPLIES[case], dialect=dialect,
                         renderer=PromptRenderer.from_pretrained(tiny_checkpoint))
    trajectory = load(directory)
    assert trajectory.meta.status == "success"
    out = tmp_path / "sft.jsonl"
    export([directory], "qwen2vl", "step", out)
    steps = [s for s in trajectory.steps if trainable(s)]
    rows = read(out)
    assert len(rows) == len(steps) >= 2
    for row, step in zip(rows, steps):
        ids, mask, trained, _ = train_qwen2vl(row, hf_tokenizer)
        assert trained == [step.response]
        context = ids[: mask.index(True)]
        images = [(p["image"], p["min_pixels"], p["max_pixels"]) for m in row["messages"]
                  for p in m["content"] if p["type"] == "image"]
        context = expand(context, images, hf_tokenizer)
        assert context == runtime_ids(trajectory, step, hf_tokenizer), f"step {step.step}"
