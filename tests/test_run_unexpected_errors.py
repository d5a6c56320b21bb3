"""A run that meets what nobody planned for keeps its trajectory and says so: a model's text the
terminal cannot encode, a url Python cannot split, a bug inside the episode."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest
import typer
from rich.console import Console

from core.terminal import printable
from tests.agent_fakes import FakePhone, ListPolicy
from tests.conftest import require_tool
from trajectories.reader import load

REPO = Path(__file__).resolve().parent.parent
TAP = '*FUNCTION*: Tap *ARGS*: {"point": (500, 250)}'


def test_a_lone_surrogate_prints_as_the_replacement_character():
    assert printable("a\ud800b\udce9\x1b") == "a\ufffdb\ufffd\\x1b"
    assert printable("\ud83d\ude00") == "\U0001F600"  # a pair split in two code points joins


class BuggyPolicy(ListPolicy):
    """Replies once, then fails as a bug would."""

    def respond(self, request):
        if self.requests:
            raise RuntimeError("index out of range in the policy")
        return super().respond(request)


@contextmanager
def phone(spec, console):
    yield FakePhone(), None


def crashing_run(tmp_path):
    from runtime.episode import run
    from runtime.settings import RunSpec

    spec = RunSpec(goal="tap it", model="human", env="android", out=tmp_path / "runs")

    def runner(spec, console, observer):
        return run(spec, console, observer, env_factory=phone, policy=BuggyPolicy([TAP]))

    return spec, runner


def test_a_bug_mid_episode_keeps_the_trajectory_and_its_view(tmp_path):
    from runtime.episode import EpisodeCrashed

    spec, runner = crashing_run(tmp_path)
    with pytest.raises(EpisodeCrashed) as raised:
        runner(spec, Console(file=io.StringIO()), None)
    crash = raised.value
    assert str(crash) == "RuntimeError: index out of range in the policy"
    traj = load(crash.directory)
    assert traj.meta.status == "error" and traj.meta.reason == str(crash)
    assert len(traj.steps) == 1 and crash.view.is_file()


def test_the_cli_reports_a_bug_mid_episode_as_a_failed_run_with_its_paths(tmp_path, capsys):
    from cli.run_cmd import run_and_report

    spec, runner = crashing_run(tmp_path)
    with pytest.raises(typer.Exit) as exited:
        run_and_report(spec, runner)
    assert exited.value.exit_code == 1  # not 2: no setting was wrong
    shown = capsys.readouterr()
    assert "error: the episode stopped on an unexpected error: RuntimeError: index out of range" \
        in shown.err
    (directory,) = (tmp_path / "runs").iterdir()
    assert f"trajectory: {directory.resolve()}" in shown.out
    assert f"view: {(directory / 'view.html').resolve()}" in shown.out


def test_an_error_before_the_trajectory_started_is_reported_as_it_is(tmp_path, monkeypatch,
                                                                     capsys):
    """A disk that is full before meta.json was written: that error, not a missing view's."""
    from cli.run_cmd import run_and_report
    from trajectories.recorder import Recorder

    def full(self, meta):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Recorder, "start", full)
    spec, runner = crashing_run(tmp_path)
    with pytest.raises(typer.Exit):
        run_and_report(spec, runner)
    assert "error: [Errno 28] No space left on device" in capsys.readouterr().err


def test_a_bench_episode_that_meets_a_bug_names_the_bug_once(tmp_path):
    from runtime.bench.execute import JobRunner
    from runtime.bench.jobs import EpisodeJob
    from tests.bench_fakes import FakeCatalog, TypeWord, fake_env

    class BuggyCheck(TypeWord):
        name = "fake/buggy-check"

        def check(self, env, answer=None):
            raise RuntimeError("boom in check")

    result = JobRunner(FakeCatalog(BuggyCheck), fake_env)(
        EpisodeJob(suite="fake", task="fake/buggy-check", seed=1, model="scripted"), tmp_path)
    assert result.error == "RuntimeError: boom in check"  # not "EpisodeCrashed: RuntimeError..."
    assert result.trajectory is not None


@pytest.mark.parametrize("encoding", ["utf-8:strict", "latin-1"])
def test_text_the_terminal_cannot_encode_and_a_broken_url_end_no_run(tmp_path, encoding):
    """A goal whose bytes are not UTF-8, a reply holding a lone surrogate (an endpoint's JSON
    can send one) and characters a latin-1 terminal lacks are printed, not fatal; a navigation
    to a url Python cannot split is refused to the model like any other; a long reason stays
    on one line in a log."""
    require_tool("chromium")
    message = " ".join(["all done"] * 12)
    script = tmp_path / "r.jsonl"
    script.write_text("".join(json.dumps({"response": text}) + "\n" for text in [
        'thought \ud800 ✓ here *FUNCTION*: Wait *ARGS*: {"seconds": 0.1}',
        '*FUNCTION*: Navigate *ARGS*: {"url": "http://[::1"}',
        '*FUNCTION*: Terminate *ARGS*: {"status": "success", "message": "%s"}' % message,
    ]))
    done = subprocess.run(
        [sys.executable, str(REPO / "agent_cli.py"), "run", os.fsdecode(b"caf\xe9 goal"),
         "--env", "browser", "--model", f"replay:{script}", "--out", "runs"],
        cwd=tmp_path, capture_output=True, timeout=120,
        env={**os.environ, "PYTHONIOENCODING": encoding, "COLUMNS": "80"})
    out = done.stdout.decode(encoding.split(":")[0])
    assert done.returncode == 0, out + done.stderr.decode(errors="replace")
    assert f"status: success after 3 step(s): {message}\n" in out
    (directory,) = (tmp_path / "runs").iterdir()
    assert f"view: {(directory / 'view.html').resolve()}" in out
    steps = load(directory).steps
    assert steps[0].thought == "thought \ufffd ✓ here"
    assert not steps[1].result.ok and "is not a url that can be opened" in steps[1].result.message
