"""Notes app tasks (envs/virtual_phone/apps/notes)."""

from __future__ import annotations

import random
from typing import Any, Iterator

from core.actions import Terminate, Type
from core.results import Score
from envs.base import Env
from tasks.base import SolutionStep
from tasks.phone.device import NOTES, PhoneTask, app_state, find, set_app_state, tap, wait_for

NOTE_TEXTS = ("Buy milk and eggs", "Call the dentist at 9", "Water the plants",
              "Pick up the dry cleaning", "Book a table for Friday", "Renew the passport",
              "Send the report to Sam", "Pay the electricity bill")


class WriteNote(PhoneTask):
    name = "phone/write-note"
    goal_template = "Write a note that says '{text}' and save it."
    tags = frozenset({"notes", "typing", "easy"})
    max_steps = 8
    keywords = ("notes", "memo", "remember")

    @classmethod
    def sample_params(cls, rng: random.Random) -> dict[str, Any]:
        text, *others = rng.sample(NOTE_TEXTS, 3)
        # The app already holds a few notes, so "saved exactly one new note" means something.
        return {"text": text, "existing": others[:rng.randint(0, 2)]}

    def initialize(self, env: Env) -> None:
        super().initialize(env)
        set_app_state(env, NOTES, {"notes": list(self.params["existing"]), "draft": ""})

    def check(self, env: Env, answer: str | None) -> Score:
        notes = app_state(env, NOTES).get("notes", [])
        want = [*self.params["existing"], self.params["text"]]
        if notes == want:
            return Score(success=True, reason=f"saved the note {self.params['text']!r}")
        return Score(success=False, reason=f"expected the notes {want}, found {notes}")

    def solution(self, env: Env) -> Iterator[SolutionStep]:
        text = self.params["text"]
        yield SolutionStep(tap(find(env, "launcher:notes")), "Open the Notes app.")
        yield SolutionStep(tap(find(env, "notes:body")), "Select the note's text field.")
        yield SolutionStep(Type(text=text), "Write the note.")
        yield SolutionStep(tap(find(env, "notes:save")), "Save the note.")
        wait_for(env, lambda nodes: [n for n in nodes if n.resource_id.startswith("notes:note-")
                                     and n.text == text], "the saved note")
        yield SolutionStep(Terminate(status="success"), "The note is saved.")
