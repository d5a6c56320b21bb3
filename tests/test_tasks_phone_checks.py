"""Phone task checks on end states written straight into the apps' state (no device): the state
a right answer leaves passes, and states that only look right do not."""

from __future__ import annotations

import copy
import json
import shlex

import pytest

from envs.virtual_phone.catalog import APPS_DIR
from tasks.phone.device import CONTACTS, FLIGHTS, MESSAGES, NOTES, SETTINGS
from tasks.registry import get_task

INITIAL = {app["package"]: app["initial_state"] for app in
           (json.loads(path.read_text()) for path in APPS_DIR.glob("*/app.json"))
           if "initial_state" in app}


class StatePhone:
    """Answers the ``vphone`` commands tasks send (``reset``, ``state``, ``state set``) from a
    dict of app states, which a test edits as the agent would through the apps."""

    name = "android"

    def __init__(self) -> None:
        self.states = copy.deepcopy(INITIAL)

    def shell(self, command: str) -> str:
        words = shlex.split(command.removesuffix("; echo rc=$?"))
        if words == ["vphone", "reset"]:
            self.states = copy.deepcopy(INITIAL)
            return "rc=0"
        if words[:3] == ["vphone", "state", "set"]:
            self.states[words[3]] = json.loads(words[4])
            return "rc=0"
        assert words[:2] == ["vphone", "state"] and len(words) == 3, command
        return json.dumps(self.states[words[2]])


def started(name: str, seed: int):
    task, phone = get_task(name, seed=seed), StatePhone()
    task.initialize(phone)
    return task, phone


def thread(phone: StatePhone, contact: str) -> list[dict]:
    return next(t for t in phone.states[MESSAGES]["threads"] if t["contact"] == contact)["messages"]


@pytest.mark.parametrize("seed", range(5))
def test_a_note_typed_with_a_final_newline_says_what_was_asked(seed):
    """UI-TARS submits a field with a final "\\n"; in Notes' text area it stays in the note."""
    task, phone = started("phone/write-note", seed)
    phone.states[NOTES]["notes"].append(task.params["text"] + "\n")
    assert task.check(phone, None).success

    task, phone = started("phone/edit-note", seed)
    p = task.params
    phone.states[NOTES]["notes"][p["index"]] = p["new_text"] + "\n"
    assert task.check(phone, None).success
    phone.states[NOTES]["notes"][p["index"]] = p["note"] + "\n"  # unchanged but for the newline
    assert not task.check(phone, None).success


@pytest.mark.parametrize("seed", range(5))
def test_the_number_sent_beside_a_guess_is_no_answer(seed):
    task, phone = started("phone/text-contact-number", seed)
    p = task.params
    number = {c["name"]: c["phone"] for c in p["contacts"]}[p["subject"]]
    taken = {c["phone"] for c in p["contacts"]}
    guess = next(f"+1 555 {n:04d}" for n in range(10) if f"+1 555 {n:04d}" not in taken)
    messages = thread(phone, p["recipient"])
    messages.append({"from": "me", "text": f"It's {number} at 5pm"})  # a time is no number
    assert task.check(phone, None).success
    messages.append({"from": "me", "text": f"or maybe {guess}"})
    score = task.check(phone, None)
    assert not score.success and score.reward == 0, score


@pytest.mark.parametrize("seed", range(5))
def test_another_address_that_holds_the_asked_one_earns_nothing(seed):
    task, phone = started("phone/save-address-note", seed)
    address = task.params["address"]
    notes = phone.states[NOTES]["notes"]
    notes.append(f"1{address}")  # "112 Elm Street" for "12 Elm Street"
    assert task.check(phone, None).reward == 0
    notes[-1] = f"New address: {address}."
    score = task.check(phone, None)
    assert not score.success and score.reward == 0.5, score


@pytest.mark.parametrize("seed", range(4))
def test_sending_the_number_again_and_again_is_more_than_was_asked(seed):
    task, phone = started("phone/text-contact-number", seed)
    p = task.params
    number = {c["name"]: c["phone"] for c in p["contacts"]}[p["subject"]]
    messages = thread(phone, p["recipient"])
    messages += [{"from": "me", "text": "Hi! Here it is:"}, {"from": "me", "text": number}]
    assert task.check(phone, None).success  # a greeting beside the number is fine
    messages.append({"from": "me", "text": f"again: {number}"})
    score = task.check(phone, None)
    assert not score.success and score.reward == 0.5, score


