"""SFT export: the samples rebuild each step's exact prompt, checked through our processor."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from actions.dialects import get_dialect
from agent.loop import Agent, AgentConfig
from agent.policies.local import PromptRenderer
from agent.policies.scripted import ScriptedPolicy
from model.processor import IMAGE_PLACEHOLDER
from tests.agent_fakes import FakePhone, ListPolicy, TypeHelloTask
from trajectories.export import ExportError, export
from trajectories.reader import load
from trajectories.recorder import Recorder

SMALL = 64 * 28 * 28


@pytest.fixture(scope="module")
def renderer(tiny_checkpoint):
    return PromptRenderer.from_pretrained(tiny_checkpoint)


def record(directory: Path, dialect: str, renderer: PromptRenderer) -> Path:
    env = FakePhone()
    agent = Agent(env, ScriptedPolicy(), get_dialect(dialect, env.form_factor),
                  config=AgentConfig(max_pixels=SMALL), recorder=Recorder(directory),
                  tokens=renderer)
    task = TypeHelloTask()
    assert agent.run(task.goal, task).status == "success"
    return directory


def read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def split_reply(sample: dict) -> tuple[list[dict], bool]:
    """The prompt part of a qwen2vl sample: drop the reply (the last part of the last turn)."""
    messages = [dict(m, content=list(m["content"])) for m in sample["messages"]]
    messages[-1]["content"].pop()
    if messages[-1]["content"]:
        return messages, True  # the reply continued this assistant turn
    return messages[:-1], False


@pytest.mark.parametrize("dialect", ["qwen2vl", "uitars", "qwen25vl"])
def test_qwen2vl_samples_rebuild_the_recorded_token_count(tmp_path, renderer, dialect):
    traj_dir = record(tmp_path / "traj", dialect, renderer)
    out = tmp_path / "sft.jsonl"
    summary = export([traj_dir], "qwen2vl", "step", out)
    steps = load(traj_dir).steps
    rows = read(out)
    assert summary.samples == len(rows) == len(steps) == 3
    proc = renderer.processor
    for row, step in zip(rows, steps):
        messages, cont = split_reply(row)
        images = [p for m in messages for p in m["content"] if p["type"] == "image"]
        assert all(Path(p["image"]).is_file() for p in images)
        assert row["messages"][-1]["content"][-1]["text"] == step.response
        text = proc.apply_chat_template(messages, add_generation_prompt=not cont,
                                        continue_final_message=cont)
        pil = [Image.open(p["image"]) for p in images]
        inputs = proc(text=text, images=pil, min_pixels=images[0]["min_pixels"],
                      max_pixels=images[0]["max_pixels"])
        assert inputs["input_ids"].shape[1] == step.prompt_tokens


@pytest.mark.parametrize("dialect", ["qwen2vl", "uitars"])
def test_llamafactory_placeholders_match_images_and_tokens(tmp_path, renderer, dialect):
    traj_dir = record(tmp_path / "traj", dialect, renderer)
    out = tmp_path / "out" / "sft.json"
    export([traj_dir], "llamafactory", "step", out, relative=True)
    rows = json.loads(out.read_text())
    steps = load(traj_dir).steps
    meta = load(traj_dir).meta
    proc = renderer.processor
    for row, step in zip(rows, steps, strict=True):
        placeholders = sum(m["content"].count("<image>") for m in row["messages"])
        assert placeholders == len(row["images"]) >= 1
        paths = [out.parent / p for p in row["images"]]
        assert all(p.is_file() for p in paths) and not any(Path(p).is_absolute()
                                                           for p in row["images"])
        assert row["messages"][-1]["role"] == "assistant"
        # Rebuild the prompt: cut the reply off the end, images back to processor placeholders.
        messages = [{"role": m["role"], "content": m["content"].replace("<image>",
                                                                        IMAGE_PLACEHOLDER)}
                    for m in row["messages"]]
        cont = step.prompt.continue_final_message
        last = messages[-1]["content"]
        assert last.endswith(step.response)
        messages[-1]["content"] = last[: len(last) - len(step.response)]
        if not cont:
            messages.pop()
        text = proc.apply_chat_template(messages, add_generation_prompt=not cont,
                                        continue_final_message=cont)
        count = proc.count_tokens(text, [Image.open(p).size for p in paths],
                                  max_pixels=meta.max_pixels, min_pixels=meta.min_pixels)
        assert count == step.prompt_tokens


def test_episode_granularity_is_the_final_prompt(tmp_path, renderer):
    dirs = [record(tmp_path / f"traj{i}", "qwen2vl", renderer) for i in range(2)]
    out = tmp_path / "episodes.jsonl"
    summary = export(dirs, "qwen2vl", "episode", out)
    rows = read(out)
    assert summary.samples == summary.episodes == 2
    last = load(dirs[0]).steps[-1]
    assert rows[0]["messages"][-1]["content"][-1]["text"] == last.response
    images = [p["image"] for m in rows[0]["messages"] for p in m["content"] if p["type"] == "image"]
    assert [Path(p).name for p in images][-1] == "step_002.png"


def test_unparsed_steps_and_status_filter(tmp_path):
    env = FakePhone()
    Agent(env, ListPolicy(["garbage", '*FUNCTION*: Home *ARGS*: {}',
                           '*FUNCTION*: Terminate *ARGS*: {"status": "failure"}']),
          get_dialect("qwen2vl", env.form_factor), recorder=Recorder(tmp_path / "a")).run("x")
    out = tmp_path / "a.jsonl"
    summary = export([tmp_path / "a"], "llamafactory", "step", out)
    assert (summary.samples, summary.skipped_steps) == (2, 1)
    assert export([tmp_path / "a"], "qwen2vl", "step", out, statuses=["success"]).samples == 0
    assert read(out) == []


def test_image_placeholder_in_text_is_refused(tmp_path):
    env = FakePhone()
    Agent(env, ListPolicy(['*FUNCTION*: Terminate *ARGS*: {"status": "success"}']),
          get_dialect("qwen2vl", env.form_factor),
          recorder=Recorder(tmp_path / "a")).run("describe <image> tags")
    with pytest.raises(ExportError, match="<image>"):
        export([tmp_path / "a"], "llamafactory", "step", tmp_path / "x.jsonl")
    assert export([tmp_path / "a"], "qwen2vl", "step", tmp_path / "x.jsonl").samples == 1


def test_missing_image_is_a_clear_error(tmp_path, renderer):
    traj_dir = record(tmp_path / "traj", "qwen2vl", renderer)
    (traj_dir / "images" / "step_001.png").unlink()
    with pytest.raises(ExportError, match="missing image images/step_001.png"):
        export([traj_dir], "qwen2vl", "step", tmp_path / "x.jsonl")
    assert not (tmp_path / "x.jsonl").exists()
