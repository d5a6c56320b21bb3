"""Where a replay did not repeat its recording: the first step whose action went otherwise (done
where it had failed, refused by the safety gate where it had been allowed, failed where it had
worked). A replay's own status comes from the recorded replies (a "done" reply ends it with
success), so without this a replay whose password step the gate refused still read "success"."""

from __future__ import annotations

from collections.abc import Sequence

from trajectories.records import StepRecord


def first_divergence(recorded: Sequence[StepRecord], replayed: Sequence[StepRecord]
                     ) -> str | None:
    """How the first step that went otherwise went, each way; None when every step of the
    shorter run went as recorded (a shorter replay says why in its own status)."""
    for old, new in zip(recorded, replayed):
        if _outcome(old) != _outcome(new):
            return f"step {new.step} was {_describe(new)}; the recording's was {_describe(old)}"
    return None


def _outcome(step: StepRecord) -> bool | None:
    return None if step.result is None else step.result.ok


def _describe(step: StepRecord) -> str:
    if step.result is None:
        return "not carried out (its reply did not parse)"
    if step.result.ok:
        return "carried out"
    if step.gate is not None and step.gate.decision == "denied":
        return f"refused by the safety gate ({step.gate.by}: {step.gate.reason})"
    return f"a failure ({step.result.message})"
