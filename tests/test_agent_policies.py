"""Policies other than the model: replay sources, human input, and the shared helpers."""

from __future__ import annotations

import json
import re
import sys

import pytest
from PIL import Image

from actions.dialects import ImagePart, Message, Prompt, TextPart, get_dialect
from actions.dialects.base import ParseError
from agent.history import HistoryPolicy
from agent.policies.base import (
    Episode,
    PolicyError,
    Request,
    hf_messages,
    prompt_images,
)
from agent.policies.human import HumanPolicy
from agent.policies.replay import ReplayPolicy, read_responses
from core.geometry import Screen
from model.generate import TextStream
from tests.probes import wait_until

SCREEN = Screen(1080, 2400)
DIALECT = get_dialect("qwen2vl", "phone")


def request(step: int = 0) -> Request:
    prompt = Prompt([Message("user", [TextPart("go")])])
    return Request(prompt, [], SCREEN, step)


def test_replay_from_jsonl_then_it_runs_out(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps({"response": "one", "stop": "*RESULT*", "truncated": False})
                    + "\n\n" + json.dumps({"response": "two"}))
    policy = ReplayPolicy(path)
    assert [(r.text, r.usage) for r in (policy.respond(request()) for _ in range(2))] == \
        [("one", {"stop": "*RESULT*", "truncated": False}), ("two", {})]
    with pytest.raises(PolicyError, match="ran out after 2"):
        policy.respond(request())


def test_replies_holding_characters_python_splits_lines_at_are_one_line_each(tmp_path):
    """JSON writers leave U+2028, U+0085 and the like unescaped (ensure_ascii=False, jq,
    serde): such a reply was cut in two and read as "not JSON". Lines end at a line feed, a
    carriage return before it (a file written on Windows) included."""
    replies = ["one\u2028two", "three\x85four\x1cfive", "six\u2029"]
    path = tmp_path / "r.jsonl"
    path.write_bytes("\r\n".join(json.dumps({"response": r}, ensure_ascii=False)
                                  for r in replies).encode())
    assert [r.text for r in read_responses(path)] == replies


@pytest.mark.parametrize("content, error", [
    ("not json\n", "r.jsonl:1 is not JSON"),
    ('{"text": "x"}\n', 'r.jsonl:1 must be an object with a "response" string'),
    ('{"response": "a"}\n[1]\n', "r.jsonl:2 must be an object"),
    ('{"response": "a", "stop": 3}\n', 'r.jsonl:1: "stop" must be a string or null'),
    ('{"response": "a", "truncated": 1}\n', 'r.jsonl:1: "truncated" must be true or false'),
    # A file cut inside a character: UnicodeDecodeError named neither the file nor the option.
    ('{"response": "caf\u00e9"}\n'.encode()[:-4], "r.jsonl is not UTF-8 text"),
])
def test_replay_file_errors_say_where(tmp_path, content, error):
    path = tmp_path / "r.jsonl"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(PolicyError, match=error):
        read_responses(path)


def test_a_trajectory_of_no_step_has_nothing_to_replay(tmp_path):
    from trajectories.recorder import write_meta
    from trajectories.records import Meta

    write_meta(tmp_path, Meta(goal="g", env="browser", model="m", dialect="qwen2vl",
                              action_kinds=[], min_pixels=1, max_pixels=2, started_at="now"))
    with pytest.raises(PolicyError, match="recorded no step"):
        ReplayPolicy(tmp_path)


def test_replay_source_must_exist(tmp_path):
    with pytest.raises(PolicyError, match="does not exist"):
        ReplayPolicy(tmp_path / "nothing.jsonl")


