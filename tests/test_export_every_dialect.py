"""Every dialect and history layout, with each kind of step an export must leave out or train
without its end: a reply that did not parse, one the safety gate refused, one that held a
secret's value, ones a stop string ended, one with white space around it. Read as each trainer
reads it, every sample trains exactly the replies the model wrote (in the qwen2vl format, with
the <|im_end|> only where the model ended its turn), after the context the model read, token
for token, and no sample holds the secret's value.
"""

from __future__ import annotations

import pytest

from actions.dialects import get_dialect
from agent.history import HistoryPolicy
from agent.loop import Agent, AgentConfig
from agent.policies.base import Policy, Reply
from agent.secrets import Secrets
from core.actions import Home, Tap, Terminate, Type
from core.geometry import Screen
from tests.agent_fakes import FakePhone
from tests.test_export import SMALL, RefuseTap, read, train_llamafactory, train_qwen2vl
from tests.test_export_context_tokens import expand, runtime_ids
from trajectories.export import ExportError, export
from trajectories.reader import load
from trajectories.recorder import Recorder

PIN = "4321"
TRAINED = [0, 2, 5, 6]  # the steps that parsed, were allowed and hold no secret's value
HISTORIES = {"window": HistoryPolicy(images=1, block=1),
             "blocks": HistoryPolicy(images=2, block=2),
             "last-two": HistoryPolicy(images=2, steps=2)}


class Replies(Policy):
    """Replies with what ended each (``usage``), as a backend reports them."""

    name = "replies"

    def __init__(self, replies: list[tuple[str, dict]]) -> None:
        self.replies = iter(replies)

    def respond(self, request) -> Reply:
        text, usage = next(self.replies)
        return Reply(text, dict(usage))


def replies(dialect: str) -> list[tuple[str, dict]]:
    words = get_dialect(dialect, "phone")
    stopped = {"stop": words.stop[0] if words.stop else None}  # None: an endpoint did not say

    def say(action, thought=""):
        return words.render_action(action, Screen(1080, 2400, 3136, SMALL), thought)

    return [(say(Tap(x=540, y=300), "Focus the box."), {}),
            ("I am not sure", {}),  # does not parse
            (say(Tap(x=540, y=300), "Again."), stopped),
            (say(Type(text=PIN), "The PIN."), {}),  # recorded masked
            (say(Tap(x=100, y=100), "A third tap."), {}),  # the gate refuses it
            ("  " + say(Home()) + "\n", {}),
            (say(Terminate(status="success"), "Done."), stopped)]


@pytest.mark.parametrize("history", sorted(HISTORIES))
@pytest.mark.parametrize("dialect", ["qwen2vl", "qwen25vl", "uitars", "uitars15"])
def test_every_dialect_and_history_trains_exactly_the_replies(tmp_path, hf_tokenizer, dialect,
                                                              history):
    said = replies(dialect)
    env = FakePhone()
    directory = tmp_path / "run"
    Agent(env, Replies(said), get_dialect(dialect, env.form_factor),
          config=AgentConfig(max_pixels=SMALL, history=HISTORIES[history], max_parse_errors=3),
          recorder=Recorder(directory), gate=RefuseTap(3),
          secrets=Secrets({"PIN": PIN})).run("Type the PIN")
    trajectory = load(directory)
    assert trajectory.meta.status == "success" and len(trajectory.steps) == len(said)
    im_end = hf_tokenizer.convert_tokens_to_ids("<|im_end|>")

    out = tmp_path / "q.jsonl"
    export([directory], "qwen2vl", "step", out)
    rows = read(out)
    assert len(rows) == len(TRAINED)
    for row, index in zip(rows, TRAINED):
        step = trajectory.steps[index]
        text, usage = said[index]
        ids, mask, trained, _ = train_qwen2vl(row, hf_tokenizer)
        ended = [im_end] if "stop" not in usage else []
        assert [t for t, m in zip(ids, mask) if m] == \
            hf_tokenizer.encode(text, add_special_tokens=False) + ended
        context = ids[: mask.index(True)]
        images = [(p["image"], p["min_pixels"], p["max_pixels"]) for m in row["messages"]
                  for p in m["content"] if p["type"] == "image"]
        assert expand(context, images, hf_tokenizer) == runtime_ids(trajectory, step, hf_tokenizer)

    lf = tmp_path / "lf.jsonl"
    export([directory], "llamafactory", "step", lf)
    assert [train_llamafactory(row, hf_tokenizer, mask_history=True)[0] for row in read(lf)] == \
        [[said[i][0]] for i in TRAINED]

    # The episode sample trains the earlier replies its prompt shows as the model's turns (not
    # qwen25vl's) that can be trained and start as the model wrote them: not said[5] (the sixth
    # reply, the one with white space around it).
    shown = [] if dialect == "qwen25vl" else [0, 2] if history != "last-two" else []
    export([directory], "qwen2vl", "episode", out)
    (row,) = read(out)
    ids, mask, trained, _ = train_qwen2vl(row, hf_tokenizer)
    assert [t.strip() for t in trained] == [said[i][0].strip() for i in [*shown, 6]]
    # Only uitars closes the first reply's turn, where the model ended it; stop strings ended
    # the others.
    closed = int(dialect.startswith("uitars") and 0 in shown)
    assert [t for t, m in zip(ids, mask) if m].count(im_end) == closed
    try:  # LLaMA-Factory would train the unparsed or refused reply the history shows
        export([directory], "llamafactory", "episode", lf)
        assert train_llamafactory(read(lf)[0], hf_tokenizer, mask_history=False)[0] == \
            [said[6][0]]
        assert dialect == "qwen25vl"
    except ExportError as error:
        assert dialect != "qwen25vl" and "cannot be trained" in str(error)
    for path in (out, lf):
        assert PIN not in path.read_text()
