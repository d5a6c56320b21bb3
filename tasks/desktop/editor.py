"""Text editor tasks: mousepad, opened on a file of the episode's folder; success is read from the
saved file."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any, Iterator

from core.actions import Hotkey, Key, Terminate, Type
from core.results import Score
from envs.base import Env
from tasks.base import SolutionStep
from tasks.desktop.programs import DesktopTask, find_window, wait_until

ITEMS = ("milk", "eggs", "bread", "butter", "coffee", "apples", "rice", "tomatoes", "cheese",
         "onions", "pasta", "yogurt", "lemons", "honey")
SENTENCES = ("Meeting moved to 3pm <room 4>", "Remember: 'quotes' & \"double quotes\"",
             "Total = 42 | checked", "Ask Bob about the {draft} ~ today",
             "Café au lait costs 3,50 €", "Back up /home/*.txt before Friday")


class EditorTask(DesktopTask):
    """mousepad showing the episode's file ``params["file"]``."""

    tags = frozenset({"mousepad", "typing"})
    max_steps = 8
    keywords = ("editor", "text", "mousepad", "document", "file")

    def start(self, env: Env) -> None:
        self.launch(env, ["mousepad", str(self.path(self.params["file"]))], "mousepad")

    def asked(self) -> frozenset[str]:
        return frozenset({self.params["file"]})

    def lines(self) -> list[str] | None:
        text = self.read(self.params["file"])
        return None if text is None else text.splitlines()

    def saved(self, want: list[str]) -> Score:
        found = self.lines()
        if found == want:
            return Score(success=True, reason=f"{self.params['file']} is saved as asked")
        return Score(success=False, reason=f"{self.params['file']} holds {found}, expected {want}")

    def focus_text(self, env: Env) -> SolutionStep:
        # The text area fills the window below the menu bar; X gives the keyboard to the window
        # under the pointer.
        return SolutionStep(find_window(env, "mousepad").click_centre(), "Click into the text.")

    def save(self, want: list[str]) -> Iterator[SolutionStep]:
        yield SolutionStep(Hotkey(keys=["ctrl", "s"]), "Save the file.")
        wait_until(lambda: self.lines() == want, f"saving {self.params['file']}")
        yield SolutionStep(Terminate(status="success"), "The file is saved.")


class EditorWriteSave(EditorTask):
    name = "desktop/editor-write-save"
    # The line ends the goal, as nothing in it can be mistaken for part of the line.
    goal_template = "In the text editor, write this line and save the file: {text}"
    tags = EditorTask.tags | {"easy"}

    @classmethod
    def sample_params(cls, rng: random.Random) -> dict[str, Any]:
        return {"file": f"letter-{rng.randint(10, 99)}.txt", "text": rng.choice(SENTENCES)}

    def verdict(self, env: Env, answer: str | None) -> Score:
        return self.saved([self.params["text"]])

    def solution(self, env: Env) -> Iterator[SolutionStep]:
        yield self.focus_text(env)
        yield SolutionStep(Type(text=self.params["text"]), "Write the line.")
        yield from self.save([self.params["text"]])


class ShoppingListTask(EditorTask):
    """The file is a shopping list, one item per line."""

    tags = EditorTask.tags | {"edit"}

    @classmethod
    def sample_params(cls, rng: random.Random) -> dict[str, Any]:
        items = rng.sample(ITEMS, rng.randint(5, 8))
        return {"file": f"shopping-{rng.randint(10, 99)}.txt", "items": items}

    def prepare(self, folder: Path) -> None:
        (folder / self.params["file"]).write_text("\n".join(self.params["items"]) + "\n",
                                                  encoding="utf-8")


class EditorAppendLine(ShoppingListTask):
    name = "desktop/editor-append-line"
    goal_template = "The editor shows the shopping list {file}. Add {new} as its last line and " \
                    "save the file."
    tags = ShoppingListTask.tags | {"medium"}

    @classmethod
    def sample_params(cls, rng: random.Random) -> dict[str, Any]:
        params = super().sample_params(rng)
        *items, new = params["items"]  # an item not on the list yet
        return {**params, "items": items, "new": new}

    def wanted(self) -> list[str]:
        return [*self.params["items"], self.params["new"]]

    def lines(self) -> list[str] | None:
        """The list's items. The file ends with a newline, so Enter before the new item (where
        the last item seems to end) leaves a blank line above it: a blank line is no item."""
        found = super().lines()
        return None if found is None else [line for line in found if line.strip()]

    def verdict(self, env: Env, answer: str | None) -> Score:
        return self.saved(self.wanted())

    def solution(self, env: Env) -> Iterator[SolutionStep]:
        yield self.focus_text(env)
        # The file ends with a newline, so the end of the text is the start of an empty line.
        yield SolutionStep(Hotkey(keys=["ctrl", "end"]), "Go to the end of the list.")
        yield SolutionStep(Type(text=self.params["new"]), "Write the new item.")
        yield from self.save(self.wanted())


class EditorDeleteLine(ShoppingListTask):
    name = "desktop/editor-delete-line"
    goal_template = "The editor shows the shopping list {file}. Delete the line {remove} (the " \
                    "whole line) and save the file."
    tags = ShoppingListTask.tags | {"delete", "hard"}
    max_steps = 14

    @classmethod
    def sample_params(cls, rng: random.Random) -> dict[str, Any]:
        params = super().sample_params(rng)
        return {**params, "remove": rng.choice(params["items"])}

    def wanted(self) -> list[str]:
        return [item for item in self.params["items"] if item != self.params["remove"]]

    def verdict(self, env: Env, answer: str | None) -> Score:
        return self.saved(self.wanted())

    def solution(self, env: Env) -> Iterator[SolutionStep]:
        yield self.focus_text(env)
        yield SolutionStep(Hotkey(keys=["ctrl", "home"]), "Go to the first line.")
        for _ in range(self.params["items"].index(self.params["remove"])):
            yield SolutionStep(Key(key="down"), "Move down a line.")
        yield SolutionStep(Hotkey(keys=["shift", "down"]), f"Select the line {self.params['remove']}.")
        yield SolutionStep(Key(key="delete"), "Delete it.")
        yield from self.save(self.wanted())
