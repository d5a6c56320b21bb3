"""A text whose closing quote is escaped or missing is refused, never typed with the call's end.

A model that ends its text with a backslash (a Windows folder, ``C:\\Users\\``) and writes it
once, ``type(content='C:\\Users\\')``, escapes its own closing quote; one may also leave the
quote out. Each dialect read the string on to the end of the reply, and typed the call's closing
``')`` (``"}``, ``"}}``) as part of the text, with the line break after it as an Enter.
"""

from __future__ import annotations

import pytest

from actions.dialects import ParseError, get_dialect
from actions.dialects.base import PastStep
from core.geometry import Screen

SCREEN = Screen(1080, 2400)
MOBILE = '<tool_call>\n{"name": "mobile_use", "arguments": {"action": "type", "text": %s}}'


@pytest.mark.parametrize(("dialect", "reply"), [
    ("qwen2vl", '*FUNCTION*: Type *ARGS*: {"text": "C:\\Users\\"}'),
    ("qwen2vl", "*FUNCTION*: Type *ARGS*: {'text': 'a\\'}"),
    ("qwen2vl", '*FUNCTION*: Type *ARGS*: {"text": "a\\"}\n'),
    ("qwen25vl", MOBILE % '"a\\"'),
    ("qwen25vl", MOBILE % '"a\\" ) ) ' + "\n"),
    ("uitars", "Thought: type it.\nAction: type(content='C:\\Users\\')"),
    ("uitars", "Action: type(content='a\\')\n"),
    ("uitars", 'Action: type(content="a\\")'),
    ("uitars", "Action: type(content='say \\'hi\\')"),
    # The closing quote left out.
    ("uitars", "Action: type(content='it\\'s)"),
    ("uitars", "Thought: x\nAction: type(content='hello)\n"),
    ("qwen2vl", '*FUNCTION*: Type *ARGS*: {"text": "hello}'),
    ("qwen25vl", MOBILE % '"hello'),
])
def test_a_text_whose_closing_quote_is_escaped_or_missing_is_a_parse_error(dialect, reply):
    with pytest.raises(ParseError, match="never closed"):
        get_dialect(dialect, "phone").parse(reply, SCREEN)


@pytest.mark.parametrize(("dialect", "reply", "text"), [
    ("qwen2vl", '*FUNCTION*: Type *ARGS*: {"text": "C:\\\\Users\\\\"}', "C:\\Users\\"),
    ("qwen25vl", MOBILE % '"a\\\\"' + "\n</tool_call>", "a\\"),
    ("uitars", "Action: type(content='C:\\\\Users\\\\')", "C:\\Users\\"),
    # An escaped quote inside a text that goes on, and one closed properly, are text.
    ("uitars", "Action: type(content='print(\\'hi\\')')", "print('hi')"),
    ("qwen2vl", '*FUNCTION*: Type *ARGS*: {"text": "say \\"hi\\" now"}', 'say "hi" now'),
    # A reply that stops inside its text is still read as far as it goes.
    ("qwen2vl", '*FUNCTION*: Type *ARGS*: {"text": "abc', "abc"),
    ("uitars", "Action: type(content='abc", "abc"),
])
def test_backslashes_and_quotes_written_as_the_format_escapes_them_arrive(dialect, reply, text):
    assert get_dialect(dialect, "phone").parse(reply, SCREEN).text == text


def test_the_history_shows_such_a_reply_as_written():
    reply = MOBILE % '"a\\"'
    step = PastStep(reply, "Error: the tool call cannot be read", None)
    shown = "".join(part.text or "" for message in
                    get_dialect("qwen25vl", "phone").render_step(step, 0)
                    for part in message.content if hasattr(part, "text"))
    assert '"text": "a\\"}}' in shown
