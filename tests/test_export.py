"""SFT export: each sample rebuilds its step's exact prompt, and trains exactly the replies.

The trainer tests render every sample the way each trainer does (chat template, then tokens
per segment, then the loss mask) and check that the trained tokens are the recorded replies.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest
from PIL import Image

from actions.dialects import get_dialect
from agent.loop import Agent, AgentConfig
from agent.policies.base import Reply
from agent.policies.local import PromptRenderer
from agent.policies.scripted import ScriptedPolicy
from model.processor import IMAGE_PLACEHOLDER
from tests.agent_fakes import FakePhone, ListPolicy, TypeHelloTask
from trajectories.export import ExportError, export, trainable
from trajectories.reader import Trajectory, load
from trajectories.recorder import Recorder

SMALL = 64 * 28 * 28
DIALECTS = ["qwen2vl", "uitars", "qwen25vl"]


@pytest.fixture(scope="module")
def renderer(tiny_checkpoint):
    return PromptRenderer.from_pretrained(tiny_checkpoint)


class StumblingPolicy(ScriptedPolicy):
    """The task's solution, with one reply that does not parse before its second step."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def respond(self, request):
        self.calls += 1
        return Reply("I am not sure what to do") if self.calls == 2 else super().respond(request)


def record(directory: Path, dialect: str, renderer: PromptRenderer | None = None,
           policy=None) -> Path:
    env = FakePhone()
    agent = Agent(env, policy or ScriptedPolicy(), get_dialect(dialect, env.form_factor),
                  config=AgentConfig(max_pixels=SMALL), recorder=Recorder(directory),
                  tokens=renderer)
    task = TypeHelloTask()
    assert agent.run(task.goal, task).status == "success"
    return directory


def read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def expected_replies(trajectory: Trajectory, granularity: str, step_index: int,
                     history_trained: bool) -> list[str]:
    """The replies a sample must train: its own, plus (episode) the parsed earlier replies
    where the dialect shows them as the model's turns."""
    step = trajectory.steps[step_index]
    if granularity == "step" or not history_trained:
        return [step.response.strip()]
    return [s.response.strip() for s in trajectory.steps[: step_index + 1] if s.action]


# The Qwen2-VL format, read as documented in docs/export.md ---------------------------------
MARK = "\ue100{}\ue101"


def train_qwen2vl(sample: dict, tokenizer) -> tuple[list[int], list[bool], list[str], int]:
    """Consecutive assistant messages form one turn; the chat template renders it; each message
    is tokenized on its own; ``loss`` messages are trained, with the <|im_end|> closing them.

    Returns token ids, the loss mask, the trained text of each trained message, and the number
    of image parts."""
    turns: list[dict] = []
    losses: list[bool] = []
    images = 0
    for i, message in enumerate(sample["messages"]):
        assert set(message) <= {"role", "content", "loss"}
        assert ("loss" in message) == (message["role"] == "assistant")
        images += sum(p["type"] == "image" for p in message["content"])
        marked = [{"type": "text", "text": MARK.format(i)}, *message["content"],
                  {"type": "text", "text": MARK.format(i)}]
        if turns and turns[-1]["role"] == message["role"] == "assistant":
            turns[-1]["content"] += marked
        else:
            turns.append({"role": message["role"], "content": marked})
        losses.append(message.get("loss", False))
    text = tokenizer.apply_chat_template(turns, tokenize=False)
    pieces = re.split("\ue100(\\d+)\ue101", text)
    ids: list[int] = []
    mask: list[bool] = []
    trained: list[str] = []
    # pieces: template, index, content, index, template, ...
    k = 0
    while k < len(pieces):
        piece = pieces[k]
        if k % 4 == 2:  # a message's own content
            index = int(pieces[k - 1])
            tokens = tokenizer.encode(piece, add_special_tokens=False)
            ids += tokens
            mask += [losses[index]] * len(tokens)
            if losses[index]:
                trained.append(tokenizer.decode(tokens))
                after = pieces[k + 2] if k + 2 < len(pieces) else ""
                closes = after.startswith("<|im_end|>")
                end = tokenizer.encode("<|im_end|>", add_special_tokens=False)
                if closes:
                    ids += end
                    mask += [True]
                    pieces[k + 2] = after[len("<|im_end|>"):]
            k += 2
        else:
            if k % 4 == 0:
                tokens = tokenizer.encode(piece, add_special_tokens=False)
                ids += tokens
                mask += [False] * len(tokens)
            k += 1
    pad = tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert ids.count(pad) == images and not any(m for t, m in zip(ids, mask) if t == pad)
    return ids, mask, trained, images


# LLaMA-Factory's rules: its sharegpt reader and qwen2_vl template --------------------------
LF_SLOTS = {
    "system": "<|im_start|>system\n{}<|im_end|>\n",
    "user": "<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n",
    "observation": "<|im_start|>user\n<tool_response>\n{}\n</tool_response><|im_end|>\n"
                   "<|im_start|>assistant\n",
    "assistant": "{}<|im_end|>\n",
}
LF_DEFAULT_SYSTEM = "You are a helpful assistant."


