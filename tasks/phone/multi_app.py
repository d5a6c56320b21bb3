"""Tasks across apps: look something up in one app and use it in another."""

from __future__ import annotations

import random
import re
from typing import Any, Iterator

from core.actions import Back, Home, OpenApp, Terminate
from core.results import Score
from envs.base import Env
from envs.ui_tree import UiNode
from tasks.base import SolutionStep
from tasks.phone.contacts import (
    ContactsTask,
    add_contact,
    contacts_differ,
    open_contact,
    read_number,
)
from tasks.phone.device import (
    CONTACTS,
    FLIGHTS,
    FRAGMENT_DIGITS,
    MESSAGES,
    NOTES,
    PHONE_DIGITS,
    PhoneTask,
    app_state,
    digits,
    find,
    numbers_in,
    set_app_state,
    tap,
    wait_for,
)
from tasks.phone.flights import FlightsTask, book, draw_trip
from tasks.phone.messages import MessagesTask, last_message, open_thread, send
from tasks.phone.notes import NOTE_TEXTS, write_note
from tasks.phone.people import PEOPLE, draw_contacts, draw_threads, phone_numbers

STREETS = ("Elm Street", "Harbour Road", "Maple Avenue", "Station Lane", "Mill Close",
           "Church Walk", "Park Terrace")
ROLES = ("plumber", "dentist", "babysitter", "electrician", "piano teacher")


def with_message(threads: list[dict[str, Any]], contact: str, text: str) -> list[dict[str, Any]]:
    """``threads`` with ``text`` from ``contact`` as the last message of their conversation."""
    return [{**t, "messages": [*t["messages"], {"from": contact, "text": text}]}
            if t["contact"] == contact else t for t in threads]


def read_their_message(env: Env, contact: str) -> Iterator[SolutionStep]:
    """From home: open Messages and the conversation with ``contact``; gives its last message."""
    yield SolutionStep(tap(find(env, "launcher:messages")), "Open Messages.")
    yield from open_thread(env, contact)
    return last_message(env)


def source_changed(env: Env, package: str, key: str, seeded: list[Any], what: str
                   ) -> Score | None:
    """A failed score when the app the task only reads from (``package``'s ``key``, ``what``
    to a reader) no longer holds what was seeded: a conversation or note deleted on the way,
    or a message nobody asked for. None when it is as seeded."""
    if app_state(env, package).get(key, []) == seeded:
        return None
    return Score(success=False, reason=f"{what} changed, though the task only reads them")


def new_notes(env: Env, before: list[str]) -> list[str] | None:
    """The notes saved after ``before`` (None when ``before`` changed)."""
    notes = app_state(env, NOTES).get("notes", [])
    return notes[len(before):] if notes[:len(before)] == before else None