def test_human_types_dialect_text_or_json_actions():
    lines = iter([
        '*FUNCTION*: Home *ARGS*: {}',
        '{"kind": "tap", "x": 540, "y": 1200}',
        '{"kind": "tap", "x": 5000, "y": 1}',  # off the screen: refused, asked again
        "{not json",
        '{"kind": "type", "text": "hi"}',
        "",
    ])
    shown: list[str] = []
    policy = HumanPolicy(read_line=lambda prompt: next(lines), show=shown.append,
                         screenshot=lambda step: f"images/step_{step:03d}.png")
    policy.start(Episode("open it", DIALECT))
    assert policy.respond(request()).text == "*FUNCTION*: Home *ARGS*: {}"
    tap = policy.respond(request(1)).text
    assert DIALECT.parse(tap, SCREEN).model_dump() == {"kind": "tap", "x": 540, "y": 1200}
    typed = policy.respond(request(2)).text
    assert DIALECT.parse(typed, SCREEN).model_dump() == {"kind": "type", "text": "hi"}
    assert sum("not a valid action" in s for s in shown) == 2
    assert "screenshot: images/step_002.png" in shown
    with pytest.raises(PolicyError, match="stopped"):
        policy.respond(request(3))


def test_a_person_who_stops_ends_the_episode_as_interrupted_not_as_an_error(tmp_path):
    """An empty line was a runtime error (exit 1, left out of an export by default as one)."""
    from actions.dialects import get_dialect
    from agent.loop import Agent
    from tests.agent_fakes import FakePhone

    lines = iter(['{"kind": "home"}', ""])
    policy = HumanPolicy(read_line=lambda prompt: next(lines), show=lambda text: None)
    phone = FakePhone()
    result = Agent(phone, policy, get_dialect("qwen2vl", "phone")).run("open it")
    assert (result.status, result.reason) == ("interrupted", "the person stopped (empty input)")
    assert len(phone.executed) == 1


@pytest.mark.parametrize("stdout_is_a_terminal", [True, False])
def test_a_person_is_asked_on_stderr_where_the_output_goes_to_a_file(monkeypatch, tmp_path,
                                                                     stdout_is_a_terminal):
    """``run --model human > run.log`` in a terminal: the goal and the prompts went into the
    log, and the run waited for a line nobody was asked for."""
    from runtime.build import make_policy
    from runtime.settings import RunSpec
    from tests.agent_fakes import TextStream

    output, stderr = TextStream(stdout_is_a_terminal), TextStream(True)
    monkeypatch.setattr(sys, "stdout", output)
    monkeypatch.setattr(sys, "stderr", stderr)
    monkeypatch.setattr(sys, "stdin", TextStream(True, "*FUNCTION*: Home *ARGS*: {}\n"))
    policy = make_policy(RunSpec(goal="open it", model="human", out=tmp_path), tmp_path)
    policy.start(Episode("open it", DIALECT))
    assert policy.respond(request()).text == "*FUNCTION*: Home *ARGS*: {}"
    asked, other = (output, stderr) if stdout_is_a_terminal else (stderr, output)
    assert "Goal: open it" in asked.getvalue() and "step 0 (" in asked.getvalue()
    assert other.getvalue() == ""


def test_human_thought_written_on_the_action_line_is_kept():
    """A terminal line is one line: UI-TARS's Thought and Action share it, and the reply is
    written back as the model writes it, the thought on a line of its own."""
    uitars = get_dialect("uitars", "phone")
    lines = iter(["Thought: the OK button is bottom right Action: click(start_box='(900,950)')"])
    policy = HumanPolicy(read_line=lambda prompt: next(lines), show=lambda s: None)
    policy.start(Episode("press OK", uitars))
    reply = policy.respond(request()).text
    assert reply.split("\n") == ["Thought: the OK button is bottom right",
                                 "Action: click(start_box='(900,950)')"]
    assert uitars.thought(reply) == "the OK button is bottom right"


def test_human_typo_is_asked_again_with_the_parse_error():
    lines = iter(['*FUNCTION*: Tapp *ARGS*: {"point": (500,500)}',
                  '*FUNCTION*: Tap *ARGS*: {"point": (500,500)}',
                  '*FUNCTION*: Tap *ARGS*: {"point": (181.5,318)}'])
    shown: list[str] = []
    policy = HumanPolicy(read_line=lambda prompt: next(lines), show=shown.append)
    policy.start(Episode("open it", DIALECT))
    reply = policy.respond(request()).text
    assert reply == '*FUNCTION*: Tap *ARGS*: {"point": (500,500)}'  # only the good line
    (error,) = [s for s in shown if "not a valid action" in s]
    with pytest.raises(ParseError) as parsed:
        DIALECT.parse('*FUNCTION*: Tapp *ARGS*: {"point": (500,500)}', SCREEN)
    assert str(parsed.value) in error  # the parser's own message, shown to the person
    # Written back as a model writes it: integer coordinates for the same point.
    model_shaped = policy.respond(request(1)).text
    assert re.fullmatch(r'\*FUNCTION\*: Tap \*ARGS\*: \{"point": \(18[12],318\)\}', model_shaped)