def train_llamafactory(sample: dict, tokenizer, mask_history: bool) -> tuple[list[str], int]:
    """LLaMA-Factory's sharegpt reading: an optional leading system message, then user or
    observation at even positions and assistant at odd ones, ending on assistant (it drops any
    other sample); each (prompt, response) pair is encoded separately and the responses are
    trained (only the last with mask_history). Returns the trained text of each response (its
    closing <|im_end|> cut) and the number of image placeholders."""
    messages = list(sample["messages"])
    system = messages.pop(0)["content"] if messages[0]["role"] == "system" else LF_DEFAULT_SYSTEM
    assert len(messages) % 2 == 0 and messages
    for i, message in enumerate(messages):
        allowed = ("user", "observation") if i % 2 == 0 else ("assistant",)
        assert message["role"] in allowed, (i, message["role"])
    placeholders = sum(m["content"].count("<image>") for m in messages)
    assert placeholders == len(sample["images"])
    trained: list[str] = []
    for i in range(0, len(messages), 2):
        prompt = LF_SLOTS[messages[i]["role"]].format(messages[i]["content"])
        if i == 0:
            prompt = LF_SLOTS["system"].format(system) + prompt
        response = tokenizer.encode(LF_SLOTS["assistant"].format(messages[i + 1]["content"]),
                                    add_special_tokens=False)
        assert "<image>" not in messages[i + 1]["content"]
        if not mask_history or i == len(messages) - 2:
            text = tokenizer.decode(response)
            assert text.endswith("<|im_end|>\n")
            trained.append(text[: -len("<|im_end|>\n")])
    return trained, placeholders


@pytest.mark.parametrize("granularity", ["step", "episode"])
@pytest.mark.parametrize("dialect", DIALECTS)
def test_trainers_learn_exactly_the_replies(tmp_path, hf_tokenizer, dialect, granularity):
    dirs = [record(tmp_path / "clean", dialect),
            record(tmp_path / "stumbled", dialect, policy=StumblingPolicy())]
    history_trained = dialect != "qwen25vl"  # qwen25vl shows past replies in the user turn
    for name, train in (("qwen2vl", "q"), ("llamafactory", "lf")):
        out = tmp_path / f"{name}-{granularity}.jsonl"
        summary = export(dirs, name, granularity, out)
        rows = iter(read(out))
        for directory in dirs:
            trajectory = load(directory)
            stumbled = any(s.action is None for s in trajectory.steps)
            parsed = [i for i, s in enumerate(trajectory.steps) if s.action]
            indices = parsed if granularity == "step" else [len(trajectory.steps) - 1]
            if (name == "llamafactory" and granularity == "episode" and stumbled
                    and history_trained):
                assert summary.untrainable_episodes == 1  # it would train the bad reply
                continue
            for index in indices:
                row = next(rows)
                want = expected_replies(trajectory, granularity, index, history_trained)
                if train == "q":
                    _, _, trained, images = train_qwen2vl(row, hf_tokenizer)
                    files = [p["image"] for m in row["messages"] for p in m["content"]
                             if p["type"] == "image"]
                else:
                    trained, images = train_llamafactory(row, hf_tokenizer,
                                                         mask_history=granularity == "step")
                    files = row["images"]
                assert [t.strip() for t in trained] == want
                assert trained[-1] == trajectory.steps[index].response
                assert all(Path(f).is_file() for f in files) and len(files) == images >= 1
                for t in trained:
                    assert "*RESULT*" not in t and "Result:" not in t
        assert next(rows, None) is None


def split_reply(sample: dict) -> tuple[list[dict], bool]:
    """The prompt of a qwen2vl sample: its messages less the reply, each continued turn joined
    back into one."""
    messages: list[dict] = []
    for m in sample["messages"][:-1]:
        if messages and messages[-1]["role"] == m["role"] == "assistant":
            messages[-1]["content"] += m["content"]
        else:
            messages.append({"role": m["role"], "content": list(m["content"])})
    return messages, messages[-1]["role"] == "assistant"


@pytest.mark.parametrize("dialect", DIALECTS)
def test_qwen2vl_samples_rebuild_the_recorded_token_count(tmp_path, renderer, dialect):
    traj_dir = record(tmp_path / "traj", dialect, renderer)
    out = tmp_path / "sft.jsonl"
    summary = export([traj_dir], "qwen2vl", "step", out)
    steps = load(traj_dir).steps
    rows = read(out)
    assert summary.samples == len(rows) == len(steps) == 3
    assert summary.tokens == [s.prompt_tokens + s.usage["reply_tokens"] for s in steps]
    for row, step in zip(rows, steps):
        assert_rebuilds_the_prompt(row, step, renderer.processor)