class TextContactNumber(PhoneTask):
    name = "phone/text-contact-number"
    uses = frozenset({CONTACTS, MESSAGES})
    goal_template = ("Look up {subject}'s phone number in Contacts and send it to {recipient} "
                     "in Messages.")
    tags = frozenset({"contacts", "messages", "multi-app", "typing", "scroll", "hard"})
    max_steps = 18
    keywords = ("share", "send", "number", "contact", "text")

    @classmethod
    def sample_params(cls, rng: random.Random) -> dict[str, Any]:
        contacts = draw_contacts(rng, 16)
        subject = rng.choice(contacts[10:])["name"]  # far down the list: Contacts needs a scroll
        recipient, *others = rng.sample([n for n in PEOPLE if n != subject], 3)
        return {"contacts": contacts, "subject": subject, "recipient": recipient,
                "threads": draw_threads(rng, [recipient, *others])}

    def initialize(self, env: Env) -> None:
        super().initialize(env)
        set_app_state(env, CONTACTS, {"contacts": self.params["contacts"]})
        set_app_state(env, MESSAGES, {"threads": self.params["threads"]})

    def verdict(self, env: Env, answer: str | None) -> Score:
        p = self.params
        seeded = [(c["name"], c["phone"]) for c in p["contacts"]]
        changed = contacts_differ(env, seeded)
        if changed is not None:  # nobody asked for an edit (the number sent must be the one seeded)
            return Score(success=False, reason=changed)
        number = dict(seeded)[p["subject"]]
        before = {t["contact"]: len(t["messages"]) for t in p["threads"]}
        threads = {t.get("contact"): t.get("messages", []) for t in MessagesTask.threads(env)}
        # Every seeded conversation must still start with its seeded messages: only sending was
        # asked for, so a conversation deleted (or replaced) on the way fails the task.
        lost = sorted(t["contact"] for t in p["threads"]
                      if threads.get(t["contact"], [])[:len(t["messages"])] != t["messages"])
        if lost:
            return Score(success=False, reason=f"the conversations with {lost} were deleted")
        new = {contact: messages[before.get(contact, 0):] for contact, messages in threads.items()}
        strays = sorted(k for k, v in new.items() if v and k != p["recipient"])
        if strays:
            return Score(success=False, reason=f"messages went to {strays}")
        # Even with nothing sent in it, a conversation with someone else is a change nobody
        # asked for (as every Messages task counts it).
        started = sorted(k for k in threads if k not in before and k != p["recipient"])
        if started:
            return Score(success=False, reason=f"conversations were started with {started}")
        sent = new.get(p["recipient"], [])
        mine = [numbers_in(m.get("text")) for m in sent if m.get("from") == "me"]
        written = [n for numbers in mine for n in numbers]
        # The number among others (every contact's, or a guess beside it, whole or in part)
        # is no answer.
        wanted = digits(number)
        theirs = [digits(phone) for _, phone in seeded]
        others = sorted({n for n in written if n != wanted and (
            len(n) >= PHONE_DIGITS or len(n) >= FRAGMENT_DIGITS and n not in wanted
            and any(n in other for other in theirs))})
        if others:
            return Score(success=False, reason=f"the messages also hold the numbers {others}")
        times = sum(wanted in numbers for numbers in mine)
        if times > 1:  # once was asked
            return Score(success=False, reward=0.5,
                         reason=f"sent {number} to {p['recipient']} in {times} messages")
        if times == 1:
            return Score(success=True, reason=f"sent {number} to {p['recipient']}")
        # A message to the right person without the number is half the task.
        return Score(success=False, reward=0.5 if sent else 0.0,
                     reason=f"no message to {p['recipient']} holds {number}: {sent}")

    def solution(self, env: Env) -> Iterator[SolutionStep]:
        p = self.params
        yield SolutionStep(tap(find(env, "launcher:contacts")), "Open Contacts.")
        yield from open_contact(env, p["subject"])
        number = read_number(env)
        yield SolutionStep(Home(), f"{p['subject']}'s number is {number}; go home.")
        yield SolutionStep(OpenApp(app="Messages"), "Open Messages.")
        yield from open_thread(env, p["recipient"])
        yield from send(env, number)
        yield SolutionStep(Terminate(status="success"), "The number is sent.")


class SaveAddressAsNote(PhoneTask):
    name = "phone/save-address-note"
    uses = frozenset({MESSAGES, NOTES})
    goal_template = ("{contact} sent me their new address in Messages. Save just the address "
                     "as a new note in Notes.")
    tags = frozenset({"messages", "notes", "multi-app", "typing", "hard"})
    max_steps = 16
    keywords = ("address", "save", "note", "message")

    @classmethod
    def sample_params(cls, rng: random.Random) -> dict[str, Any]:
        contact, *others = rng.sample(PEOPLE, rng.randint(3, 5))
        address = f"{rng.randint(2, 199)} {rng.choice(STREETS)}"
        threads = draw_threads(rng, [contact, *others])
        return {"contact": contact, "address": address, "notes": rng.sample(NOTE_TEXTS, 2),
                "threads": with_message(threads, contact,
                                        f"I moved! My new address is {address}.")}

    def initialize(self, env: Env) -> None:
        super().initialize(env)
        set_app_state(env, MESSAGES, {"threads": self.params["threads"]})
        set_app_state(env, NOTES, {"notes": self.params["notes"], "draft": ""})

    def verdict(self, env: Env, answer: str | None) -> Score:
        changed = source_changed(env, MESSAGES, "threads", self.params["threads"],
                                 "the conversations in Messages")
        if changed is not None:
            return changed
        address = self.params["address"]
        added = new_notes(env, self.params["notes"])
        if added is None:
            return Score(success=False, reason="the notes already there were changed")
        if len(added) == 1 and added[0].strip().rstrip(".").casefold() == address.casefold():
            return Score(success=True, reason=f"saved the note {address!r}")
        # The address inside a longer note, or among several new ones, is half right; inside
        # another address ("112 Elm Street" holds "12 Elm Street") it is not there at all.
        inside = re.compile(rf"(?<!\w){re.escape(address)}(?!\w)", re.IGNORECASE)
        partial = any(inside.search(n) for n in added)
        return Score(success=False, reward=0.5 if partial else 0.0,
                     reason=f"expected one new note {address!r}, found {added}")

    def solution(self, env: Env) -> Iterator[SolutionStep]:
        contact = self.params["contact"]
        message = yield from read_their_message(env, contact)
        address = re.search(r"address is (.+?)\.?$", message).group(1)
        yield SolutionStep(Back(), f"The address is {address}. Back to the conversations.")
        find(env, "messages:new")
        yield SolutionStep(Back(), "Back to the home screen.")
        yield SolutionStep(tap(find(env, "launcher:notes")), "Open Notes.")
        yield from write_note(env, address)
        yield SolutionStep(Terminate(status="success"), "The address is saved as a note.")


