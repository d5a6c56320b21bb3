"""The CLI end to end on the browser env: run, view, export, replay, and a SIGKILL mid-run."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.conftest import require_tool
from trajectories.reader import load

REPO = Path(__file__).resolve().parent.parent
CLI = [sys.executable, str(REPO / "agent_cli.py")]


def cli(*args: str, cwd: Path, timeout: float = 120,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "COLUMNS": "160", **(env or {})})


def replies(path: Path, texts: list[str]) -> Path:
    path.write_text("".join(json.dumps({"response": t}) + "\n" for t in texts))
    return path


CLICK = '*FUNCTION*: Click *ARGS*: {"point": (500, 500)}'
DONE = '*FUNCTION*: Terminate *ARGS*: {"status": "success"}'


def only_run(root: Path) -> Path:
    (directory,) = [p for p in root.iterdir() if p.is_dir()]
    return directory


def test_run_view_export_and_replay_on_the_browser(tmp_path):
    require_tool("chromium")
    script = replies(tmp_path / "r.jsonl", [CLICK, *["not an action"] * 3, DONE])
    # Settings of the loop that the replay must repeat: the default 2 parse errors in a row
    # would end it, and the default history would show past screenshots.
    done = cli("run", "Click the middle", "--env", "browser", "--model", f"replay:{script}",
               "--out", "runs", "--max-parse-errors", "3", "--history-images", "0",
               "--history-block", "1", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    directory = only_run(tmp_path / "runs")
    assert "status: success after 5 step(s)" in done.stdout
    assert f"view: {(directory / 'view.html').resolve()}" in done.stdout
    assert (directory / "view.html").is_file()
    traj = load(directory)
    assert [s.action and s.action["kind"] for s in traj.steps] == ["click", None, None, None,
                                                                    "terminate"]
    assert traj.meta.model == f"replay:{script}" and traj.meta.env == "browser"

    exported = cli("export", str(directory), "--format", "llamafactory", "--out", "sft.jsonl",
                   cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr
    assert "2 sample(s) from 1 episode(s)" in exported.stdout
    assert "3 step(s) whose reply cannot be trained left out" in exported.stdout

    # Replaying the trajectory repeats its replies on a fresh env.
    replayed = cli("replay", str(directory), "--out", "again", cwd=tmp_path)
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    again = load(only_run(tmp_path / "again"))
    assert [s.response for s in again.steps] == [s.response for s in traj.steps]
    assert [s.action for s in again.steps] == [s.action for s in traj.steps]
    assert [s.prompt for s in again.steps] == [s.prompt for s in traj.steps]


def test_bad_settings_get_clear_errors(tmp_path):
    no_task = cli("run", "order a pizza", "--model", "scripted", cwd=tmp_path)
    assert no_task.returncode == 2
    assert "--task NAME" in no_task.stderr and "phone/book-flight" in no_task.stderr
    unknown = cli("run", "x", "--model", "scripted", "--task", "nope", cwd=tmp_path)
    assert unknown.returncode == 2 and "unknown task 'nope'" in unknown.stderr
    no_checkpoint = cli("run", "x", "--model", "scripted", "--compile", cwd=tmp_path)
    assert no_checkpoint.returncode == 2 and "give --model PATH" in no_checkpoint.stderr
    uncounted = cli("run", "x", "--model", "scripted", "--max-prompt-tokens", "900", cwd=tmp_path)
    assert uncounted.returncode == 2 and "needs a token count" in uncounted.stderr
    no_model = cli("run", "x", cwd=tmp_path)
    assert no_model.returncode == 2 and "--model" in no_model.stderr
    missing = cli("run", "x", "--model", str(tmp_path / "nothing"), cwd=tmp_path)
    assert missing.returncode == 2 and "not a checkpoint directory" in missing.stderr
    not_traj = cli("view", str(tmp_path), cwd=tmp_path)
    assert not_traj.returncode == 2 and "its meta.json is missing" in not_traj.stderr


def test_a_run_whose_reader_goes_stops_with_its_trajectory_finalized(tmp_path):
    """``run ... | head -2``: rich's SystemExit on the broken pipe ended the process with no
    word, and the trajectory stayed "running", with no view."""
    require_tool("chromium")
    wait = '*FUNCTION*: Wait *ARGS*: {"seconds": 0.2}'
    script = replies(tmp_path / "r.jsonl", [wait] * 200)
    proc = subprocess.Popen(
        [*CLI, "run", "Keep waiting", "--env", "browser", "--model", f"replay:{script}",
         "--out", "runs", "--max-steps", "200"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        while "step 1:" not in proc.stdout.readline():
            assert proc.poll() is None, proc.stderr.read()
        proc.stdout.close()  # as head does once it has its lines
        assert proc.wait(60) == 130
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.stderr.read() == ""
    (directory,) = (tmp_path / "runs").iterdir()
    traj = load(directory)
    assert (traj.meta.status, traj.meta.reason) == \
        ("interrupted", "stopped: its output was closed (a broken pipe)")
    assert 2 <= len(traj.steps) < 200
    assert (directory / "view.html").is_file()


def test_sigkill_mid_run_leaves_a_trajectory_view_and_export_read(tmp_path):
    require_tool("chromium")
    wait = '*FUNCTION*: Wait *ARGS*: {"seconds": 0.3}'
    script = replies(tmp_path / "r.jsonl", [CLICK] + [wait] * 200)
    proc = subprocess.Popen(
        [*CLI, "run", "Keep waiting", "--env", "browser", "--model", f"replay:{script}",
         "--out", "runs", "--max-steps", "200"],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        steps_file = None
        while time.monotonic() < deadline:
            found = list((tmp_path / "runs").glob("*/steps.jsonl"))
            if found and found[0].read_text().count("\n") >= 2:
                steps_file = found[0]
                break
            assert proc.poll() is None, "the run ended before it could be killed"
            time.sleep(0.05)
        assert steps_file is not None, "no step was recorded within 60 s"
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    directory = steps_file.parent
    traj = load(directory)
    assert traj.meta.status == "running"  # nobody finalized it: the process died
    assert len(traj.steps) >= 2
    assert all((directory / s.image).is_file() for s in traj.steps)

    viewed = cli("view", str(directory), cwd=tmp_path)
    assert viewed.returncode == 0, viewed.stderr
    html = (directory / "view.html").read_text()
    assert html.count("class='step'") == len(traj.steps)
    exported = cli("export", str(directory), "--format", "qwen2vl", "--out", "sft.jsonl",
                   "--status", "running", cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr
    rows = (tmp_path / "sft.jsonl").read_text().splitlines()
    assert len(rows) == len(traj.steps)


def test_sigkill_while_the_model_loads_leaves_a_run_of_no_step_that_view_reads(tmp_path,
                                                                              tiny_checkpoint):
    """Loading real weights takes minutes, long enough to be killed (out of memory): the run's
    folder is a trajectory from the moment it is made, never an empty folder view refuses."""
    proc = subprocess.Popen([*CLI, "run", "Open the settings", "--env", "browser", "--model",
                             str(tiny_checkpoint), "--out", "runs"], cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not list((tmp_path / "runs").glob("*/meta.json")) and time.monotonic() < deadline:
            assert proc.poll() is None, "the run ended before it could be killed"
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)  # torch is still being imported, seconds from a step
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    (directory,) = (tmp_path / "runs").iterdir()
    traj = load(directory)
    assert (traj.meta.status, traj.steps, traj.meta.goal) == ("running", [], "Open the settings")
    assert "before its first step" in traj.meta.reason
    viewed = cli("view", str(directory), cwd=tmp_path)
    assert viewed.returncode == 0 and "No step was recorded" in (directory / "view.html").read_text()


def test_a_run_that_cannot_load_its_model_leaves_no_folder(tmp_path, tiny_checkpoint):
    """Found only once the weights are read, after the run's folder (and its meta.json) was
    made: both go again, with the folders --out made."""
    broken = tmp_path / "ckpt"
    shutil.copytree(tiny_checkpoint, broken)
    config = json.loads((broken / "config.json").read_text())
    config["text_config"]["intermediate_size"] += 8
    (broken / "config.json").write_text(json.dumps(config))
    done = cli("run", "x", "--env", "browser", "--model", str(broken), "--out", "out/runs",
               cwd=tmp_path)
    assert done.returncode == 2 and "shape mismatch" in done.stderr, done.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("torn", ['{"step": 5, "ima', ""])
def test_a_torn_last_line_is_ignored(tmp_path, torn):
    from actions.dialects import get_dialect
    from agent.loop import Agent
    from tests.agent_fakes import FakePhone, ListPolicy
    from trajectories.recorder import Recorder

    env = FakePhone()
    Agent(env, ListPolicy(['*FUNCTION*: Home *ARGS*: {}', DONE]),
          get_dialect("qwen2vl", env.form_factor), recorder=Recorder(tmp_path / "t")).run("x")
    with open(tmp_path / "t" / "steps.jsonl", "a") as f:
        f.write(torn)
    assert len(load(tmp_path / "t").steps) == 2


def test_replaying_a_trajectory_defaults_to_its_dialect(tmp_path):
    from actions.dialects import get_dialect
    from agent.loop import Agent
    from runtime.build import resolve_dialect
    from runtime.settings import RunSpec
    from tests.agent_fakes import FakePhone, ListPolicy
    from trajectories.recorder import Recorder

    env = FakePhone()
    Agent(env, ListPolicy(["Action: finished()"]), get_dialect("uitars", env.form_factor),
          recorder=Recorder(tmp_path / "t")).run("x")
    assert resolve_dialect(RunSpec(goal="x", model=f"replay:{tmp_path / 't'}")) == "uitars"
    assert resolve_dialect(RunSpec(goal="x", model=f"replay:{tmp_path / 't'}",
                                   dialect="qwen25vl")) == "qwen25vl"
    assert resolve_dialect(RunSpec(goal="x", model="scripted")) == "qwen2vl"
    from runtime.settings import RunError

    with pytest.raises(RunError, match="unknown --dialect 'qwen3'"):
        resolve_dialect(RunSpec(goal="x", model="scripted", dialect="qwen3"))


def test_a_checkpoint_defaults_to_its_familys_dialect(tiny_checkpoint, tiny_qwen25_checkpoint,
                                                      tmp_path):
    from runtime.build import resolve_dialect
    from runtime.settings import RunSpec

    assert resolve_dialect(RunSpec(goal="x", model=str(tiny_qwen25_checkpoint))) == "qwen25vl"
    assert resolve_dialect(RunSpec(goal="x", model=str(tiny_checkpoint))) == "qwen2vl"
    # --dialect wins (a UI-TARS fine-tune has the same model_type).
    assert resolve_dialect(RunSpec(goal="x", model=str(tiny_qwen25_checkpoint),
                                   dialect="uitars15")) == "uitars15"
    # A served model: the checkpoint its prompts are counted with (--processor).
    assert resolve_dialect(RunSpec(goal="x", model="http://127.0.0.1:9/v1",
                                   processor=str(tiny_qwen25_checkpoint))) == "qwen25vl"
    assert resolve_dialect(RunSpec(goal="x", model="http://127.0.0.1:9/v1")) == "qwen2vl"
    # A folder that is no checkpoint keeps the default; loading it says what is missing.
    assert resolve_dialect(RunSpec(goal="x", model=str(tmp_path))) == "qwen2vl"


@pytest.mark.parametrize("env", [["--env", "browser"], ["--env", "android", "--device", "virtual"]],
                         ids=["browser", "virtual-phone"])
def test_ctrl_c_mid_run_finalizes_the_trajectory(tmp_path, env):
    require_tool("chromium")
    if "android" in env:
        require_tool("adb")
    wait = '*FUNCTION*: Wait *ARGS*: {"seconds": 0.3}'
    script = replies(tmp_path / "r.jsonl", [wait] * 200)
    # Short: chromium's socket in it must fit a unix socket's path (pytest's tmp_path is long).
    temp = Path(tempfile.mkdtemp(prefix="vl-"))
    # A terminal's Ctrl-C reaches the whole process group, chromium included.
    proc = subprocess.Popen(
        [*CLI, "run", "Keep waiting", *env, "--model", f"replay:{script}",
         "--out", "runs", "--max-steps", "200"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True, env={**os.environ, "COLUMNS": "160", "TMPDIR": str(temp)},
    )
    try:
        deadline = time.monotonic() + 60
        while not list((tmp_path / "runs").glob("*/steps.jsonl")) or \
                not next((tmp_path / "runs").glob("*/steps.jsonl")).read_text():
            assert time.monotonic() < deadline and proc.poll() is None, proc.stdout.read()
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGINT)
        output, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, output  # as a shell reports Ctrl-C
    assert "status: interrupted" in output
    for noise in ("Traceback", "Exception ignored", "Task was destroyed", "Event loop is closed",
                  "Future exception was never retrieved"):
        assert noise not in output  # no stray asyncio warning from the browser's event loop
    traj = load(only_run(tmp_path / "runs"))
    assert traj.meta.status == "interrupted" and traj.meta.finished_at is not None
    assert traj.meta.steps == len(traj.steps) >= 1
    # chromium, interrupted too, removes none of its temporary files (its singleton socket's
    # folder): the run does, with everything else it made there.
    assert sorted(p.name for p in temp.iterdir()) == []
    temp.rmdir()


def test_a_long_tmpdir_where_chromium_still_fits_its_socket_runs(tmp_path):
    """chromium's singleton socket goes in $TMPDIR: a folder of the run's own inside it must not
    make a path that chromium could take into one too long for a unix socket."""
    require_tool("chromium")
    fits = Path(tempfile.mkdtemp(prefix="vl-"))
    try:
        # 60 characters: chromium's own folder and socket (45) still fit 107 without ours.
        longest = fits / ("t" * (60 - len(str(fits)) - 1))
        longest.mkdir()
        script = replies(tmp_path / "r.jsonl", [DONE])
        done = subprocess.run([*CLI, "run", "Look", "--env", "browser", "--model",
                               f"replay:{script}", "--out", "runs"], cwd=tmp_path,
                              capture_output=True, text=True,
                              env={**os.environ, "TMPDIR": str(longest)}, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        assert list(longest.iterdir()) == []
    finally:
        shutil.rmtree(fits)


def test_browser_options_are_used_and_replay_starts_where_the_run_did(tmp_path):
    require_tool("chromium")
    from tests.local_server import serve_directory

    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "start.html").write_text("<title>start</title><h1>Start here</h1>")
    script = replies(tmp_path / "r.jsonl", [DONE])
    with serve_directory(tmp_path / "site") as base:
        url = base + "start.html"
        done = cli("run", "Look", "--env", "browser", "--model", f"replay:{script}",
                   "--url", url, "--viewport", "400x300", "--scale", "2",
                   "--allow-domain", "127.0.0.1", "--out", "runs", cwd=tmp_path)
        assert done.returncode == 0, done.stdout + done.stderr
        traj = load(only_run(tmp_path / "runs"))
        assert traj.steps[0].screen == (800, 600)  # the viewport times the scale
        assert traj.steps[0].extras.get("url") == url
        meta = traj.meta
        assert (meta.url, meta.viewport, meta.scale, meta.allowed_domains) == (
            url, [400, 300], 2.0, ["127.0.0.1"])
        replayed = cli("replay", str(only_run(tmp_path / "runs")), "--out", "again",
                       cwd=tmp_path)
        assert replayed.returncode == 0, replayed.stdout + replayed.stderr
        again = load(only_run(tmp_path / "again"))
        assert again.steps[0].extras.get("url") == url and again.steps[0].screen == (800, 600)

    bad = cli("run", "x", "--env", "browser", "--model", "scripted", "--viewport", "wide",
              cwd=tmp_path)
    assert bad.returncode == 2 and "--viewport 'wide' is not WIDTHxHEIGHT" in bad.stderr


def test_replay_applies_the_runs_gate_rules(tmp_path):
    """A navigation the run's --gate-rules refused is refused again by its replay (with no
    terminal to ask), and reaches no server: the replay ran on the default rules, which allow
    any domain, and opened the page before naming the divergence."""
    require_tool("chromium")
    from tests.local_server import serve_pages

    (tmp_path / "rules.json").write_text(json.dumps({"allowed_domains": ["example.com"]}))
    with serve_pages(lambda query: b"<title>page</title>") as pages:
        url = f"http://127.0.0.1:{pages.server_port}/page?from=model"
        script = replies(tmp_path / "r.jsonl",
                         [f'*FUNCTION*: Navigate *ARGS*: {{"url": "{url}"}}', DONE])
        done = cli("run", "Open the page", "--env", "browser", "--model", f"replay:{script}",
                   "--gate-rules", "rules.json", "--deny-sensitive", "--out", "runs",
                   cwd=tmp_path)
        assert done.returncode == 0, done.stdout + done.stderr
        recorded = load(only_run(tmp_path / "runs"))
        assert recorded.steps[0].gate.decision == "denied"
        assert recorded.meta.gate_rules["allowed_domains"] == ["example.com"]
        replayed = subprocess.run([*CLI, "replay", str(only_run(tmp_path / "runs")), "--out",
                                   "again"], cwd=tmp_path, capture_output=True, text=True,
                                  timeout=120, stdin=subprocess.DEVNULL)
        assert replayed.returncode == 0, replayed.stdout + replayed.stderr
        again = load(only_run(tmp_path / "again"))
        assert again.steps[0].gate.decision == "denied", again.steps[0]
        assert "/page?from=model" not in pages.asked, pages.asked


def test_a_desktop_run_on_a_private_display_replays_on_one(tmp_path):
    require_tool("xvfb")
    script = replies(tmp_path / "r.jsonl", [CLICK, DONE])
    environment = {k: v for k, v in os.environ.items() if k != "DISPLAY"}  # no desktop here
    done = subprocess.run([*CLI, "run", "Click", "--env", "desktop", "--display", "new",
                           "--model", f"replay:{script}", "--out", "runs"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120, env=environment)
    assert done.returncode == 0, done.stdout + done.stderr
    recorded = only_run(tmp_path / "runs")
    assert load(recorded).meta.display == "new"
    replayed = subprocess.run([*CLI, "replay", str(recorded), "--out", "again"], cwd=tmp_path,
                              capture_output=True, text=True, timeout=120, env=environment)
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    assert len(load(only_run(tmp_path / "again")).steps) == 2


def test_adb_port_follows_the_environment_as_adb_does(monkeypatch):
    from envs.android import DEFAULT_ADB_PORT, adb_server_port
    from envs.base import EnvError

    monkeypatch.delenv("ANDROID_ADB_SERVER_PORT", raising=False)
    assert adb_server_port() == DEFAULT_ADB_PORT
    monkeypatch.setenv("ANDROID_ADB_SERVER_PORT", "6123")
    assert adb_server_port() == 6123
    monkeypatch.setenv("ANDROID_ADB_SERVER_PORT", "port")
    with pytest.raises(EnvError, match="ANDROID_ADB_SERVER_PORT='port'"):
        adb_server_port()


def test_tasks_list_names_every_task(tmp_path):
    from tasks.registry import get_task, task_names

    done = cli("tasks", "list", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    # Each task's row (its first line: a long goal wraps) names it and its env.
    cells = [[c.strip() for c in line.split("│")[1:3]] for line in done.stdout.splitlines()
             if line.startswith("│") and line.split("│")[1].strip()]
    assert cells == [[name, get_task(name).env] for name in task_names()]


def test_tasks_list_shows_a_goal_with_square_brackets_as_written(monkeypatch):
    """A seed's goal may hold "[bug]" (desktop/terminal-write-file draws such lines)."""
    from types import SimpleNamespace

    from typer.testing import CliRunner

    import tasks.registry
    from cli.app import app

    real = tasks.registry.get_task
    monkeypatch.setattr(tasks.registry, "get_task", lambda name: SimpleNamespace(
        name=name, env="desktop", goal="write fix [bug] {soon} [/] to notes.txt")
        if name == "desktop/terminal-write-file" else real(name))
    done = CliRunner().invoke(app, ["tasks", "list", "--env", "desktop"],
                              env={"COLUMNS": "200"})
    assert done.exit_code == 0, done.output
    assert "write fix [bug] {soon} [/] to notes.txt" in done.output


