"""`run` and `bench` end a settings mistake with its one error line on stderr, as every other command does:
`run ... > log` still shows why nothing ran, and stdout stays free of it."""

from __future__ import annotations

import json

import pytest

from tests.test_agent_cli import cli


@pytest.mark.parametrize("args, words", [
    (["--model", "scripted", "--task", "nope"], "unknown task 'nope'"),
    (["--model", "replay:REPLIES", "--env", "bogus"], "unknown --env 'bogus'"),
    (["--model", "replay:REPLIES", "--env", "browser", "--dialect", "nope"],
     "unknown --dialect 'nope'"),
    (["--model", "replay:REPLIES", "--env", "browser", "--scale", "0"], "--scale 0"),
    (["--model", "no-such-checkpoint", "--env", "browser"], "not a checkpoint directory"),
])
def test_run_settings_errors_are_one_line_on_stderr(tmp_path, args, words):
    replies = tmp_path / "replies.jsonl"
    replies.write_text(json.dumps({"response": "*FUNCTION*: Terminate *ARGS*: "
                                   '{"status": "success"}'}) + "\n")
    args = [a.replace("REPLIES", str(replies)) for a in args]
    done = cli("run", "x", *args, cwd=tmp_path, timeout=60)
    assert done.returncode == 2, done.stdout + done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and words in errors[0], (done.stdout, done.stderr)
    assert "error:" not in done.stdout and "Traceback" not in done.stderr


def test_a_secret_in_a_run_error_stays_hidden_on_stderr(tmp_path):
    done = cli("run", "x", "--model", "scripted", "--task", "nope-hunter2",
               "--secret", "PIN=hunter2", cwd=tmp_path, timeout=60)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "unknown task" in done.stderr and "hunter2" not in done.stdout + done.stderr


def test_bench_settings_errors_are_on_stderr_too(tmp_path):
    (tmp_path / "taken").write_text("a file where --out wants a folder")
    done = cli("bench", "--suite", "phone", "--model", "scripted", "--out",
               str(tmp_path / "taken"), cwd=tmp_path, timeout=60)
    assert done.returncode == 2, done.stdout + done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "taken" in errors[0], (done.stdout, done.stderr)
    assert "error:" not in done.stdout