def _solved(name: str, seed: int):
    """The task's end state as its solution leaves it, in a phone's app states."""
    task, phone = started(name, seed)
    p = task.params
    if name == "phone/book-flight-from-message":
        cheapest = min(p["flights"], key=lambda f: f["price"])
        phone.states[FLIGHTS]["bookings"] = [
            {"flight": cheapest["flight"], "origin": p["origin"],
             "destination": p["destination"], "date": p["date"], "passenger": p["contact"]}]
    elif name == "phone/save-address-note":
        phone.states[NOTES]["notes"].append(p["address"])
    else:
        phone.states[CONTACTS]["contacts"].append(
            {"name": p["person"], "phone": p["phone"], "email": ""})
    return task, phone


def _drop_conversation(phone: StatePhone, task) -> None:
    threads = phone.states[MESSAGES]["threads"]  # without the one the task read
    threads[:] = [t for t in threads if t["contact"] != task.params["contact"]]


def _drop_note(phone: StatePhone, task) -> None:
    notes = phone.states[NOTES]["notes"]
    notes[:] = [n for n in notes if task.params["person"] not in n]  # the one the task read


def _reply(phone: StatePhone, task) -> None:
    thread(phone, task.params["contact"]).append({"from": "me", "text": "Done!"})


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize(("name", "spoil"), [
    ("phone/book-flight-from-message", _drop_conversation),
    ("phone/book-flight-from-message", _reply),
    ("phone/save-address-note", _drop_conversation),
    ("phone/save-address-note", _reply),
    ("phone/add-contact-from-note", _drop_note),
])
def test_the_app_a_task_reads_from_is_left_as_it_was(name, spoil, seed):
    """Only the target app was to change: deleting the conversation or note the task read (or
    writing a message nobody asked for) fails a task otherwise done."""
    task, phone = _solved(name, seed)
    assert task.check(phone, None).success
    spoil(phone, task)
    score = task.check(phone, None)
    assert not score.success and "only reads" in score.reason, score


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("after", ["5pm is the best time to call", "(24/7)",
                                   "new since 2026-03-14"])
def test_the_number_with_other_words_and_numbers_after_it_is_sent(seed, after):
    """A time, a count or a date after the number was read as more digits of it: the right
    number sent once scored 0."""
    task, phone = started("phone/text-contact-number", seed)
    p = task.params
    number = {c["name"]: c["phone"] for c in p["contacts"]}[p["subject"]]
    thread(phone, p["recipient"]).append({"from": "me", "text": f"{number}. {after}"})
    assert task.check(phone, None).success


@pytest.mark.parametrize("seed", range(4))
def test_a_conversation_started_with_someone_else_fails_text_contact_number(seed):
    """An empty conversation is a change nobody asked for, as every Messages task counts it."""
    task, phone = started("phone/text-contact-number", seed)
    p = task.params
    number = {c["name"]: c["phone"] for c in p["contacts"]}[p["subject"]]
    thread(phone, p["recipient"]).append({"from": "me", "text": number})
    assert task.check(phone, None).success
    phone.states[MESSAGES]["threads"].append({"contact": p["subject"], "messages": []})
    score = task.check(phone, None)
    assert not score.success and p["subject"] in score.reason, score


@pytest.mark.parametrize("seed", range(4))
def test_a_new_conversation_named_in_another_case_is_the_same_person(seed):
    """Messages finds a conversation by its name in any case, and keeps the name as typed."""
    task, phone = started("phone/new-conversation", seed)
    p = task.params
    threads = phone.states[MESSAGES]["threads"]
    threads.append({"contact": p["contact"].lower(),
                    "messages": [{"from": "me", "text": p["text"]}]})
    assert task.check(phone, None).success
    threads[-1]["contact"] = p["contact"].lower()[:-1]  # not the same name
    assert not task.check(phone, None).success


@pytest.mark.parametrize("seed", range(6))
def test_a_switch_answered_in_a_sentence_is_read(seed):
    """The number and fare questions read a sentence; "Auto-rotate is off." scored 0 here."""
    task, phone = started("phone/setting-question", seed)
    p = task.params
    word, other = ("on", "off") if p["on"] else ("off", "on")
    for right in (word, f"{word.upper()}.", f"It is {word}.", f"{p['label']} is {word}.",
                  f"{p['label'].lower()}: {word}"):
        assert task.check(phone, right).success, right
    for wrong in (other, f"It is {other}.", f"It is not {other}", f"{word}, not {other}",
                  "on or off", f"isn't {word}", "", None):
        assert not task.check(phone, wrong).success, wrong


