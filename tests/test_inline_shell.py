"""Which commands the virtual phone runs without a shell, and the argv it gives them."""

from __future__ import annotations

import pytest

from envs.virtual_phone.inline_shell import SimpleCommand, split_simple

TOOLS = ("input", "screencap", "vphone")


@pytest.mark.parametrize("command, argv, tag", [
    ("input tap 1 2", ["input", "tap", "1", "2"], None),
    ("  input   tap\t1 2  ", ["input", "tap", "1", "2"], None),
    ("input tap 1 2; echo X4EXIT:$?", ["input", "tap", "1", "2"], "X4EXIT:"),
    ("screencap -p;echo rc=$?", ["screencap", "-p"], "rc="),
    ("input text 'a;b | $HOME *'", ["input", "text", "a;b | $HOME *"], None),
    ("input text 'a; echo rc=$?'; echo rc=$?", ["input", "text", "a; echo rc=$?"], "rc="),
    ('input text "two words"', ["input", "text", "two words"], None),
    ("input text a'b c'\"d\"", ["input", "text", "ab cd"], None),
    ("input text ''", ["input", "text", ""], None),
    ("vphone state set p '{\"a\": [1, 2]}'", ["vphone", "state", "set", "p", '{"a": [1, 2]}'],
     None),
])
def test_literal_commands_run_inline(command, argv, tag):
    assert split_simple(command, TOOLS) == SimpleCommand(argv, tag)


@pytest.mark.parametrize("command", [
    "", "   ", "echo hi", "ls /", "/system/bin/input tap 1 2", "VAR=1 input tap 1 2",
    "input text $HOME", "input text `id`", 'input text "$HOME"', 'input text "a\\"b"',
    "input text a|b", "input tap 1 2 && echo ok", "input tap 1 2 > out", "input text *",
    "input text a?", "input text [ab]", "input text ~", "input text #x", "input text (a)",
    "input text it\\'s", "input text 'open", "input tap 1 2; echo hi", "input tap 1\n2",
    "input tap 1 2; echo rc=$?; echo again",
])
def test_anything_else_goes_to_the_real_shell(command):
    assert split_simple(command, TOOLS) is None
