"""Loading a checkpoint checks its own chat template against the built-in renderer: the released
Qwen2-VL / Qwen2.5-VL template loads, wherever transformers reads it from; a fine-tune's other
template is refused with the file and the first difference, unless the user opts out."""

from __future__ import annotations

import json
import re

import pytest

from model import Qwen2VLProcessor
from model.chat_template import OPT_OUT_ENV, PROBES
from runtime.tiny_checkpoint import CHAT_TEMPLATE
from tests.conftest import copy_checkpoint

DEFAULT_SYSTEM = "You are a helpful assistant."
# Fine-tunes' templates that prompt otherwise than the released one.
MODIFIED = {
    "other-system-default": CHAT_TEMPLATE.replace(DEFAULT_SYSTEM, "You are a GUI agent."),
    "no-system-default": CHAT_TEMPLATE.replace(
        "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\n"
        "You are a helpful assistant.<|im_end|>\n{% endif %}", ""),
    "extra-token-after-each-turn": CHAT_TEMPLATE.replace("<|im_end|>\n", "<|im_end|><|endoftext|>\n"),
    "trims-text": CHAT_TEMPLATE.replace("{{ content['text'] }}", "{{ content['text'] | trim }}"),
    "thinking-generation-prompt": CHAT_TEMPLATE.replace(
        "<|im_start|>assistant\n{% endif %}", "<|im_start|>assistant\n<think>\n{% endif %}"),
}
ALL_FILES = ("chat_template.json", "chat_template.jinja", "tokenizer_config.json",
             "processor_config.json")


@pytest.fixture(autouse=True)
def _no_opt_out(monkeypatch):
    monkeypatch.delenv(OPT_OUT_ENV, raising=False)


def _with_template(src, dst, template, file: str):
    """A copy of the tiny checkpoint whose only chat template is ``template``, in ``file``."""
    path = _without_template(src, dst)
    _write(path, template, file)
    return path


def _without_template(src, dst):
    """A copy of the tiny checkpoint with no chat template (tokenizer_config.json's dropped)."""
    def drop(config):
        del config["chat_template"]
        return config

    return copy_checkpoint(src, dst, "tokenizer_config.json", drop)


def _write(path, template, file: str) -> None:
    if file == "chat_template.jinja":
        (path / file).write_text(template)
    else:
        existing = path / file
        data = json.loads(existing.read_text()) if existing.is_file() else {}
        existing.write_text(json.dumps({**data, "chat_template": template}))


def _transformers_rendering(path, template: str, messages) -> str:
    from transformers import AutoTokenizer
    from transformers.utils.chat_template_utils import render_jinja_template

    tokens = AutoTokenizer.from_pretrained(path).special_tokens_map
    rendered, _ = render_jinja_template(conversations=[messages], chat_template=template,
                                        add_generation_prompt=True, **tokens)
    return rendered[0]


@pytest.mark.parametrize("file", ALL_FILES)
def test_the_released_template_loads_from_each_file(tiny_checkpoint, tmp_path, file):
    path = _with_template(tiny_checkpoint, tmp_path / "ckpt", CHAT_TEMPLATE, file)
    processor = Qwen2VLProcessor.from_pretrained(path)
    for messages in PROBES.values():  # the probes do agree with the released template
        assert processor.apply_chat_template(messages) == _transformers_rendering(
            path, CHAT_TEMPLATE, messages)


def test_a_checkpoint_without_a_template_loads(tiny_checkpoint, tmp_path):
    Qwen2VLProcessor.from_pretrained(_without_template(tiny_checkpoint, tmp_path / "ckpt"))


def test_the_released_template_with_generation_tags_loads(tiny_checkpoint, tmp_path):
    """TRL-style ``{% generation %}`` tags (assistant masks) render their body unchanged."""
    tagged = CHAT_TEMPLATE.replace(
        "{% if message['content'] is string %}{{ message['content'] }}",
        "{% if message['content'] is string %}{% generation %}{{ message['content'] }}"
        "{% endgeneration %}")
    assert tagged != CHAT_TEMPLATE
    path = _with_template(tiny_checkpoint, tmp_path / "ckpt", tagged, "chat_template.jinja")
    Qwen2VLProcessor.from_pretrained(path)