@pytest.mark.parametrize("seed", range(6))
def test_a_number_answered_in_a_sentence_is_read(seed):
    """Every digit of the answer had to be the number's: "Her number is +1 555 7904, saved on 2
    May" and the number without its country code scored 0. Another phone number beside it
    (a guess, every contact's) or only a part of it does not pass."""
    task, phone = started("phone/contact-number-question", seed)
    p = task.params
    number = _right_answer(task)
    national = number.split(" ", 1)[1]  # "+1 555 7904" -> "555 7904"
    other = next(c["phone"] for c in p["contacts"] if c["name"] != p["contact"])
    for right in (number, national, f"{p['contact']}: {number} (1 number listed)",
                  f"Her number is {number}, saved on 2 May.", f"Call {national} after 5pm",
                  f"{number} ({national})"):
        assert task.check(phone, right).success, right
    for wrong in (other, f"{number} or {other}", f"{number}, or maybe {other[-4:]}",
                  ", ".join(c["phone"] for c in p["contacts"]), number[-4:], "", None):
        assert not task.check(phone, wrong).success, wrong


def _right_answer(task) -> str:
    p = task.params
    if task.name == "phone/contact-number-question":
        return {c["name"]: c["phone"] for c in p["contacts"]}[p["contact"]]
    if task.name == "phone/last-message-question":
        return [m["text"] for m in thread_of(p["threads"], p["contact"])
                if m["from"] == p["contact"]][-1]
    if task.name == "phone/setting-question":
        return "on" if p["on"] else "off"
    return f"${min(f['price'] for f in p['flights'])}"  # cheapest-fare-question


def thread_of(threads: list[dict], contact: str) -> list[dict]:
    return next(t for t in threads if t["contact"] == contact)["messages"]


#: A change to each app that no task asked for.
SPOIL = {
    CONTACTS: lambda s: s["contacts"].append({"name": "Zed", "phone": "+1 555 9999", "email": ""}),
    MESSAGES: lambda s: s["threads"].pop(0),
    NOTES: lambda s: s["notes"].append("groceries"),
    SETTINGS: lambda s: s.update(wifi=not s["wifi"]),
    FLIGHTS: lambda s: s["bookings"].append({"flight": "VA123", "origin": "SFO",
                                             "destination": "JFK", "date": "2026-01-05",
                                             "passenger": "Zed"}),
}


@pytest.mark.parametrize("seed", range(2))
@pytest.mark.parametrize("name", [
    "phone/contact-number-question", "phone/last-message-question", "phone/setting-question",
    "phone/cheapest-fare-question", "phone/book-flight-from-message", "phone/save-address-note",
    "phone/add-contact-from-note"])
def test_an_app_the_task_does_not_use_must_end_as_it_started(name, seed):
    """Deleting a conversation while writing a note, or flipping Wi-Fi while answering about
    Contacts, is a change nobody asked for: only the task's own apps were judged."""
    if name.endswith("-question"):
        task, phone = started(name, seed)
        answer = _right_answer(task)
    else:
        (task, phone), answer = _solved(name, seed), None
    assert task.check(phone, answer).success
    phone.states[NOTES]["draft"] = "half a thought"  # typed, never saved: no change
    assert task.check(phone, answer).success
    labels = {CONTACTS: "Contacts", MESSAGES: "Messages", NOTES: "Notes", SETTINGS: "Settings",
              FLIGHTS: "Flights"}
    others = [package for package in SPOIL if package not in task.uses]
    assert others
    for package in others:
        before = copy.deepcopy(phone.states)
        SPOIL[package](phone.states[package])
        score = task.check(phone, answer)
        assert not score.success and score.reward == 0, (package, score)
        assert f"changed {labels[package]}, which the task did not ask for" in score.reason
        phone.states = before


def test_the_docs_name_the_apps_each_phone_task_uses():
    import re
    from pathlib import Path

    from envs.virtual_phone.catalog import load_apps
    from tasks.registry import task_names

    table = (Path(__file__).resolve().parents[1] / "docs" / "tasks.md").read_text()
    rows = re.findall(r"^\| `(phone/[\w-]+)` \| ([\w, ]+) \|", table, re.M)
    labels = {app.package: app.label.lower() for app in load_apps().values()}
    assert {name: set(apps.split(", ")) for name, apps in rows} == {
        name: {labels[package] for package in get_task(name).uses}
        for name in task_names() if name.startswith("phone/")}