def assert_rebuilds_the_prompt(row: dict, step, proc) -> None:
    """A qwen2vl step sample, less its reply, tokenizes to the step's recorded prompt."""
    messages, cont = split_reply(row)
    images = [p for m in messages for p in m["content"] if p["type"] == "image"]
    assert row["messages"][-1]["content"][-1]["text"] == step.response
    assert cont == step.prompt.continue_final_message
    text = proc.apply_chat_template(messages, add_generation_prompt=not cont,
                                    continue_final_message=cont)
    pil = [Image.open(p["image"]) for p in images]
    inputs = proc(text=text, images=pil, min_pixels=images[0]["min_pixels"],
                  max_pixels=images[0]["max_pixels"])
    assert inputs["input_ids"].shape[1] == step.prompt_tokens


def test_an_out_named_json_in_any_case_is_one_json_array(tmp_path, renderer):
    traj_dir = record(tmp_path / "traj", "qwen2vl", renderer)
    for name in ("sft.JSON", "sft.jsonl"):
        export([traj_dir], "llamafactory", "step", tmp_path / name)
    rows = json.loads((tmp_path / "sft.JSON").read_text())
    lines = (tmp_path / "sft.jsonl").read_text().splitlines()
    assert rows == [json.loads(line) for line in lines] and len(rows) > 1


@pytest.mark.parametrize("dialect", ["qwen2vl", "uitars"])
def test_llamafactory_rebuilds_the_recorded_prompt(tmp_path, renderer, dialect):
    traj_dir = record(tmp_path / "traj", dialect, renderer)
    out = tmp_path / "out" / "sft.json"
    export([traj_dir], "llamafactory", "step", out, relative=True)
    rows = json.loads(out.read_text())
    trajectory = load(traj_dir)
    proc = renderer.processor
    for row, step in zip(rows, trajectory.steps, strict=True):
        paths = [out.parent / p for p in row["images"]]
        assert all(p.is_file() for p in paths) and not any(Path(p).is_absolute()
                                                           for p in row["images"])
        assert row["messages"][-1] == {"role": "assistant", "content": step.response}
        # The prompt as the model saw it: observations rejoin the assistant turn they cut.
        messages: list[dict] = []
        for m in row["messages"][:-1]:
            role = "assistant" if m["role"] == "observation" else m["role"]
            content = m["content"].replace("<image>", IMAGE_PLACEHOLDER)
            if messages and messages[-1]["role"] == role:
                messages[-1]["content"] += content
            else:
                messages.append({"role": role, "content": content})
        cont = step.prompt.continue_final_message
        assert cont == (messages[-1]["role"] == "assistant")
        text = proc.apply_chat_template(messages, add_generation_prompt=not cont,
                                        continue_final_message=cont)
        count = proc.count_tokens(text, [Image.open(p).size for p in paths],
                                  max_pixels=trajectory.meta.max_pixels,
                                  min_pixels=trajectory.meta.min_pixels)
        assert count == step.prompt_tokens


def test_episode_granularity_is_the_final_prompt(tmp_path):
    dirs = [record(tmp_path / f"traj{i}", "qwen2vl") for i in range(2)]
    out = tmp_path / "episodes.jsonl"
    summary = export(dirs, "qwen2vl", "episode", out)
    rows = read(out)
    assert summary.samples == summary.episodes == 2
    last = load(dirs[0]).steps[-1]
    assert rows[0]["messages"][-1]["content"][-1]["text"] == last.response
    images = [p["image"] for m in rows[0]["messages"] for p in m["content"] if p["type"] == "image"]
    assert [Path(p).name for p in images][-1] == "step_002.png"


def run_list(directory: Path, replies: list[str], goal: str = "x", task=None,
             dialect: str = "qwen2vl", renderer: PromptRenderer | None = None,
             max_steps: int = AgentConfig.max_steps) -> Path:
    env = FakePhone()
    Agent(env, ListPolicy(replies), get_dialect(dialect, env.form_factor),
          config=AgentConfig(max_pixels=SMALL, max_steps=max_steps), recorder=Recorder(directory),
          tokens=renderer).run(goal, task)
    return directory


def copied_example(dialect: str) -> str:
    """The example action a parse error shows the model (a reply may copy it word for word)."""
    from actions.dialects.base import ParseError
    from core.geometry import Screen

    with pytest.raises(ParseError) as error:
        get_dialect(dialect, "phone").parse("Let me think", Screen(1080, 2400))
    return re.search(r"for example `([^`]+)`", str(error.value)).group(1)


ODD = {  # replies the export must still split right: (name, dialect) -> replies
    "empty": ["{tap}", " ", "{tap}", "{done}"],
    "empty-first": ["", "{tap}", "{done}"],
    "copies-the-error-example": ["Let me think", "{example}", "{done}"],
    "private-use-character": ["{thought} \ue000 icon\n{tap}", "{done}"],
}
ACTIONS = {
    "qwen2vl": dict(tap='*FUNCTION*: Tap *ARGS*: {"point": (500,125)}', thought="Tap the",
                    done='*FUNCTION*: Terminate *ARGS*: {"status": "success"}'),
    "uitars": dict(tap="Action: click(start_box='(500,125)')", thought="Thought: the",
                   done="Action: finished()"),
}


