"""Values a setting cannot take end in a clear error, not a traceback from deeper down: digits
that are not ASCII (``str.isdigit`` takes "²", which ``int`` refuses), a regular expression too
big to compile, a viewport larger than chromium emulates."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from agent.safety import load_rules
from cli.app import app
from envs.android import adb_server_port
from envs.base import EnvError
from envs.virtual_phone.keycodes import key_name
from runtime.settings import RunError, parse_viewport


@pytest.mark.parametrize("size", ["²x2400", "1080x2400²", "١٠٨٠x٢٤٠٠"])
def test_sizes_take_decimal_digits_only_as_int_reads_them(size):
    parsed = CliRunner().invoke(app, ["parse", "--screen", size], input="x\n")
    assert isinstance(parsed.exception, SystemExit)  # an exit with a message, not a crash
    if "²" in size:
        assert parsed.exit_code == 2 and "is not WxH" in parsed.output
        with pytest.raises(RunError, match="is not WIDTHxHEIGHT"):
            parse_viewport(size)
    else:  # Arabic-Indic digits are decimal digits, and int reads them
        assert parse_viewport(size) == (1080, 2400) and "is not WxH" not in parsed.output


@pytest.mark.parametrize("size", ["1280x800", "1280X800", " 1280 x 800 ", "0x800", "1280x",
                                  "x", "12x34x5", "-1x5", "1e3x800"])
def test_viewport_and_screen_read_a_size_alike(size):
    parsed = CliRunner().invoke(app, ["parse", "--screen", size], input="x\n")
    screen_ok = "is not WxH" not in parsed.output
    try:
        viewport = parse_viewport(size)
    except RunError:
        viewport = None
    assert (viewport is not None) == screen_ok
    assert viewport in (None, (1280, 800))


def test_a_key_code_or_port_in_other_digits_is_refused_by_name(monkeypatch):
    with pytest.raises(ValueError, match="unknown key ²"):
        key_name("²")
    monkeypatch.setenv("ANDROID_ADB_SERVER_PORT", "5⁰37")
    with pytest.raises(EnvError, match="is not a port"):
        adb_server_port()


def test_a_pattern_too_big_to_compile_is_a_bad_rules_file(tmp_path):
    rules = tmp_path / "rules.json"
    rules.write_text('{"tap_text": "a{99999999999}"}')
    with pytest.raises(ValueError, match="cannot read the gate rules .*not a regular expression"):
        load_rules(rules)


@pytest.mark.parametrize("viewport,scale", [((99_999_999, 800), 1.0), ((1280, 800), 20.0)])
def test_a_viewport_past_what_chromium_draws_is_refused_before_it_starts(viewport, scale):
    from envs.browser import BrowserEnv

    with pytest.raises(ValueError, match="makes screenshots over 16384 pixels a side"):
        BrowserEnv(viewport=viewport, device_scale_factor=scale)


@pytest.mark.parametrize("command", ["run", "record"])
@pytest.mark.parametrize("env, option", [("browser", ["--device", "emulator-5554"]),
                                         ("desktop", ["--adb-port", "5037"]),
                                         ("android", ["--display", ":0"]),
                                         ("desktop", ["--url", "http://example.com"])])
def test_an_option_of_another_env_is_refused_not_ignored(command, env, option):
    args = [command, "x", "--env", env, *option] + (["--model", "scripted"] if command == "run"
                                                    else [])
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    assert f"{option[0]} is an option of --env" in result.output and f"on --env {env}" in \
        result.output


@pytest.mark.parametrize("env, option", [("desktop", ["--allow-domain", "example.com"]),
                                         ("android", ["--viewport", "800x600"]),
                                         ("desktop", ["--scale", "2"])])
def test_a_browser_option_on_another_env_is_refused_not_ignored(env, option):
    """An allowlist the desktop never applies would be a safety setting silently ignored."""
    result = CliRunner().invoke(app, ["run", "x", "--env", env, *option, "--model", "human"])
    assert result.exit_code == 2, result.output
    assert f"{option[0]} is an option of --env browser" in result.output


@pytest.mark.parametrize("args, model, said", [
    (["--env", "android", "--device", "virtual", "--adb-port", "5999"], "scripted",
     "--device virtual starts a phone with an adb server of its own"),
    (["--env", "browser", "--temperature", "0.5"], "replay:r.jsonl",
     "--temperature sets how a model decodes"),
    (["--env", "browser", "--repetition-penalty", "1.1"], "replay:r.jsonl",
     "--repetition-penalty sets how a model decodes"),
])
def test_settings_no_part_of_the_run_would_use_are_refused_not_ignored(tmp_path, args, model,
                                                                         said):
    (tmp_path / "r.jsonl").write_text('{"response": "x"}\n')
    result = CliRunner().invoke(app, ["run", "x", *args, "--model", model.replace(
        "r.jsonl", str(tmp_path / "r.jsonl")), "--out", str(tmp_path / "runs")])
    assert result.exit_code == 2, result.output
    assert said in " ".join(result.output.split()), result.output
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("env", ["browser", "android"])
def test_a_scripted_goal_no_task_matches_names_the_tasks_it_could_play(env):
    from tasks.registry import find_tasks

    result = CliRunner().invoke(app, ["run", "do the impossible", "--env", env, "--model",
                                      "scripted"], env={"COLUMNS": "100000"})
    assert result.exit_code == 2, result.output
    listed = result.output.split(f"the tasks with a solution on --env {env} are: ")[1]
    named = {n.strip(",") for n in listed.split()}
    tasks = {t.name: t for t in find_tasks()}
    assert named <= set(tasks) and all(tasks[n].has_solution and tasks[n].env == env
                                       for n in named)
    assert {n for n, t in tasks.items() if t.has_solution and t.env == env} == named


def test_bench_refuses_a_temperature_no_checkpoint_would_use(tmp_path):
    result = CliRunner().invoke(app, ["bench", "--suite", "miniwob", "--model", "scripted",
                                      "--temperature", "0.5", "--out", str(tmp_path / "b")])
    assert result.exit_code == 2 and "--temperature sets how a checkpoint decodes" in \
        " ".join(result.output.split()), result.output
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize("args, said", [
    (["--env", "browser", "--scale", "0"], "--scale 0: the scale 0 must be a number above 0"),
    (["--env", "browser", "--scale", "20"], "makes screenshots over 16384 pixels a side"),
    (["--env", "browser", "--seed", "5"], "--seed 5 draws a task's params"),
    (["--env", "browser", "--served-model", "qwen"], "--served-model names the model an "
                                                     "endpoint serves"),
    (["--env", "browser", "--repetition-penalty", "0"], "--repetition-penalty must be a number "
                                                        "above 0 (1: none), got 0.0"),
])
def test_settings_are_refused_before_the_model_loads(tmp_path, args, said):
    """Refused by ``check``, before the checkpoint is read: the folder given is no checkpoint,
    and the message is the setting's, not the checkpoint's."""
    not_a_checkpoint = tmp_path / "weights"
    not_a_checkpoint.mkdir()
    result = CliRunner().invoke(app, ["run", "x", *args, "--model", str(not_a_checkpoint),
                                      "--out", str(tmp_path / "runs")])
    assert result.exit_code == 2, result.output
    assert said in " ".join(result.output.split()), result.output
    assert not (tmp_path / "runs").exists()


def test_a_repetition_penalty_for_no_model_is_refused_not_ignored():
    result = CliRunner().invoke(app, ["run", "x", "--env", "browser", "--model", "human",
                                      "--repetition-penalty", "1.1"])
    assert result.exit_code == 2, result.output
    assert "--repetition-penalty sets how a model decodes" in result.output


@pytest.mark.parametrize("value", ["inf", "nan", "-1"])
@pytest.mark.parametrize("command", ["run", "bench", "model generate"])
def test_a_temperature_no_sampler_takes_is_refused_before_anything_starts(tmp_path, value,
                                                                          command):
    """inf passed click's min=0: run loaded the model and started the env, then ended in
    error (exit 1); bench wrote every episode as an error into an --out whose settings a
    resume repeats."""
    weights = tmp_path / "weights"
    weights.mkdir()
    args = {"run": ["run", "x", "--env", "browser", "--model", str(weights)],
            "bench": ["bench", "--suite", "miniwob", "--model", str(weights)],
            "model generate": ["model", "generate", str(weights), "-p", "x"]}[command]
    out = [] if command == "model generate" else ["--out", str(tmp_path / "out")]
    result = CliRunner().invoke(app, [*args, "--temperature", value, *out],
                                env={"COLUMNS": "200"})
    assert result.exit_code == 2, result.output
    assert "Invalid value for '--temperature': it must be a finite number of at least 0" in \
        result.output, result.output
    assert not (tmp_path / "out").exists()


def test_a_run_spec_from_python_with_an_infinite_temperature_is_refused_by_check(tmp_path):
    from runtime.episode import check
    from runtime.settings import RunSpec

    weights = tmp_path / "weights"
    weights.mkdir()
    with pytest.raises(RunError, match="--temperature must be a finite number of at least 0"):
        check(RunSpec(goal="x", env="browser", model=str(weights), temperature=float("inf")))


def test_bench_settings_from_python_refuse_an_infinite_temperature():
    """Before --out is written: every episode ended in error, and bench.json stored the value
    as null, which no resume could read."""
    from pydantic import ValidationError

    from runtime.bench.plan import BenchSettings

    with pytest.raises(ValidationError, match="temperature must be a finite number of at least"):
        BenchSettings(suite="miniwob", model="weights", temperature=float("inf"))