class BookFlightFromMessage(FlightsTask):
    name = "phone/book-flight-from-message"
    uses = frozenset({FLIGHTS, MESSAGES})
    goal_template = ("{contact} asked me in Messages to book them a flight. Book the cheapest "
                     "flight they asked for, in their name.")
    tags = frozenset({"messages", "flights", "multi-app", "typing", "hard"})
    max_steps = 24
    keywords = ("book", "flight", "message", "asked")

    @classmethod
    def sample_params(cls, rng: random.Random) -> dict[str, Any]:
        trip = draw_trip(rng)
        contact, *others = rng.sample(PEOPLE, rng.randint(2, 4))
        ask = (f"Could you book me a flight from {trip['origin']} to {trip['destination']} "
               f"on {trip['date']}? The cheapest one is fine.")
        return {**trip, "contact": contact,
                "threads": with_message(draw_threads(rng, [contact, *others]), contact, ask)}

    def initialize(self, env: Env) -> None:
        super().initialize(env)
        set_app_state(env, MESSAGES, {"threads": self.params["threads"]})

    def verdict(self, env: Env, answer: str | None) -> Score:
        changed = source_changed(env, MESSAGES, "threads", self.params["threads"],
                                 "the conversations in Messages")
        return changed or self.check_booking(env, self.params["contact"])

    def solution(self, env: Env) -> Iterator[SolutionStep]:
        contact = self.params["contact"]
        message = yield from read_their_message(env, contact)
        found = re.search(r"from (\w{3}) to (\w{3}) on (\d{4}-\d{2}-\d{2})", message)
        trip = dict(zip(("origin", "destination", "date"), found.groups()))
        yield SolutionStep(Home(), f"{contact} wants {trip}; go home.")
        yield SolutionStep(OpenApp(app="Flights"), "Open Flights.")
        yield from book(env, trip, contact)
        yield SolutionStep(Terminate(status="success"), f"The flight is booked for {contact}.")


class AddContactFromNote(ContactsTask):
    name = "phone/add-contact-from-note"
    uses = frozenset({CONTACTS, NOTES})
    goal_template = ("One of my notes has the name and number of my new {role}. Add them to "
                     "Contacts with that name and number.")
    tags = frozenset({"notes", "contacts", "multi-app", "typing", "hard"})
    max_steps = 16
    keywords = ("contact", "note", "add", "number")

    @classmethod
    def sample_params(cls, rng: random.Random) -> dict[str, Any]:
        person = rng.choice(PEOPLE)
        contacts = draw_contacts(rng, rng.randint(3, 6), exclude=(person,))
        phone = phone_numbers(rng, 1)[0]
        role = rng.choice(ROLES)
        notes = rng.sample(NOTE_TEXTS, 3)
        notes.insert(rng.randint(0, 3), f"New {role}: {person}, {phone}")
        return {"role": role, "person": person, "phone": phone, "notes": notes,
                "contacts": contacts}

    def initialize(self, env: Env) -> None:
        super().initialize(env)  # the contacts
        set_app_state(env, NOTES, {"notes": self.params["notes"], "draft": ""})

    def verdict(self, env: Env, answer: str | None) -> Score:
        p = self.params
        changed = source_changed(env, NOTES, "notes", p["notes"], "the notes in Notes")
        return changed or self.expect(env, [*self.seeded(), (p["person"], p["phone"])],
                                      f"added {p['person']}, {p['phone']}")

    def solution(self, env: Env) -> Iterator[SolutionStep]:
        role = self.params["role"]
        yield SolutionStep(tap(find(env, "launcher:notes")), "Open Notes.")
        note: UiNode = wait_for(env, lambda nodes: [n for n in nodes if n.text.startswith(
            f"New {role}:")], f"the note about the {role}")[0]
        person, phone = (part.strip() for part in note.text.split(":", 1)[1].split(","))
        yield SolutionStep(Home(), f"The {role} is {person}, {phone}; go home.")
        yield SolutionStep(tap(find(env, "launcher:contacts")), "Open Contacts.")
        yield from add_contact(env, person, phone)
        yield SolutionStep(Terminate(status="success"), f"{person} is in Contacts.")