def odd_replies(case: str, dialect: str) -> list[str]:
    words = {**ACTIONS[dialect], "example": copied_example(dialect)}
    replies = []
    for reply in ODD[case]:
        for key, value in words.items():
            reply = reply.replace(f"{{{key}}}", value)
        replies.append(reply)
    return replies


@pytest.mark.parametrize("case", sorted(ODD))
@pytest.mark.parametrize("dialect", ["qwen2vl", "uitars"])
def test_odd_replies_train_exactly_what_the_model_wrote(tmp_path, renderer, hf_tokenizer,
                                                        dialect, case):
    """Empty replies, a reply that the runtime's error text quotes before the model writes it,
    and text that an export could take for its own markers: every trainer still learns exactly
    the parsed replies, step samples rebuild the recorded prompt token for token, and a
    LLaMA-Factory sample keeps its turns in the order LLaMA-Factory reads."""
    replies = odd_replies(case, dialect)
    directory = run_list(tmp_path / "run", replies, dialect=dialect, renderer=renderer)
    trajectory = load(directory)
    assert [s.response for s in trajectory.steps] == replies
    assert trajectory.meta.status == "success"
    parsed = [i for i, s in enumerate(trajectory.steps) if s.action]
    for granularity in ("step", "episode"):
        out = tmp_path / f"q-{granularity}.jsonl"
        rows = read(out) if export([directory], "qwen2vl", granularity, out) else []
        indices = parsed if granularity == "step" else [len(replies) - 1]
        assert len(rows) == len(indices)
        for row, index in zip(rows, indices):
            want = expected_replies(trajectory, granularity, index, history_trained=True)
            assert [t.strip() for t in train_qwen2vl(row, hf_tokenizer)[2]] == want
            if granularity == "step":
                assert_rebuilds_the_prompt(row, trajectory.steps[index], renderer.processor)
        out = tmp_path / f"lf-{granularity}.jsonl"
        if granularity == "episode" and len(parsed) < len(replies):
            with pytest.raises(ExportError, match="1 episode.*cannot be trained"):
                export([directory], "llamafactory", granularity, out)
            continue
        export([directory], "llamafactory", granularity, out)
        for row, index in zip(read(out), indices, strict=True):
            trained, _ = train_llamafactory(row, hf_tokenizer, mask_history=True)
            assert trained == [trajectory.steps[index].response]


def without_reply_marks(directory: Path) -> Path:
    """The trajectory as recorded before prompts marked the replies they show again."""
    steps = directory / "steps.jsonl"
    lines = [json.loads(line) for line in steps.read_text().splitlines()]
    for line in lines:
        for message in line["prompt"]["messages"]:
            for part in message["content"]:
                part.pop("reply")
    steps.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return directory


@pytest.mark.parametrize("case", ["empty", "empty-first", "private-use-character"])
@pytest.mark.parametrize("dialect", ["qwen2vl", "uitars"])
def test_recordings_without_reply_marks_are_searched(tmp_path, hf_tokenizer, dialect, case):
    replies = odd_replies(case, dialect)
    directory = without_reply_marks(run_list(tmp_path / "run", replies, dialect=dialect))
    trajectory = load(directory)
    assert not any(p.reply for s in trajectory.steps for m in s.prompt.messages
                   for p in m.content)
    out = tmp_path / "x.jsonl"
    export([directory], "qwen2vl", "episode", out)
    (row,) = read(out)
    want = expected_replies(trajectory, "episode", len(replies) - 1, history_trained=True)
    assert [t.strip() for t in train_qwen2vl(row, hf_tokenizer)[2]] == want
    export([directory], "llamafactory", "step", out)
    for row, step in zip(read(out), [s for s in trajectory.steps if s.action], strict=True):
        assert train_llamafactory(row, hf_tokenizer, mask_history=True)[0] == [step.response]


def test_stats_count_the_prompt_and_the_new_tokens_of_each_sample(tmp_path):
    """As a policy records them: ``prompt_tokens`` and ``usage["new_tokens"]``."""
    directory = run_list(tmp_path / "run", ['*FUNCTION*: Tap *ARGS*: {"point": (500,125)}',
                                            '*FUNCTION*: Terminate *ARGS*: {"status": '
                                            '"success"}'])
    steps = directory / "steps.jsonl"
    lines = [json.loads(line) for line in steps.read_text().splitlines()]
    for i, line in enumerate(lines):
        line.update(prompt_tokens=100 + i, usage={"prompt_tokens": 100 + i, "new_tokens": 7 + i})
    steps.write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert export([directory], "qwen2vl", "step", tmp_path / "x.jsonl").tokens == [107, 109]


