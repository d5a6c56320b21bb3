"""`replay` says where it did not repeat its recording. A replay's status comes from the recorded
replies, so one whose password step the safety gate refused (no --yes, no terminal to ask on)
still ended "success", exit 0."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from cli.app import app
from core.results import ActionResult
from tests.conftest import require_tool
from trajectories.divergence import first_divergence
from trajectories.records import GateRecord, StepRecord

TYPE = '*FUNCTION*: Type *ARGS*: {"text": "pw-123"}'
DONE = '*FUNCTION*: Terminate *ARGS*: {"status": "success"}'


def test_a_replay_the_gate_stops_is_named_and_fails(tmp_path, monkeypatch):
    require_tool("chromium")
    monkeypatch.chdir(tmp_path)
    page = tmp_path / "login.html"
    page.write_text("<input type=password autofocus>")
    script = tmp_path / "replies.jsonl"
    script.write_text("".join(json.dumps({"response": r}) + "\n" for r in (TYPE, DONE)))
    runner = CliRunner()
    recorded = runner.invoke(app, ["run", "Log in", "--env", "browser", "--url", page.as_uri(),
                                   "--viewport", "400x300", "--model", f"replay:{script}",
                                   "--yes", "--out", "runs"])
    assert recorded.exit_code == 0, recorded.output
    (directory,) = (tmp_path / "runs").iterdir()

    refused = runner.invoke(app, ["replay", str(directory), "--out", "refused"])
    assert refused.exit_code == 1, refused.output
    assert "status: success" in refused.output  # the recorded "done" still ended it
    assert "diverged: step 0 was refused by the safety gate (no terminal" in refused.output
    assert "the recording's was carried out" in refused.output

    allowed = runner.invoke(app, ["replay", str(directory), "--out", "allowed", "--yes"])
    assert allowed.exit_code == 0 and "diverged" not in allowed.output, allowed.output


def step(n: int, ok: bool | None, gate: str | None = None) -> StepRecord:
    return StepRecord(
        step=n, image=f"{n}.png", screen=(10, 10), prompt={"messages": []}, response="r",
        result=None if ok is None else ActionResult(ok=ok, message="m"),
        gate=None if gate is None else GateRecord(decision=gate, rule="tap_text", reason="why",
                                                  by="user"))


def test_the_first_step_that_went_otherwise_is_named_either_way():
    same = [step(0, True), step(1, None), step(2, False)]
    assert first_divergence(same, same) is None
    assert first_divergence(same, same[:2]) is None  # a shorter replay says why in its status
    worked = first_divergence(same, [step(0, True), step(1, None), step(2, True)])
    assert worked == ("step 2 was carried out; the recording's was a failure (m)")
    unparsed = first_divergence(same, [step(0, None)])
    assert unparsed == ("step 0 was not carried out (its reply did not parse); the "
                        "recording's was carried out")
    denied = first_divergence(same, [step(0, False, "denied")])
    assert denied == "step 0 was refused by the safety gate (user: why); the recording's was " \
                     "carried out"
