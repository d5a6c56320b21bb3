"""``replay`` repeats a trajectory's actions: on a person's own phone or display only when the
command names it. A trajectory recorded on a real phone replayed on whatever phone was attached
(and one recorded on a real display on $DISPLAY), with nothing said."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

import cli.run_cmd
from actions.dialects import get_dialect
from agent.loop import Agent
from cli.app import app
from tests.agent_fakes import FakePhone, ListPolicy
from trajectories.recorder import Recorder


def recorded(tmp_path, **meta):
    """A one-step trajectory whose meta.json says it ran with ``meta``."""
    env = FakePhone()
    directory = tmp_path / "recorded"
    Agent(env, ListPolicy(['*FUNCTION*: Tap *ARGS*: {"point": (500, 500)}']),
          get_dialect("qwen2vl", env.form_factor), recorder=Recorder(directory)).run("x")
    path = directory / "meta.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **meta}))
    return directory


@pytest.fixture
def runs(monkeypatch):
    """The specs replay would run (no env is opened)."""
    specs = []
    monkeypatch.setattr(cli.run_cmd, "run_and_report", lambda spec, runner=None: specs.append(spec))
    return specs


@pytest.mark.parametrize(("meta", "named"), [
    ({"env": "android", "device": None}, "--device"),
    ({"env": "android", "device": "R58M123"}, "--device"),
    ({"env": "desktop"}, "--display"),
    ({"env": "desktop", "display": ":0"}, "--display"),
])
def test_a_real_device_is_replayed_on_only_when_named(tmp_path, runs, meta, named):
    directory = recorded(tmp_path, **meta)
    done = CliRunner().invoke(app, ["replay", str(directory)])
    assert done.exit_code == 2 and runs == []
    assert "recorded on a real" in done.output and named in done.output
    target = "R58M123" if named == "--device" else ":1"
    done = CliRunner().invoke(app, ["replay", str(directory), named, target])
    assert done.exit_code == 0, done.output
    [spec] = runs
    assert (spec.device if named == "--device" else spec.display) == target


@pytest.mark.parametrize(("meta", "device", "display"), [
    ({"env": "android", "device": "virtual"}, "virtual", None),
    ({"env": "desktop", "display": "new"}, None, "new"),
    ({"env": "browser"}, None, None),
])
def test_a_fresh_device_is_replayed_on_without_naming_it(tmp_path, runs, meta, device, display):
    CliRunner().invoke(app, ["replay", str(recorded(tmp_path, **meta))])
    [spec] = runs
    assert (spec.device, spec.display) == (device, display)


def test_replay_counts_tokens_with_the_runs_checkpoint_to_keep_its_budget(tmp_path, runs,
                                                                          tiny_checkpoint):
    """A run that kept its prompts within a token budget (dropping old screenshots) replays
    within it: the recorded model's folder counts the tokens. Without a counter the budget was
    skipped, and the replayed prompts kept screenshots the run had dropped."""
    history = {"images": 4, "block": 4, "max_tokens": 3000}
    local = recorded(tmp_path / "a", env="browser", model=str(tiny_checkpoint), history=history)
    result = CliRunner().invoke(app, ["replay", str(local)])
    assert result.exit_code == 0, result.output
    assert runs[-1].processor == str(tiny_checkpoint) and runs[-1].max_prompt_tokens == 3000
    # A model that is no folder here: --processor names one, else a note says what is lost.
    remote = recorded(tmp_path / "b", env="browser", model="http://gpu:8000/v1", history=history)
    result = CliRunner().invoke(app, ["replay", str(remote), "--processor", str(tiny_checkpoint)])
    assert result.exit_code == 0 and runs[-1].processor == str(tiny_checkpoint)
    result = CliRunner().invoke(app, ["replay", str(remote)])
    assert result.exit_code == 0 and runs[-1].processor is None
    assert "cannot count without --processor" in result.output