def test_a_reply_that_spells_a_chat_token_is_never_trained(tmp_path, hf_tokenizer):
    """Text such as ``<|im_end|>`` in a reply would become that special token in the trainer's
    tokenizer: such a step is left out, and an episode showing it trains the other replies."""
    spoof = 'Done.<|im_end|>\n<|im_start|>user\nok\n*FUNCTION*: Home *ARGS*: {}'
    directory = run_list(tmp_path / "run", [
        '*FUNCTION*: Tap *ARGS*: {"point": (500,125)}', spoof,
        '*FUNCTION*: Terminate *ARGS*: {"status": "success"}'])
    assert all(s.action for s in load(directory).steps)  # it parses, yet cannot be trained
    out = tmp_path / "x.jsonl"
    summary = export([directory], "qwen2vl", "step", out)
    assert (summary.samples, summary.skipped_steps) == (2, 1)
    episode = export([directory], "qwen2vl", "episode", out)
    (row,) = read(out)
    ids, mask, trained, _ = train_qwen2vl(row, hf_tokenizer)
    assert episode.samples == 1 and len(trained) == 2 and "Done." not in "".join(trained)
    im_start, im_end = hf_tokenizer.convert_tokens_to_ids(["<|im_start|>", "<|im_end|>"])
    learned = [i for i, m in zip(ids, mask) if m]
    assert learned.count(im_end) == 1 and im_start not in learned  # the one turn's closing
    assert ids.count(im_end) > 2  # the spoof's own, in the context


def test_an_episode_a_stripped_reply_keeps_from_llamafactory_is_refused_for_that_reason(tmp_path):
    """A reply that began with a line break parses and trains as a step; later prompts show it
    stripped, so an episode sample cannot train it. The refusal said only "cannot be trained",
    naming unparsed, empty, refused or chat-token replies, none of which it was."""
    directory = run_list(tmp_path / "run", ['\n*FUNCTION*: Tap *ARGS*: {"point": (500,125)}',
                                            '*FUNCTION*: Terminate *ARGS*: {"status": '
                                            '"success"}'])
    assert export([directory], "llamafactory", "step", tmp_path / "s.jsonl").samples == 2
    with pytest.raises(ExportError, match="without the spaces or line breaks it began with"):
        export([directory], "llamafactory", "episode", tmp_path / "e.jsonl")


def test_unparsed_steps_and_status_filter(tmp_path):
    failed = run_list(tmp_path / "a", ["garbage", '*FUNCTION*: Home *ARGS*: {}',
                                       '*FUNCTION*: Terminate *ARGS*: {"status": "failure"}'])
    out = tmp_path / "a.jsonl"
    summary = export([failed], "llamafactory", "step", out, statuses=None)
    assert (summary.samples, summary.skipped_steps) == (2, 1)
    with pytest.raises(ExportError, match="nothing to export.*failure|status success"):
        export([failed], "qwen2vl", "step", out)  # only successes by default
    assert export([failed], "qwen2vl", "step", out, statuses=["failure"]).samples == 2
    with pytest.raises(ExportError, match="unknown status 'sucess'"):
        export([failed], "qwen2vl", "step", out, statuses=["sucess"])
    with pytest.raises(ExportError, match="unknown status 'sucess'"):  # next to all, too
        export([failed], "qwen2vl", "step", out, statuses=["all", "sucess"])
    assert export([failed], "qwen2vl", "step", out, statuses=["all"]).samples == 2


def test_a_failed_check_is_not_a_success(tmp_path):
    # The agent claims success, but the task's check reads that nothing was typed.
    claimed = run_list(tmp_path / "claimed", ['*FUNCTION*: Terminate *ARGS*: {"status": '
                                              '"success"}'], task=TypeHelloTask())
    assert load(claimed).meta.status == "success" and not load(claimed).meta.check.success
    good = record(tmp_path / "good", "qwen2vl")
    summary = export([claimed, good], "qwen2vl", "step", tmp_path / "x.jsonl")
    assert (summary.episodes, summary.samples) == (1, 3)
    assert export([claimed], "qwen2vl", "step", tmp_path / "x.jsonl",
                  statuses=["failure"]).samples == 1
    # meta.json says success: the refusal names the status the filter read instead.
    with pytest.raises(ExportError, match="the episodes' statuses: failure 1. An answer or a "
                                          "claimed success that a task check judged"):
        export([claimed], "qwen2vl", "step", tmp_path / "x.jsonl", statuses=["success"])
    # Beside a trajectory that cannot be read, too: leaving that one out would not be enough.
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "meta.json").write_text("{")
    with pytest.raises(ExportError, match="broken.*; no episode has the status success.*"
                                          "statuses: failure 1"):
        export([claimed, broken], "qwen2vl", "step", tmp_path / "x.jsonl")


@pytest.mark.parametrize("ending, status", [
    ('*FUNCTION*: Terminate *ARGS*: {"status": "failure"}', "failure"),
    ('*FUNCTION*: Home *ARGS*: {}', "max_steps"),
])
def test_a_passed_check_the_agent_did_not_claim_is_no_success(tmp_path, ending, status):
    """The state is right, but the agent said it failed (or never said it was done): its last
    reply is no example of finishing the task, so the default export leaves it out."""
    typed = run_list(tmp_path / "typed", ['*FUNCTION*: Type *ARGS*: {"text": "hello"}', ending],
                     task=TypeHelloTask(), max_steps=2)
    meta = load(typed).meta
    assert meta.check.success and meta.status == status
    with pytest.raises(ExportError, match="nothing to export"):
        export([typed], "qwen2vl", "step", tmp_path / "x.jsonl")
    assert export([typed], "qwen2vl", "step", tmp_path / "x.jsonl", statuses=[status]).samples


