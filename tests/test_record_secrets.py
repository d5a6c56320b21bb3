"""`record` and secrets: a password is demonstrated as its placeholder, never recorded as typed.

A demonstration typed a password into a password field as it is, and the trajectory, its view
and the SFT export held it; record had no --secret, and a goal naming one told the user to pass
an option record did not have, after the page was already served.
"""

from __future__ import annotations

import io
import re
import threading
import time

import httpx
import pytest
from rich.console import Console
from typer.testing import CliRunner

from cli.app import app
from tests.conftest import require_tool

SECRET = "hunter2-S3cret"


@pytest.mark.parametrize("args, needle", [
    (["Log in with <secret:PW>", "--env", "browser"], "--secret PW"),
    (["Log in", "--env", "nope"], "unknown --env 'nope'"),
    (["Log in", "--env", "browser", "--secret", "PW"], "environment variable PW"),
])
def test_settings_that_cannot_be_used_end_record_before_its_page_is_served(args, needle,
                                                                          monkeypatch):
    monkeypatch.delenv("PW", raising=False)
    result = CliRunner().invoke(app, ["record", *args])
    assert result.exit_code == 2, result.output
    assert needle in result.output and "record at" not in result.output


def test_a_password_is_typed_as_its_placeholder_and_recorded_so(tmp_path):
    require_tool("chromium")
    from runtime.record import record
    from runtime.settings import RunSpec
    from trajectories.reader import load

    login = tmp_path / "login.html"
    login.write_text("<input id=user autofocus><input id=pw type=password>")
    spec = RunSpec(goal="Log in with <secret:PW>", model="demonstration", env="browser",
                   url=login.as_uri(), out=tmp_path / "runs", confirm="yes",
                   secrets={"PW": SECRET}, viewport=(400, 300))
    output = io.StringIO()
    outcome: list = []
    thread = threading.Thread(target=lambda: outcome.append(
        record(spec, Console(file=output, width=200))), daemon=True)
    thread.start()
    root = wait_for(lambda: re.search(r"record at (http://127\.0\.0\.1:\d+/)",
                                      output.getvalue()), "the page's URL").group(1)

    def post(action: dict) -> httpx.Response:
        wait_for(lambda: httpx.get(root + "state").json()["waiting"], "the next step")
        return httpx.post(root + "action", json={"action": action})

    # Typed into an ordinary field, text goes through as it is.
    assert post({"kind": "type", "text": "ann"}).status_code == 200
    assert post({"kind": "key", "key": "tab"}).status_code == 200  # to the password field
    for text in (SECRET, SECRET + "<secret:PW>"):  # a placeholder beside it hides nothing
        refused = post({"kind": "type", "text": text})
        assert refused.status_code == 400 and "--secret NAME" in refused.json()["error"]
    assert post({"kind": "type", "text": "<secret:PW>"}).status_code == 200
    assert post({"kind": "terminate", "status": "success"}).status_code == 200
    # Once the page has seen the end, the server stops without lingering.
    wait_for(lambda: httpx.get(root + "state").json()["finished"], "the end")
    thread.join(timeout=60)
    assert outcome, "record did not end"
    directory = outcome[0].directory
    steps = load(directory).steps
    assert [s.action["kind"] for s in steps] == ["type", "key", "type", "terminate"]
    assert steps[2].action["text"] == "<secret:PW>" and steps[2].result.ok
    assert steps[2].gate is not None and steps[2].gate.rule == "password_field"
    for path in directory.rglob("*"):  # the trajectory, its view: none holds the value
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path


def test_an_action_after_the_end_hears_that_the_recording_ended():
    from actions.dialects import get_dialect
    from agent.policies.base import Episode
    from agent.policies.demonstration import DemonstrationPolicy

    policy = DemonstrationPolicy()
    policy.start(Episode(goal="Press nothing", dialect=get_dialect("qwen2vl", "browser")))
    policy.stop()
    with pytest.raises(ValueError, match="the recording has ended"):  # not "the device is busy"
        policy.submit({"kind": "home"})


def wait_for(condition, what: str, timeout_s: float = 60):
    deadline = time.monotonic() + timeout_s
    while not (value := condition()):
        assert time.monotonic() < deadline, f"no {what} within {timeout_s}s"
        time.sleep(0.05)
    return value
