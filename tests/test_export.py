"""SFT export: each sample rebuilds its step's exact prompt, and trains exactly the replies.

The trainer tests render every sample the way each trainer does (chat template, then tokens
per segment, then the loss mask) and check that the trained tokens are the recorded replies.
"""

from __future__ import annotations

import json
import re
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
from trajectories.export import ExportError, export
from trajectories.reader import Trajectory, load
from trajectories.recorder import Recorder

SMALL = 64 * 28 * 28
DIALECTS = ["qwen2vl", "uitars", "qwen25vl"]


@pytest.fixture(scope="module")
def renderer(tiny_checkpoint):
    return PromptRenderer.from_pretrained(tiny_checkpoint)


@pytest.fixture(scope="module")
def hf_tokenizer(tiny_checkpoint):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_checkpoint)


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
    assert summary.tokens == [s.prompt_tokens for s in steps]
    proc = renderer.processor
    for row, step in zip(rows, steps):
        messages, cont = split_reply(row)
        images = [p for m in messages for p in m["content"] if p["type"] == "image"]
        assert row["messages"][-1]["content"][-1]["text"] == step.response
        text = proc.apply_chat_template(messages, add_generation_prompt=not cont,
                                        continue_final_message=cont)
        pil = [Image.open(p["image"]) for p in images]
        inputs = proc(text=text, images=pil, min_pixels=images[0]["min_pixels"],
                      max_pixels=images[0]["max_pixels"])
        assert inputs["input_ids"].shape[1] == step.prompt_tokens


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


def run_list(directory: Path, replies: list[str], goal: str = "x", task=None) -> Path:
    env = FakePhone()
    Agent(env, ListPolicy(replies), get_dialect("qwen2vl", env.form_factor),
          recorder=Recorder(directory)).run(goal, task)
    return directory


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


def test_corrupt_trajectories_are_skipped_unless_strict(tmp_path):
    good = record(tmp_path / "good", "qwen2vl")
    bad_meta = record(tmp_path / "bad_meta", "qwen2vl")
    (bad_meta / "meta.json").write_text("{not json")
    bad_line = record(tmp_path / "bad_line", "qwen2vl")
    lines = (bad_line / "steps.jsonl").read_text().splitlines(keepends=True)
    (bad_line / "steps.jsonl").write_text(lines[0] + "{torn\n" + "".join(lines[1:]))
    no_image = record(tmp_path / "no_image", "qwen2vl")
    (no_image / "images" / "step_001.png").unlink()
    dirs = [good, bad_meta, bad_line, no_image, tmp_path / "missing"]
    summary = export(dirs, "qwen2vl", "step", tmp_path / "x.jsonl")
    assert summary.samples == 3 and len(summary.skipped) == 4
    for directory, why in zip(dirs[1:], summary.skipped):
        assert str(directory) in why
    assert "missing image images/step_001.png" in summary.skipped[2]
    with pytest.raises(ExportError, match="missing image"):
        export([good, no_image], "qwen2vl", "step", tmp_path / "y.jsonl", strict=True)
    assert not (tmp_path / "y.jsonl").exists()
    with pytest.raises(ExportError, match="nothing to export"):
        export(dirs[1:], "qwen2vl", "step", tmp_path / "z.jsonl")


def test_dedupe_drops_identical_samples(tmp_path):
    dirs = [record(tmp_path / f"t{i}", "uitars") for i in range(2)]
    plain = export(dirs, "qwen2vl", "step", tmp_path / "a.jsonl")
    deduped = export(dirs, "qwen2vl", "step", tmp_path / "b.jsonl", dedupe=True)
    assert (plain.samples, deduped.samples, deduped.duplicates) == (6, 3, 3)
    assert deduped.images == 1 + 2 + 3  # uitars shows every earlier screenshot


def test_image_placeholder_in_text_is_refused(tmp_path):
    directory = run_list(tmp_path / "a", ['*FUNCTION*: Terminate *ARGS*: {"status": '
                                          '"success"}'], goal="describe <image> tags")
    with pytest.raises(ExportError, match="<image>"):
        export([directory], "llamafactory", "step", tmp_path / "x.jsonl", strict=True)
    assert export([directory], "qwen2vl", "step", tmp_path / "x.jsonl").samples == 1
