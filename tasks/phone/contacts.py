"""Contacts app tasks (envs/virtual_phone/apps/contacts): the contact list is seeded, long
enough in some tasks that the contact sits below the fold."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any, Iterator

from core.actions import Answer, Enter, OpenApp, Terminate, Type
from core.results import Score
from envs.base import Env
from tasks.base import SolutionStep
from tasks.phone.device import (
    CONTACTS,
    FRAGMENT_DIGITS,
    PHONE_DIGITS,
    PhoneTask,
    app_state,
    digits,
    find,
    long_press,
    numbers_in,
    scroll_to,
    set_app_state,
    slug,
    tap,
    wait_for,
    wait_gone,
)
from tasks.phone.people import PEOPLE, draw_contacts, phone_numbers

#: A list this long runs past the screen; a contact drawn from BELOW_FOLD on needs a scroll.
LONG_LIST, BELOW_FOLD = 18, 12


class ContactsTask(PhoneTask):
    """A task whose start state is the seeded ``contacts`` param."""

    uses = frozenset({CONTACTS})
    keywords = ("contacts", "contact", "address", "book", "person")

    def initialize(self, env: Env) -> None:
        super().initialize(env)
        set_app_state(env, CONTACTS, {"contacts": self.params["contacts"]})

    def seeded(self) -> list[tuple[str, str]]:
        """(name, phone) of each contact the task started with."""
        return [(c["name"], c["phone"]) for c in self.params["contacts"]]

    def expect(self, env: Env, want: list[tuple[str, str]], done: str) -> Score:
        differ = contacts_differ(env, want)
        return Score(success=differ is None, reason=differ or done)


def contacts_differ(env: Env, want: list[tuple[str, str]]) -> str | None:
    """How the app's contacts differ from ``want`` ((name, phone) pairs, numbers compared by
    their digits), or None. A list, not a mapping: a second contact of the same name (added
    where one should have been edited) is a difference."""
    have = Counter((c.get("name", ""), digits(c.get("phone"))) for c in app_state(env, CONTACTS)
                   .get("contacts", []))
    wanted = Counter((name, digits(phone)) for name, phone in want)
    if have == wanted:
        return None
    return (f"the contacts differ from what was asked: missing {sorted((wanted - have).elements())}"
            f", not asked for {sorted((have - wanted).elements())}")


def open_contact(env: Env, name: str) -> Iterator[SolutionStep]:
    """In Contacts: scroll to the contact's row and open it."""
    row = yield from scroll_to(env, f"contacts:contact-{slug(name)}", name)
    yield SolutionStep(tap(row), f"Open {name}.")
    wait_for(env, lambda nodes: [n for n in nodes if n.resource_id == "contacts:name"
                                 and n.text == name], f"{name}'s page")


def add_contact(env: Env, name: str, phone: str) -> Iterator[SolutionStep]:
    """In Contacts: add ``name`` with ``phone`` (Enter in the phone field saves)."""
    yield SolutionStep(tap(find(env, "contacts:add")), "Add a new contact.")
    yield SolutionStep(tap(find(env, "contacts:new-name")), "Select the name field.")
    yield SolutionStep(Type(text=name), "Enter the name.")
    yield SolutionStep(tap(find(env, "contacts:new-phone")), "Select the phone field.")
    yield SolutionStep(Type(text=phone), "Enter the number.")
    yield SolutionStep(Enter(), "Press enter to save the contact.")
    find(env, f"contacts:contact-{slug(name)}")


def read_number(env: Env) -> str:
    """The number on the open contact's page."""
    return find(env, "contacts:phone").text.removeprefix("Phone:").strip()


def _far_contact(rng: random.Random) -> dict[str, Any]:
    contacts = draw_contacts(rng, LONG_LIST)
    return {"contacts": contacts,
            "contact": rng.choice(contacts[BELOW_FOLD:])["name"]}


class AddContact(ContactsTask):
    name = "phone/add-contact"
    goal_template = "Add a contact named {name} with the phone number {phone}."
    tags = frozenset({"contacts", "typing", "easy"})
    max_steps = 12

    @classmethod
    def sample_params(cls, rng: random.Random) -> dict[str, Any]:
        name = rng.choice(PEOPLE)
        return {"contacts": draw_contacts(rng, rng.randint(2, 6), exclude=(name,)), "name": name,
                "phone": phone_numbers(rng, 1)[0]}

    def verdict(self, env: Env, answer: str | None) -> Score:
        p = self.params
        return self.expect(env, [*self.seeded(), (p["name"], p["phone"])], f"added {p['name']}")

    def solution(self, env: Env) -> Iterator[SolutionStep]:
        p = self.params
        yield SolutionStep(tap(find(env, "launcher:contacts")), "Open Contacts.")
        yield from add_contact(env, p["name"], p["phone"])
        yield SolutionStep(Terminate(status="success"), f"{p['name']} is in Contacts.")