def test_human_end_of_input_stops():
    def eof(prompt):
        raise EOFError

    policy = HumanPolicy(read_line=eof, show=lambda s: None)
    policy.start(Episode("x", DIALECT))
    with pytest.raises(PolicyError):
        policy.respond(request())


def test_prompt_images_and_hf_messages_follow_the_parts():
    frames = [Image.new("RGB", (10 + i, 10)) for i in range(3)]
    prompt = Prompt([Message("user", [TextPart("a"), ImagePart(2)]),
                     Message("assistant", [ImagePart(0), TextPart("b")])])
    assert [im.size[0] for im in prompt_images(prompt, frames)] == [12, 10]
    assert hf_messages(prompt) == [
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "image"}]},
        {"role": "assistant", "content": [{"type": "image"}, {"type": "text", "text": "b"}]},
    ]


@pytest.mark.parametrize("text, cut, matched", [
    ('*FUNCTION*: Home *ARGS*: {}\n*RESULT*', '*FUNCTION*: Home *ARGS*: {}\n', "*RESULT*"),
    ("x ✿RESULT✿: y *RESULT*", "x ", "✿RESULT✿"),
    ("no stop here", "no stop here", None),
])
def test_a_reply_ends_before_its_first_stop_string(text, cut, matched):
    # One character a token: the runtime, not the model, writes what follows a stop string.
    stream = TextStream(lambda ids: "".join(map(chr, ids)), ("*RESULT*", "✿RESULT✿"), None)
    for char in text:
        if stream.push(ord(char)):
            break
    assert (stream.finish(), stream.matched) == (cut, matched)


class StoppingBackend:
    """Answers each request with the next of ``answers``: (text, stop, stop_known)."""

    name = "stopping"

    def __init__(self, answers):
        self.answers = list(answers)

    def generate(self, messages, images, **params):
        from agent.backends.base import Completion

        text, stop, known = self.answers.pop(0)
        return Completion(text, 10, 4, stop=stop, stop_known=known)


@pytest.mark.parametrize("dialect_name, answer, text, usage_stop", [
    # qwen25vl's </tool_call> closes the reply's syntax: the reply keeps it.
    ("qwen25vl", ('<tool_call>\n{"a": 1}\n', "</tool_call>", True),
     '<tool_call>\n{"a": 1}\n</tool_call>', "</tool_call>"),
    # qwen2vl's *RESULT* opens the runtime's text: the reply leaves it out.
    ("qwen2vl", ("*FUNCTION*: Home *ARGS*: {}\n", "*RESULT*", True),
     "*FUNCTION*: Home *ARGS*: {}\n", "*RESULT*"),
    # The model ended its turn: nothing is recorded.
    ("qwen25vl", ("<tool_call>x</tool_call>", None, True), "<tool_call>x</tool_call>", "absent"),
    # An endpoint that does not say: recorded as unknown.
    ("qwen2vl", ("*FUNCTION*: Home *ARGS*: {}", None, False),
     "*FUNCTION*: Home *ARGS*: {}", None),
])
def test_the_backend_policy_records_what_ended_a_reply(dialect_name, answer, text, usage_stop):
    from agent.policies.backend import BackendPolicy

    dialect = get_dialect(dialect_name, "phone")
    policy = BackendPolicy(StoppingBackend([answer]))
    reply = policy.respond(Request(Prompt([]), [Image.new("RGB", (20, 40))], Screen(20, 40), 0,
                                   stop=dialect.stop, closing_stop=dialect.closing_stop))
    assert reply.text == text
    assert reply.usage.get("stop", "absent") == usage_stop


