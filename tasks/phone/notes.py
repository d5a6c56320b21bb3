"""Notes app tasks (envs/virtual_phone/apps/notes)."""

from __future__ import annotations

import random
from typing import Any, Iterator

from core.actions import Terminate, Type
from core.results import Score
from envs.base import Env
from tasks.base import SolutionStep
from tasks.phone.device import (
    NOTES,
    PhoneTask,
    app_state,
    find,
    scroll_to,
    set_app_state,
    tap,
    wait_for,
)

NOTE_TEXTS = ("Buy milk and eggs", "Call the dentist at 9", "Water the plants",
              "Pick up the dry cleaning", "Book a table for Friday", "Renew the passport",
              "Send the report to Sam", "Pay the electricity bill", "Return the library books",
              "Fix the bike tyre", "Plan the weekend trip", "Back up the laptop",
              "Order printer ink", "Clean the fridge")
ENDINGS = (" by Friday", " tomorrow", " this weekend", " (urgent)", " before noon")
#: With this many notes the list runs past the screen; a note from BELOW_FOLD on needs a scroll.
LONG_LIST, BELOW_FOLD = 10, 6


def write_note(env: Env, text: str) -> Iterator[SolutionStep]:
    """In Notes: write ``text`` as a new note and save it."""
    yield SolutionStep(tap(find(env, "notes:body")), "Select the new note's text field.")
    yield SolutionStep(Type(text=text), "Write the note.")
    yield SolutionStep(tap(find(env, "notes:save")), "Save the note.")
    wait_for(env, lambda nodes: [n for n in nodes if n.resource_id.startswith("notes:note-")
                                 and n.text == text], "the saved note")


def expect_notes(env: Env, want: list[str], done: str) -> Score:
    """Success (``done``) when the app holds exactly the notes ``want``, each compared without
    the whitespace around it: the note keeps the newline of a typed "\\n" (UI-TARS's way to
    submit a field), and a note that ends in a blank line still says the same."""
    notes = app_state(env, NOTES).get("notes", [])
    if [note.strip() for note in notes] == want:
        return Score(success=True, reason=done)
    return Score(success=False, reason=f"expected the notes {want}, found {notes}")


class NotesTask(PhoneTask):
    """A task that starts with the seeded ``notes`` param saved in the app."""

    uses = frozenset({NOTES})
    keywords = ("notes", "note", "memo")

    def initialize(self, env: Env) -> None:
        super().initialize(env)
        set_app_state(env, NOTES, {"notes": list(self.params["notes"]), "draft": ""})

    def open_note(self, env: Env, index: int, swipe: bool = False) -> Iterator[SolutionStep]:
        text = self.params["notes"][index]
        row = yield from scroll_to(env, f"notes:note-{index}", f"the note {text!r}", swipe=swipe)
        yield SolutionStep(tap(row), f"Open the note {text!r}.")
        find(env, "notes:update")


class EditNote(NotesTask):
    name = "phone/edit-note"
    goal_template = "In Notes, change the note '{note}' so that it reads '{new_text}'."
    tags = frozenset({"notes", "edit", "typing", "medium"})
    max_steps = 10

    @classmethod
    def sample_params(cls, rng: random.Random) -> dict[str, Any]:
        notes = rng.sample(NOTE_TEXTS, rng.randint(2, 5))
        index = rng.randrange(len(notes))
        return {"notes": notes, "index": index, "note": notes[index],
                "new_text": notes[index] + rng.choice(ENDINGS)}

    def verdict(self, env: Env, answer: str | None) -> Score:
        p = self.params
        want = [p["new_text"] if i == p["index"] else n for i, n in enumerate(p["notes"])]
        return expect_notes(env, want, f"the note reads {p['new_text']!r}")

    def solution(self, env: Env) -> Iterator[SolutionStep]:
        p = self.params
        yield SolutionStep(tap(find(env, "launcher:notes")), "Open Notes.")
        yield from self.open_note(env, p["index"])
        ending = p["new_text"].removeprefix(p["note"])
        yield SolutionStep(Type(text=ending), f"The caret is at the end: add {ending!r}.")
        yield SolutionStep(tap(find(env, "notes:update")), "Save the changes.")
        wait_for(env, lambda nodes: [n for n in nodes if n.resource_id.startswith("notes:note-")
                                     and n.text == p["new_text"]], "the changed note")
        yield SolutionStep(Terminate(status="success"), "The note is changed.")


class DeleteNote(NotesTask):
    name = "phone/delete-note"
    goal_template = "Delete the note '{note}' in Notes."
    tags = frozenset({"notes", "delete", "scroll", "medium"})
    max_steps = 10

    @classmethod
    def sample_params(cls, rng: random.Random) -> dict[str, Any]:
        notes = rng.sample(NOTE_TEXTS, LONG_LIST)
        index = rng.randrange(BELOW_FOLD, LONG_LIST)
        return {"notes": notes, "index": index, "note": notes[index]}

    def verdict(self, env: Env, answer: str | None) -> Score:
        want = [n for i, n in enumerate(self.params["notes"]) if i != self.params["index"]]
        return expect_notes(env, want, f"deleted the note {self.params['note']!r}")

    def solution(self, env: Env) -> Iterator[SolutionStep]:
        note = self.params["note"]
        yield SolutionStep(tap(find(env, "launcher:notes")), "Open Notes.")
        yield from self.open_note(env, self.params["index"], swipe=True)
        yield SolutionStep(tap(find(env, "notes:delete")), "Delete the note.")
        wait_for(env, lambda nodes: [] if any(n.text == note for n in nodes)
                 else [n for n in nodes if n.resource_id == "notes:save"], "the list without it")
        yield SolutionStep(Terminate(status="success"), f"{note!r} is deleted.")


class WriteNote(PhoneTask):
    name = "phone/write-note"
    uses = frozenset({NOTES})
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

    def verdict(self, env: Env, answer: str | None) -> Score:
        return expect_notes(env, [*self.params["existing"], self.params["text"]],
                            f"saved the note {self.params['text']!r}")

    def solution(self, env: Env) -> Iterator[SolutionStep]:
        yield SolutionStep(tap(find(env, "launcher:notes")), "Open the Notes app.")
        yield from write_note(env, self.params["text"])
        yield SolutionStep(Terminate(status="success"), "The note is saved.")