@pytest.mark.parametrize("file", ALL_FILES)
@pytest.mark.parametrize("change", MODIFIED)
def test_a_modified_template_is_refused_with_the_file_and_first_difference(
        tiny_checkpoint, tmp_path, file, change):
    template = MODIFIED[change]
    assert template != CHAT_TEMPLATE
    path = _with_template(tiny_checkpoint, tmp_path / "ckpt", template, file)
    with pytest.raises(ValueError) as refused:
        Qwen2VLProcessor.from_pretrained(path)
    message = str(refused.value)
    assert str(path / file) in message and OPT_OUT_ENV in message

    # The first probe that differs, at the first character that differs, as transformers
    # renders the checkpoint's template.
    builtin = Qwen2VLProcessor.from_pretrained(tiny_checkpoint)
    for name, messages in PROBES.items():
        theirs = _transformers_rendering(path, template, messages)
        ours = builtin.apply_chat_template(messages)
        if theirs != ours:
            break
    at = next(i for i in range(len(theirs)) if theirs[i:i + 1] != ours[i:i + 1])
    assert name in message
    assert f"First difference at character {at}:" in message
    shown = re.search(r"checkpoint: (.*)\n  built-in: +(.*)\n", message).groups()
    assert shown == (repr(theirs[max(0, at - 40):at + 40]), repr(ours[max(0, at - 40):at + 40]))


@pytest.mark.parametrize("template, error", [
    ("{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}"
     "{% endif %}" + CHAT_TEMPLATE,
     "the chat template fails on a conversation with a system message.*System role not supported"),
    ("{% if %}" + CHAT_TEMPLATE, "the chat template does not compile"),
], ids=["raises-on-a-probe", "syntax-error"])
def test_a_template_that_cannot_render_the_probes_is_refused(tiny_checkpoint, tmp_path, template,
                                                             error):
    path = _with_template(tiny_checkpoint, tmp_path / "ckpt", template, "chat_template.json")
    with pytest.raises(ValueError, match=f"chat_template.json: {error}.*{OPT_OUT_ENV}"):
        Qwen2VLProcessor.from_pretrained(path)


@pytest.mark.parametrize("checked, ignored", [
    ("chat_template.json", "chat_template.jinja"),
    ("chat_template.json", "tokenizer_config.json"),
    ("chat_template.jinja", "tokenizer_config.json"),
    ("processor_config.json", "chat_template.json"),
])
@pytest.mark.parametrize("modified", ["checked", "ignored"])
def test_the_template_transformers_reads_first_is_the_one_checked(tiny_checkpoint, tmp_path,
                                                                   checked, ignored, modified):
    from transformers import ProcessorMixin

    changed = MODIFIED["other-system-default"]
    path = _with_template(tiny_checkpoint, tmp_path / "ckpt",
                          changed if modified == "checked" else CHAT_TEMPLATE, checked)
    _write(path, changed if modified == "ignored" else CHAT_TEMPLATE, ignored)
    # transformers' processor reads the checked file's template
    assert ProcessorMixin.get_processor_dict(path)[0]["chat_template"] == (
        changed if modified == "checked" else CHAT_TEMPLATE)
    if modified == "checked":
        with pytest.raises(ValueError, match=re.escape(str(path / checked))):
            Qwen2VLProcessor.from_pretrained(path)
    else:
        Qwen2VLProcessor.from_pretrained(path)


def test_the_default_of_named_templates_is_checked(tiny_checkpoint, tmp_path):
    from transformers import AutoTokenizer

    changed = MODIFIED["other-system-default"]
    path = _with_template(tiny_checkpoint, tmp_path / "ckpt", [
        {"name": "tool_use", "template": CHAT_TEMPLATE}, {"name": "default", "template": changed},
    ], "tokenizer_config.json")
    assert AutoTokenizer.from_pretrained(path).get_chat_template() == changed
    with pytest.raises(ValueError, match="tokenizer_config.json: the checkpoint's chat template"):
        Qwen2VLProcessor.from_pretrained(path)


def test_the_opt_out_loads_with_the_built_in_template(tiny_checkpoint, tmp_path, monkeypatch):
    path = _with_template(tiny_checkpoint, tmp_path / "ckpt", MODIFIED["other-system-default"],
                          "chat_template.json")
    monkeypatch.setenv(OPT_OUT_ENV, "1")
    processor = Qwen2VLProcessor.from_pretrained(path)
    messages = [{"role": "user", "content": "hi"}]
    assert DEFAULT_SYSTEM in processor.apply_chat_template(messages)
    monkeypatch.setenv(OPT_OUT_ENV, "0")  # "0" is no opt-out
    with pytest.raises(ValueError, match=OPT_OUT_ENV):
        Qwen2VLProcessor.from_pretrained(path)