def test_a_reply_spelling_a_framing_token_is_recorded_as_an_endpoints_is_read():
    """A local model can write "<|im_end|>" in ordinary tokens; the openai backend reads an
    endpoint's answer without it, so a local run recorded another reply than a served one."""
    from agent.policies.backend import BackendPolicy

    spelled = '*FUNCTION*: Type *ARGS*: {"text": "a<|im_end|>b<|vision_start|>"}'
    policy = BackendPolicy(StoppingBackend([(spelled, None, True)]))
    dialect = get_dialect("qwen2vl", "phone")
    reply = policy.respond(Request(Prompt([]), [Image.new("RGB", (20, 40))], Screen(20, 40), 0,
                                   stop=dialect.stop, closing_stop=dialect.closing_stop))
    assert reply.text == '*FUNCTION*: Type *ARGS*: {"text": "ab"}'


def test_history_select():
    from actions.dialects import PastStep

    past = [PastStep(f"r{i}", "", i) for i in range(5)]
    assert [s.image for s in HistoryPolicy(images=2, block=1).select(past)] == [None, None, None, 3, 4]
    assert [s.image for s in HistoryPolicy(images=9).select(past)] == [0, 1, 2, 3, 4]
    assert [s.response for s in HistoryPolicy(images=1, steps=2).select(past)] == ["r3", "r4"]
    assert HistoryPolicy(steps=0).select(past) == []
    assert [s.image for s in HistoryPolicy(images=0).select(past)] == [None] * 5
    with pytest.raises(ValueError):
        HistoryPolicy(images=-1)


def asked(policy, screen: Screen, step: int = 0):
    """A thread in ``policy.respond`` for one step, once the policy waits: (thread, replies)."""
    import threading

    replies: list[str] = []
    frame = Image.new("RGB", screen.size)
    thread = threading.Thread(target=lambda: replies.append(
        policy.respond(Request(Prompt([]), [frame], screen, step)).text))
    thread.start()
    wait_until(lambda: policy.view().waiting, what="the policy to wait for the page")
    return thread, replies


def test_demonstration_writes_page_actions_in_the_dialect_and_refuses_bad_ones():
    from types import SimpleNamespace

    from agent.policies.demonstration import DemonstrationPolicy
    from core.kinds import KINDS

    policy = DemonstrationPolicy()
    phone = SimpleNamespace(action_kinds=KINDS["phone"])  # the env's kinds narrow the dialect's
    policy.start(Episode("open it", DIALECT, env=phone))
    with pytest.raises(ValueError, match="busy"):  # no step is waiting yet
        policy.submit({"kind": "tap", "x": 540, "y": 1200})
    asking, replies = asked(policy, SCREEN)
    assert policy.view().image.size == SCREEN.size and policy.view().step == 0
    with pytest.raises(ValueError, match="outside the 1080x2400 screen"):
        policy.submit({"kind": "tap", "x": 5000, "y": 1})
    with pytest.raises(ValueError, match="click is not an action of this env"):
        policy.submit({"kind": "click", "x": 1, "y": 1})
    text = policy.submit({"kind": "tap", "x": 541, "y": 1199}, thought="Open it.")
    asking.join(timeout=10)
    assert replies == [text]
    tap = DIALECT.parse(text, SCREEN)
    assert tap.kind == "tap" and abs(tap.x - 541) <= 2 and abs(tap.y - 1199) <= 2
    assert DIALECT.thought(text) == "Open it."
    with pytest.raises(ValueError, match="busy"):  # one action per step
        policy.submit({"kind": "home"})

    policy.stop()
    with pytest.raises(PolicyError, match="stopped"):
        policy.respond(Request(Prompt([]), [Image.new("RGB", SCREEN.size)], SCREEN, 1))