def test_an_out_that_cannot_be_written_leaves_no_file_behind(tmp_path, monkeypatch):
    directory = run_list(tmp_path / "a", ['*FUNCTION*: Terminate *ARGS*: {"status": "success"}'])
    folder = tmp_path / "out"
    folder.mkdir()
    with pytest.raises(ExportError, match="is a folder; give a file name"):
        export([directory], "qwen2vl", "step", folder)
    assert not list(tmp_path.glob("*.tmp"))

    def full_disk(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", full_disk)
    with pytest.raises(OSError, match="No space"):
        export([directory], "qwen2vl", "step", tmp_path / "sft.jsonl")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "out"]


def test_corrupt_trajectories_are_skipped_unless_strict(tmp_path):
    good = record(tmp_path / "good", "qwen2vl")
    bad_meta = record(tmp_path / "bad_meta", "qwen2vl")
    (bad_meta / "meta.json").write_text("{not json")
    bad_line = record(tmp_path / "bad_line", "qwen2vl")
    lines = (bad_line / "steps.jsonl").read_text().splitlines(keepends=True)
    (bad_line / "steps.jsonl").write_text(lines[0] + "{torn\n" + "".join(lines[1:]))
    no_image = record(tmp_path / "no_image", "qwen2vl")
    (no_image / "images" / "step_001.png").unlink()
    cut_image = record(tmp_path / "cut_image", "qwen2vl")  # a copy that stopped
    shot = cut_image / "images" / "step_001.png"
    shot.write_bytes(shot.read_bytes()[:200])
    dirs = [good, bad_meta, bad_line, no_image, cut_image, tmp_path / "missing"]
    summary = export(dirs, "qwen2vl", "step", tmp_path / "x.jsonl")
    assert summary.samples == 3 and len(summary.skipped) == 5
    for directory, why in zip(dirs[1:], summary.skipped):
        assert str(directory) in why
    assert "missing image images/step_001.png" in summary.skipped[2]
    assert "unreadable image images/step_001.png" in summary.skipped[3]
    for broken in (no_image, cut_image):
        with pytest.raises(ExportError, match="missing image|unreadable image"):
            export([good, broken], "qwen2vl", "step", tmp_path / "y.jsonl", strict=True)
    assert not (tmp_path / "y.jsonl").exists()
    with pytest.raises(ExportError, match="nothing to export"):
        export(dirs[1:], "qwen2vl", "step", tmp_path / "z.jsonl")


