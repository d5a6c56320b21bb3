"""The checkpoint's own chat template, checked once at load against the built-in renderer.

``Qwen2VLProcessor.apply_chat_template`` renders the released Qwen2-VL / Qwen2.5-VL template in
Python, with no Jinja on the hot path. A fine-tune that ships another template would then be
prompted unlike its training, silently; so loading renders a few probe conversations with both
and refuses a checkpoint whose template renders any of them otherwise, unless
``VLAGENT_IGNORE_CHAT_TEMPLATE=1`` says to prompt it with the built-in template anyway.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jinja2
import jinja2.ext
from jinja2 import nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

from model.config import read_json

OPT_OUT_ENV = "VLAGENT_IGNORE_CHAT_TEMPLATE"
_OPT_OUT = (f"{OPT_OUT_ENV}=1 in the environment loads it anyway, prompted with the built-in "
            "template (unlike its training)")
# The named special tokens transformers hands a template (its tokenizer's special_tokens_map).
_SPECIAL_TOKENS = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token",
                   "mask_token")

_IMAGE = {"type": "image"}


def _text(text: str) -> dict[str, str]:
    return {"type": "text", "text": text}


# The shapes the agent, the server and the CLI send: with and without a system message, string
# and list contents, images before and after text, texts with edge whitespace, several turns.
PROBES: dict[str, list[dict[str, Any]]] = {
    "no system message and a user turn with an image and text": [
        {"role": "user", "content": [_IMAGE, _text("Open the settings app.")]},
    ],
    "a system message and string contents": [
        {"role": "system", "content": "You operate a phone."},
        {"role": "user", "content": "What is on the screen?"},
    ],
    "a system message and several user/assistant turns with content lists": [
        {"role": "system", "content": [_text("You operate a browser.")]},
        {"role": "user", "content": [_text("Goal: book a flight.\n"), _IMAGE]},
        {"role": "assistant", "content": [_text("Thought: tap search.\nAction: tap(3, 4)")]},
        {"role": "user", "content": [_IMAGE, _text(" Step 2 \n")]},
        {"role": "assistant", "content": "Action: type('Paris')"},
        {"role": "user", "content": [_IMAGE]},
    ],
}


def find_chat_template(path: Path) -> tuple[Path, str] | None:
    """The file and the default template that transformers 5 renders a processor's prompts
    with: processor_config.json's "chat_template", chat_template.json's, chat_template.jinja,
    then the tokenizer's, tokenizer_config.json's. None: the checkpoint has none."""
    for name in ("processor_config.json", "chat_template.json", "chat_template.jinja",
                 "tokenizer_config.json"):
        file = path / name
        if not file.is_file():
            continue
        if name.endswith(".jinja"):
            try:
                return file, file.read_text(encoding="utf-8")
            except UnicodeDecodeError as e:
                raise ValueError(f"{file} is not UTF-8 text: {e}") from None
        template = read_json(file).get("chat_template")
        if isinstance(template, list):  # named templates: [{"name": ..., "template": ...}]
            template = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        if isinstance(template, dict):
            template = template.get("default")
        if isinstance(template, str):
            return file, template
    return None


class _Generation(jinja2.ext.Extension):
    """``{% generation %}...{% endgeneration %}`` (transformers' assistant-mask tag, common in
    fine-tunes' templates) renders its body unchanged."""

    tags = frozenset({"generation"})

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return nodes.CallBlock(self.call_method("_body"), [], [], body).set_lineno(lineno)

    def _body(self, caller):
        return caller()


def _raise_exception(message: str):
    raise jinja2.TemplateError(message)


def _tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    # transformers' filter: Jinja's own escapes HTML characters
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                      sort_keys=sort_keys)


def _compile(template: str) -> jinja2.Template:
    """The template compiled as transformers compiles a chat template: sandboxed, trimming
    blocks, with its ``raise_exception`` and ``tojson``."""
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[_Generation, jinja2.ext.loopcontrols])
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    return env.from_string(template)


def _special_tokens(path: Path) -> dict[str, str]:
    """tokenizer_config.json's named special tokens (a string or an added token's "content")."""
    file = path / "tokenizer_config.json"
    config = read_json(file) if file.is_file() else {}
    tokens = {}
    for name in _SPECIAL_TOKENS:
        value = config.get(name)
        value = value.get("content") if isinstance(value, dict) else value
        if isinstance(value, str):
            tokens[name] = value
    return tokens


def _excerpt(text: str, at: int) -> str:
    return repr(text[max(0, at - 40) : at + 40])


def check_chat_template(path: Path, render: Callable[[list[dict[str, Any]]], str]) -> None:
    """Refuse the checkpoint at ``path`` (ValueError) when its chat template renders a probe
    conversation otherwise than ``render`` (the built-in renderer, with a generation prompt)."""
    if os.environ.get(OPT_OUT_ENV, "") not in ("", "0"):
        return
    found = find_chat_template(path)
    if found is None:  # a base model: nothing says how it was prompted
        return
    file, template = found
    try:
        compiled = _compile(template)
    except jinja2.TemplateError as e:
        raise ValueError(f"{file}: the chat template does not compile ({e}); {_OPT_OUT}") from None
    tokens = _special_tokens(path)
    for name, messages in PROBES.items():
        try:
            theirs = compiled.render(messages=messages, tools=None, documents=None,
                                     add_generation_prompt=True, **tokens)
        except Exception as e:  # noqa: BLE001 - a template can fail in any way (raise_exception, types)
            raise ValueError(f"{file}: the chat template fails on a conversation with {name} "
                             f"({type(e).__name__}: {e}); {_OPT_OUT}") from None
        ours = render(messages)
        if theirs != ours:
            at = next((i for i, (a, b) in enumerate(zip(theirs, ours)) if a != b),
                      min(len(theirs), len(ours)))
            raise ValueError(
                f"{file}: the checkpoint's chat template renders a conversation with {name} "
                f"differently from vlagent's built-in Qwen2-VL template, so the model would be "
                f"prompted unlike its training. First difference at character {at}:\n"
                f"  checkpoint: {_excerpt(theirs, at)}\n  built-in:   {_excerpt(ours, at)}\n"
                f"{_OPT_OUT}."
            )