def test_desktop_run_on_a_private_display(tmp_path):
    require_tool("xvfb")
    require_tool("xdotool")
    script = replies(tmp_path / "r.jsonl", [DONE])
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "XAUTHORITY")}
    done = subprocess.run([*CLI, "run", "x", "--env", "desktop", "--display", "new", "--model",
                           f"replay:{script}", "--out", "runs"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "private X display :" in done.stdout
    assert load(only_run(tmp_path / "runs")).steps[0].screen == (1280, 800)
    # The gate can see nothing there (no element lookup): the run says so.
    assert "the safety gate finds no action sensitive here" in " ".join(done.stdout.split())


@pytest.mark.parametrize("goal", ["", "   ", "\t\n", "\u3000"])
def test_a_blank_goal_is_refused_before_anything_starts(tmp_path, goal):
    from runtime.build import resolve_task
    from runtime.settings import RunError, RunSpec

    with pytest.raises(RunError, match="give a GOAL, or a task with --task NAME"):
        resolve_task(RunSpec(goal=goal, model="replay:x", env="browser"))
    if goal == "   ":  # and from the command line, once
        done = cli("run", goal, "--env", "browser", "--model", "replay:x", "--out",
                   str(tmp_path / "runs"), cwd=tmp_path)
        assert done.returncode == 2 and "give a GOAL" in done.stderr, done.stderr
        assert not (tmp_path / "runs").exists()


def test_an_out_that_names_a_file_is_refused_in_a_sentence(tmp_path):
    """Before, `run --out FILE` ended with Python's "[Errno 17] File exists"; now it says what
    --out must be, as bench does, and leaves the file as it was."""
    script = replies(tmp_path / "r.jsonl", [DONE])
    (tmp_path / "afile").write_text("kept")
    done = cli("run", "Look", "--env", "browser", "--model", f"replay:{script}",
               "--out", "afile", cwd=tmp_path)
    assert done.returncode == 2
    assert "--out afile is a file; a run writes its trajectory in a folder" in done.stderr, \
        done.stderr
    assert "Errno" not in done.stdout + done.stderr
    assert (tmp_path / "afile").read_text() == "kept"
