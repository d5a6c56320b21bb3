"""Phone tasks on the virtual phone's bundled apps (envs/virtual_phone/apps)."""

from __future__ import annotations

import re
from typing import Iterator

from core.actions import Tap, Terminate, Type
from core.results import Score
from envs.base import Env
from tasks.base import SolutionStep, Task
from tasks.phone_ui import UiNode, app_state, find, reset_apps, wait_for

FLIGHTS = "com.vlagent.flights"
NOTES = "com.vlagent.notes"
SETTINGS = "com.vlagent.settings"


def tap(node: UiNode) -> Tap:
    x, y = node.center
    return Tap(x=x, y=y)


class PhoneTask(Task):
    env = "android"

    def setup(self, env: Env) -> None:
        reset_apps(env)


class BookFlight(PhoneTask):
    name = "phone/book-flight"
    goal = "Book the cheapest flight from SFO to JFK on 2026-12-01 for Ada Lovelace."
    keywords = ("flights", "airline", "ticket", "plane", "trip")
    origin, destination, date, passenger = "SFO", "JFK", "2026-12-01", "Ada Lovelace"
    # The Flights app's timetable for SFO-JFK: VA123 $289, VA311 $249, VA587 $199.
    cheapest = "VA587"

    def check(self, env: Env) -> Score:
        bookings = app_state(env, FLIGHTS).get("bookings", [])
        want = {"flight": self.cheapest, "origin": self.origin, "destination": self.destination,
                "date": self.date, "passenger": self.passenger}
        if bookings == [want]:
            return Score(success=True, reason=f"booked {self.cheapest} for {self.passenger}")
        return Score(success=False, reason=f"expected exactly the booking {want}, found {bookings}")

    def solution(self, env: Env) -> Iterator[SolutionStep]:
        yield SolutionStep(tap(find(env, "launcher:flights")), "Open the Flights app.")
        for field, value in (("origin", self.origin), ("destination", self.destination),
                             ("date", self.date)):
            yield SolutionStep(tap(find(env, f"flights:{field}")), f"Select the {field} field.")
            yield SolutionStep(Type(text=value), f"Enter {value} as the {field}.")
        yield SolutionStep(tap(find(env, "flights:search")), "Search for flights.")
        results = wait_for(env, lambda nodes: [n for n in nodes
                                               if n.resource_id.startswith("flights:result-")],
                           "the flight results")
        cheapest = min(results, key=_price)
        yield SolutionStep(tap(cheapest), f"The cheapest is {cheapest.text.strip()}; pick it.")
        yield SolutionStep(tap(find(env, "flights:passenger")), "Select the passenger field.")
        yield SolutionStep(Type(text=self.passenger), "Enter the passenger's name.")
        yield SolutionStep(tap(find(env, "flights:confirm")), "Confirm the booking.")
        wait_for(env, lambda nodes: [n for n in nodes if n.resource_id == "flights:booked"
                                     and "Booked" in n.text], "the booking confirmation")
        yield SolutionStep(Terminate(status="success"), "The flight is booked.")


def _price(node: UiNode) -> int:
    match = re.search(r"\$(\d+)", node.text)
    if match is None:
        raise ValueError(f"no price in the result {node.text!r}")
    return int(match.group(1))


class WriteNote(PhoneTask):
    name = "phone/write-note"
    goal = "Write a note that says 'Buy milk and eggs' and save it."
    keywords = ("notes", "memo", "remember")
    text = "Buy milk and eggs"

    def check(self, env: Env) -> Score:
        notes = app_state(env, NOTES).get("notes", [])
        if notes == [self.text]:
            return Score(success=True, reason=f"saved the note {self.text!r}")
        return Score(success=False, reason=f"expected one note {self.text!r}, found {notes}")

    def solution(self, env: Env) -> Iterator[SolutionStep]:
        yield SolutionStep(tap(find(env, "launcher:notes")), "Open the Notes app.")
        yield SolutionStep(tap(find(env, "notes:body")), "Select the note's text field.")
        yield SolutionStep(Type(text=self.text), "Write the note.")
        yield SolutionStep(tap(find(env, "notes:save")), "Save the note.")
        wait_for(env, lambda nodes: [n for n in nodes if n.resource_id.startswith("notes:note-")
                                     and n.text == self.text], "the saved note")
        yield SolutionStep(Terminate(status="success"), "The note is saved.")


class WifiOffBluetoothOn(PhoneTask):
    name = "phone/wifi-off-bluetooth-on"
    goal = "In Settings, turn Wi-Fi off and Bluetooth on."
    keywords = ("wifi", "wi", "fi", "bluetooth", "toggle", "switch", "disable", "enable")

    def check(self, env: Env) -> Score:
        state = app_state(env, SETTINGS)
        wifi, bluetooth = state.get("wifi"), state.get("bluetooth")
        return Score(success=wifi is False and bluetooth is True,
                     reason=f"Wi-Fi {'on' if wifi else 'off'}, Bluetooth "
                           f"{'on' if bluetooth else 'off'}")

    def solution(self, env: Env) -> Iterator[SolutionStep]:
        yield SolutionStep(tap(find(env, "launcher:settings")), "Open Settings.")
        # The start state has Wi-Fi on and Bluetooth off (the app's initial state): flip both.
        yield SolutionStep(tap(find(env, "settings:wifi")), "Switch Wi-Fi off.")
        yield SolutionStep(tap(find(env, "settings:bluetooth")), "Switch Bluetooth on.")
        wait_for(env, lambda nodes: [n for n in nodes if n.resource_id == "settings:summary"
                                     and "Wi-Fi off, Bluetooth on" in n.text],
                 "the updated summary")
        yield SolutionStep(Terminate(status="success"), "Wi-Fi is off and Bluetooth is on.")


PHONE_TASKS: tuple[type[Task], ...] = (BookFlight, WriteNote, WifiOffBluetoothOn)