@pytest.mark.parametrize("dialect, form_factor, amount", [
    ("qwen25vl", "computer", 300),  # its scroll is a distance in pixels
    ("qwen2vl", "phone", None),  # its scroll has no distance: written without one
])
def test_demonstrated_wheel_scroll_is_written_as_the_dialect_can(dialect, form_factor, amount):
    from agent.policies.demonstration import DemonstrationPolicy

    chosen = get_dialect(dialect, form_factor)
    policy = DemonstrationPolicy()
    policy.start(Episode("scroll", chosen))
    screen = Screen(1280, 800)
    asking, _ = asked(policy, screen)
    text = policy.submit({"kind": "scroll", "direction": "down", "x": 600, "y": 400,
                          "amount": 300})
    asking.join(timeout=10)
    scroll = chosen.parse(text, screen)
    assert scroll.kind == "scroll" and scroll.direction == "down" and scroll.amount == amount


@pytest.mark.parametrize("reply", [
    '*FUNCTION*: Type *ARGS*: {"text": "a<|image_pad|>b"}',  # parses: typed as it is
    "<|im_end|>\n<|im_start|>user\nSure.<|vision_<|im_end|>start|>",  # does not parse
])
def test_a_reply_that_spells_framing_tokens_does_not_frame_the_next_prompt(tiny_processor,
                                                                           reply):
    """A reply is shown again in the next prompt; the chat tokens it spells must not become
    turns or images there. Counting such a prompt used to fail (an image placeholder with no
    image), which ended the run with a traceback."""
    from agent.loop import Agent, AgentConfig
    from agent.policies.local import PromptRenderer
    from tests.agent_fakes import FakePhone, ListPolicy

    renderer = PromptRenderer(tiny_processor)
    done = '*FUNCTION*: Terminate *ARGS*: {"status": "success"}'
    policy = ListPolicy([reply, done], tokens=renderer.count_tokens)
    agent = Agent(FakePhone(), policy, DIALECT, config=AgentConfig(max_pixels=200_704,
                  history=HistoryPolicy(max_tokens=4000)))
    assert agent.run("Type it").status == "success"
    second = policy.requests[1].prompt
    text = renderer.text(second)
    turns = sum(len(m.content) > 0 for m in second.messages)
    assert text.count("<|im_start|>") == turns
    assert text.count("<|image_pad|>") == text.count("<|vision_start|>") == len(
        prompt_images(second, policy.requests[1].images)) == 2


def test_human_press_of_a_white_space_key_reaches_the_loop_as_that_press():
    """qwen25vl writes keys as a list: Space typed as the character was written as [" "],
    which its own parser refuses, and the step was recorded as a parse error."""
    qwen25vl = get_dialect("qwen25vl", "computer")
    lines = iter(['{"kind": "key", "key": " "}', '{"kind": "hotkey", "keys": ["shift", "\\t"]}'])
    policy = HumanPolicy(read_line=lambda prompt: next(lines), show=lambda s: None)
    policy.start(Episode("press space", qwen25vl))
    assert qwen25vl.parse(policy.respond(request()).text, SCREEN).model_dump() == \
        {"kind": "key", "key": "space"}
    assert qwen25vl.parse(policy.respond(request(1)).text, SCREEN).model_dump() == \
        {"kind": "hotkey", "keys": ["shift", "tab"]}


def test_human_action_the_dialect_cannot_read_back_is_asked_again(monkeypatch):
    """Whatever the person gives is written as the dialect writes it; a text its parser would
    refuse is not handed to the loop (to be recorded as a parse error) but asked for again."""
    writes = DIALECT.render_action
    garbled = iter(["*FUNCTION*: Tap *ARGS*: {"])

    def render_action(action, screen, thought=""):
        return next(garbled, None) or writes(action, screen, thought)

    monkeypatch.setattr(DIALECT, "render_action", render_action)
    lines = iter(['{"kind": "tap", "x": 500, "y": 500}', '{"kind": "tap", "x": 540, "y": 1200}'])
    shown: list[str] = []
    policy = HumanPolicy(read_line=lambda prompt: next(lines), show=shown.append)
    policy.start(Episode("tap", DIALECT))
    assert DIALECT.parse(policy.respond(request()).text, SCREEN).model_dump() == \
        {"kind": "tap", "x": 540, "y": 1200}
    assert sum("not a valid action" in s for s in shown) == 1