class ContactPhoneQuestion(ContactsTask):
    name = "phone/contact-number-question"
    goal_template = "What is {contact}'s phone number? Look it up in Contacts."
    tags = frozenset({"contacts", "answer", "scroll", "easy"})
    max_steps = 10

    @classmethod
    def sample_params(cls, rng: random.Random) -> dict[str, Any]:
        return _far_contact(rng)

    def verdict(self, env: Env, answer: str | None) -> Score:
        """The number the contact had when asked; a question is no licence to edit Contacts."""
        number = dict(self.seeded())[self.params["contact"]]
        changed = contacts_differ(env, self.seeded())
        if changed is not None:
            return Score(success=False, reason=f"asked a question, the agent changed Contacts: "
                                               f"{changed}")
        # The number, written in a sentence or not ("Her number is +1 555 7904, since 2 May"),
        # its country code left out or not; beside another phone number, or four digits or
        # more of one ("or maybe 4204"), it is a guess.
        wanted = digits(number)
        theirs = [digits(phone) for _, phone in self.seeded() if digits(phone) != wanted]
        said = numbers_in(answer)
        phones = [n for n in said if len(n) >= PHONE_DIGITS]
        guesses = [n for n in said if FRAGMENT_DIGITS <= len(n) < PHONE_DIGITS
                   and n not in wanted and any(n in other for other in theirs)]
        ok = bool(phones) and not guesses \
            and all(n == wanted or wanted.endswith(n) for n in phones)
        return Score(success=ok, reason=f"answered {answer!r}; the number is {number}")

    def solution(self, env: Env) -> Iterator[SolutionStep]:
        name = self.params["contact"]
        yield SolutionStep(tap(find(env, "launcher:contacts")), "Open Contacts.")
        yield from open_contact(env, name)
        number = read_number(env)
        yield SolutionStep(Answer(text=number), f"{name}'s number is {number}.")


class EditContactPhone(ContactsTask):
    name = "phone/edit-contact-number"
    goal_template = "{contact} has a new phone number, {phone}. Update it in Contacts."
    tags = frozenset({"contacts", "edit", "typing", "scroll", "medium"})
    max_steps = 16

    @classmethod
    def sample_params(cls, rng: random.Random) -> dict[str, Any]:
        params = _far_contact(rng)
        taken = {c["phone"] for c in params["contacts"]}
        phone = phone_numbers(rng, 1)[0]
        while phone in taken:
            phone = phone_numbers(rng, 1)[0]
        return {**params, "phone": phone}

    def verdict(self, env: Env, answer: str | None) -> Score:
        p = self.params
        want = [(name, p["phone"] if name == p["contact"] else phone)
                for name, phone in self.seeded()]
        return self.expect(env, want, f"{p['contact']}'s number is now {p['phone']}")

    def solution(self, env: Env) -> Iterator[SolutionStep]:
        p = self.params
        yield SolutionStep(OpenApp(app="Contacts"), "Open Contacts.")
        yield from open_contact(env, p["contact"])
        yield SolutionStep(tap(find(env, "contacts:edit")), "Edit the contact.")
        yield SolutionStep(tap(find(env, "contacts:clear-phone")), "Clear the old number.")
        yield SolutionStep(Type(text=p["phone"]), "Enter the new number.")
        yield SolutionStep(tap(find(env, "contacts:save")), "Save.")
        wait_for(env, lambda nodes: [n for n in nodes if n.resource_id == "contacts:phone"
                                     and p["phone"] in n.text], "the updated number")
        yield SolutionStep(Terminate(status="success"), "The number is updated.")


class DeleteContact(ContactsTask):
    name = "phone/delete-contact"
    goal_template = "Delete {contact} from Contacts."
    tags = frozenset({"contacts", "delete", "long-press", "medium"})
    max_steps = 10

    @classmethod
    def sample_params(cls, rng: random.Random) -> dict[str, Any]:
        contacts = draw_contacts(rng, rng.randint(4, 8))
        return {"contacts": contacts, "contact": rng.choice(contacts)["name"]}

    def verdict(self, env: Env, answer: str | None) -> Score:
        name = self.params["contact"]
        return self.expect(env, [c for c in self.seeded() if c[0] != name], f"deleted {name}")

    def solution(self, env: Env) -> Iterator[SolutionStep]:
        name = self.params["contact"]
        yield SolutionStep(tap(find(env, "launcher:contacts")), "Open Contacts.")
        row = yield from scroll_to(env, f"contacts:contact-{slug(name)}", name)
        yield SolutionStep(long_press(row), f"Press and hold {name} for the menu.")
        yield SolutionStep(tap(find(env, "contacts:menu-delete")), "Delete the contact.")
        wait_gone(env, row.resource_id, "contacts:add", f"the list without {name}")
        yield SolutionStep(Terminate(status="success"), f"{name} is deleted.")