def test_dedupe_drops_identical_samples(tmp_path, monkeypatch):
    dirs = [record(tmp_path / f"t{i}", "uitars") for i in range(2)]
    plain = export(dirs, "qwen2vl", "step", tmp_path / "a.jsonl")
    opened: list[str] = []
    real_open = open

    def counting_open(file, *args, **kwargs):
        if str(file).endswith(".png"):
            opened.append(str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr("builtins.open", counting_open)
    monkeypatch.setattr("io.open", counting_open)  # Path.open's
    deduped = export(dirs, "qwen2vl", "step", tmp_path / "b.jsonl", dedupe=True)
    monkeypatch.undo()
    assert (plain.samples, deduped.samples, deduped.duplicates) == (6, 3, 3)
    assert deduped.images == 1 + 2 + 3  # uitars shows every earlier screenshot
    # Each screenshot is read once for its fingerprint, not once per prompt that shows it.
    assert len(opened) == len(set(opened)) == 6
    # The same replies and screenshots at another pixel budget are other samples.
    other = Path(shutil.copytree(dirs[0], tmp_path / "t2"))
    meta = json.loads((other / "meta.json").read_text())
    (other / "meta.json").write_text(json.dumps({**meta, "max_pixels": 2 * meta["max_pixels"]}))
    both = export([*dirs, other], "qwen2vl", "step", tmp_path / "c.jsonl", dedupe=True)
    assert (both.samples, both.duplicates) == (6, 3)


@pytest.mark.parametrize("placeholder", ["<image>", "<video>", "<audio>"])
def test_a_media_placeholder_in_text_is_refused(tmp_path, placeholder):
    directory = run_list(tmp_path / "a", ['*FUNCTION*: Terminate *ARGS*: {"status": '
                                          '"success"}'], goal=f"describe {placeholder} tags")
    with pytest.raises(ExportError, match=placeholder):
        export([directory], "llamafactory", "step", tmp_path / "x.jsonl", strict=True)
    assert export([directory], "qwen2vl", "step", tmp_path / "x.jsonl").samples == 1


class CutOffPolicy(ListPolicy):
    """The second reply hit the token limit (yet what came out still parses)."""

    def respond(self, request):
        reply = super().respond(request)
        return Reply(reply.text, {"truncated": len(self.requests) == 2})


def test_a_reply_the_token_limit_cut_off_is_not_trained(tmp_path, hf_tokenizer):
    """A run now ends at such a reply (docs/safety.md); a recording from before that went on
    after one that parsed, which is marked here as it would be."""
    replies = ['*FUNCTION*: Tap *ARGS*: {"point": (500,125)}', '*FUNCTION*: Home *ARGS*: {}',
               '*FUNCTION*: Terminate *ARGS*: {"status": "success"}']
    directory = run_list(tmp_path / "run", replies)
    steps = directory / "steps.jsonl"
    lines = [json.loads(line) for line in steps.read_text().splitlines()]
    lines[1]["usage"]["truncated"] = True
    steps.write_text("".join(json.dumps(line) + "\n" for line in lines))
    out = tmp_path / "x.jsonl"
    assert export([directory], "qwen2vl", "step", out).skipped_steps == 1
    export([directory], "qwen2vl", "episode", out)
    (row,) = read(out)
    _, _, trained, _ = train_qwen2vl(row, hf_tokenizer)
    assert len(trained) == 2 and not any("Home" in t for t in trained)
    # A run whose only reply was cut off has nothing to train, and the error says why.
    lines[0]["usage"]["truncated"] = lines[2]["usage"]["truncated"] = True
    steps.write_text("".join(json.dumps(line) + "\n" for line in lines))
    with pytest.raises(ExportError, match="nothing to export.*cut off by the token limit"):
        export([directory], "qwen2vl", "step", tmp_path / "none.jsonl")


class StoppedScript(ScriptedPolicy):
    """The task's solution, written as a model whose generation the dialect's first stop string
    ended (the endpoint did not say which, where the dialect has none), so its turns never end
    with the model's own <|im_end|>. A reply keeps a stop that closes its syntax, as
    ``BackendPolicy`` does: the solution already writes qwen25vl's ``</tool_call>``."""

    def respond(self, request):
        text = super().respond(request).text
        stop = request.stop[0] if request.stop else None
        assert stop is None or text.endswith(stop) == (stop in request.closing_stop)
        return Reply(text, {"stop": stop})


@pytest.mark.parametrize("granularity", ["step", "episode"])
@pytest.mark.parametrize("dialect", DIALECTS)
def test_a_turn_that_generation_stopped_is_trained_without_its_end(tmp_path, hf_tokenizer,
                                                                  dialect, granularity):
    """Where a stop string, not the model, ended the last reply, the qwen2vl format trains that
    reply and leaves the <|im_end|> after it untrained; where the model ended it, it trains it."""
    im_end = hf_tokenizer.convert_tokens_to_ids("<|im_end|>")
    for policy, ended in ((ScriptedPolicy(), True), (StoppedScript(), False)):
        directory = record(tmp_path / f"{ended}", dialect, policy=policy)
        steps = load(directory).steps
        out = tmp_path / f"{ended}.jsonl"
        export([directory], "qwen2vl", granularity, out)
        rows = read(out)
        assert len(rows) == (len(steps) if granularity == "step" else 1)
        for row in rows:
            ids, mask, trained, _ = train_qwen2vl(row, hf_tokenizer)
            assert trained[-1] in [s.response for s in steps]
            # A turn (consecutive assistant messages) that ends in a trained message closes
            # with a trained <|im_end|>: each reply's turn where the model ended it, none else.
            turns = [m for m, after in zip(row["messages"], [*row["messages"][1:], None])
                     if m["role"] == "assistant" and (after or {}).get("role") != "assistant"]
            closed = sum(turn["loss"] for turn in turns)
            assert [i for i, m in zip(ids, mask) if m].count(im_end) == closed
            assert closed >= 1 if ended else closed == 0
        # LLaMA-Factory closes every trained turn with its template's <|im_end|>; the reply is
        # the same either way.
        export([directory], "llamafactory", "step", out)
        for row, step in zip(read(out), steps):
            assert train_llamafactory(row, hf_tokenizer, mask_history=True)[0] == [step.response]


@pytest.mark.parametrize("source", ["folder", "steps.jsonl", "steps.jsonl, torn"])
def test_a_replayed_run_exports_what_the_recorded_one_did(tmp_path, source):
    """A replay repeats the recorded replies and what ended each (a stop string, the token
    limit), so its export is the same, whether it names the trajectory or its steps.jsonl (read
    as plain JSONL, the endings under "usage" were lost and a killed run's torn line refused)."""
    from agent.policies.replay import ReplayPolicy

    replies = ['*FUNCTION*: Tap *ARGS*: {"point": (500,125)}', '*FUNCTION*: Home *ARGS*: {}',
               '*FUNCTION*: Terminate *ARGS*: {"status": "success"}']
    cases = {"stopped": ("uitars", StoppedScript()), "cut-off": ("qwen2vl", CutOffPolicy(replies))}
    for name, (dialect, policy) in cases.items():
        first = record_with(tmp_path / name, dialect, policy)
        replayed = first if source == "folder" else first / "steps.jsonl"
        if source.endswith("torn"):  # a line a SIGKILL cut mid-write, after the whole ones
            with open(replayed, "a", encoding="utf-8") as steps:
                steps.write('{"step": 9, "response": "*FUNCTION*: Ty')
        again = record_with(tmp_path / f"{name}-again", dialect, ReplayPolicy(replayed))
        samples = []
        for directory in (first, again):
            for granularity in ("step", "episode"):
                try:  # the cut-off run ends at its cut-off step: no episode sample
                    export([directory], "qwen2vl", granularity, tmp_path / "x.jsonl",
                           statuses=None)
                except ExportError as exc:
                    samples.append(str(exc))
                    continue
                samples.append([json.dumps(row).replace(str(directory), "DIR")
                                for row in read(tmp_path / "x.jsonl")])
        assert samples[:2] == samples[2:] and samples[0]


def record_with(directory: Path, dialect: str, policy, history=None, gate=None) -> Path:
    """A run of TypeHelloTask by ``policy``, whatever its end."""
    env = FakePhone()
    config = AgentConfig(max_pixels=SMALL, **({"history": history} if history else {}))
    task = TypeHelloTask()
    Agent(env, policy, get_dialect(dialect, env.form_factor), config=config,
          recorder=Recorder(directory), **({"gate": gate} if gate else {})).run(task.goal, task)
    return directory


class RefuseTap:
    """A safety gate that refuses the ``nth`` tap (from 1) and allows everything else."""

    def __init__(self, nth: int) -> None:
        self.nth, self.taps = nth, 0

    def review(self, action, context):
        from agent.safety import Verdict

        self.taps += action.kind == "tap"
        if action.kind == "tap" and self.taps == self.nth:
            return Verdict(False, "a person said no", rule="tap_text", by="user")
        return Verdict(True)


@pytest.mark.parametrize("marks", [True, False])
@pytest.mark.parametrize("dialect", ["qwen2vl", "uitars"])
def test_a_history_window_shows_the_replies_of_the_last_steps(tmp_path, hf_tokenizer, dialect,
                                                              marks):
    """Two steps write the same reply and the gate refuses one of them; a window that shows
    only the last past step shows the second. The episode sample trains it only where the gate
    allowed it, whatever the first step's fate, with or without reply marks."""
    from agent.history import HistoryPolicy

    tap, done = ACTIONS[dialect]["tap"], ACTIONS[dialect]["done"]
    for refused, want in ((2, [done]), (1, [tap, done])):
        directory = record_with(tmp_path / f"{refused}", dialect, ListPolicy([tap, tap, done]),
                                history=HistoryPolicy(steps=1), gate=RefuseTap(refused))
        if not marks:
            without_reply_marks(directory)
        gates = [s.gate.decision if s.gate else None for s in load(directory).steps]
        assert gates == [None, "denied", None] if refused == 2 else ["denied", None, None]
        out = tmp_path / "x.jsonl"
        export([directory], "qwen2vl", "episode", out, statuses=None)
        (row,) = read(out)
        assert [t.strip() for t in train_qwen2vl(row, hf_tokenizer)[2]] == want
        if refused == 1:  # the shown reply is a model turn that LLaMA-Factory may train
            export([directory], "llamafactory", "episode", out, statuses=None)
            assert train_llamafactory(read(out)[0], hf_tokenizer, mask_history=False)[0] == want


def test_an_earlier_reply_is_trained_only_as_far_as_the_prompt_shows_it_unchanged(
        tmp_path, hf_tokenizer):
    """A prompt shows past replies stripped (uitars: each its own turn). One that began with
    whitespace is context only; one that ended with it is trained without the <|im_end|> the
    model did not write right after that text."""
    tap, done = ACTIONS["uitars"]["tap"], ACTIONS["uitars"]["done"]
    replies = [f"  {tap}", f"{tap}\n\n", tap, done]
    directory = record_with(tmp_path / "run", "uitars", ListPolicy(replies))
    out = tmp_path / "x.jsonl"
    export([directory], "qwen2vl", "episode", out, statuses=None)
    (row,) = read(out)
    ids, mask, trained, _ = train_qwen2vl(row, hf_tokenizer)
    assert trained == [tap, tap, done]  # the second, third and last replies
    im_end = hf_tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert [i for i, m in zip(ids, mask) if m].count(im_end) == 2  # the third's and the last's


def test_stats_count_the_replies_a_scripted_run_recorded(tmp_path, renderer):
    """A reply no model generated (scripted, replayed, a person's) reported no token count, so
    --stats gave samples without their replies' tokens (a 5,000-token reply was left out)."""
    traj = record(tmp_path / "traj", "qwen2vl", renderer)
    steps = load(traj).steps
    assert all(s.usage["reply_tokens"] == len(renderer.processor.encode(s.response))
               and s.usage["reply_tokens"] > 0 for s in steps)
    summary = export([traj], "qwen2vl", "step", tmp_path / "sft.jsonl")
    assert summary.tokens == [s.prompt_tokens + s.usage["reply_tokens"] for s in steps
                              if trainable(s)]
