"""Flights app tasks (envs/virtual_phone/apps/flights): the timetable is the app's state, so a
task writes its own in ``initialize`` and its check reads it back from the device."""

from __future__ import annotations

import random
import re
from typing import Any, Iterator

from core.actions import Terminate, Type
from core.results import Score
from envs.base import Env
from envs.ui_tree import UiNode
from tasks.base import SolutionStep
from tasks.phone.device import FLIGHTS, PhoneTask, app_state, find, set_app_state, tap, wait_for

AIRPORTS = ("SFO", "JFK", "LAX", "SEA", "BOS", "ORD", "LHR", "CDG", "AMS", "NRT")
PASSENGERS = ("Ada Lovelace", "Grace Hopper", "Alan Turing", "Katherine Johnson",
              "Edsger Dijkstra", "Barbara Liskov")


def _time(rng: random.Random) -> str:
    return f"{rng.randrange(24):02d}:{rng.choice((0, 10, 15, 25, 30, 40, 45, 55)):02d}"


class BookFlight(PhoneTask):
    name = "phone/book-flight"
    goal_template = ("Book the cheapest flight from {origin} to {destination} on {date} "
                     "for {passenger}.")
    tags = frozenset({"flights", "typing", "easy"})
    max_steps = 15
    keywords = ("flights", "airline", "ticket", "plane", "trip")

    @classmethod
    def sample_params(cls, rng: random.Random) -> dict[str, Any]:
        origin, destination = rng.sample(AIRPORTS, 2)
        numbers = rng.sample(range(100, 1000), 4)
        prices = rng.sample(range(89, 600), 4)  # distinct, so exactly one flight is cheapest
        return {
            "origin": origin, "destination": destination,
            "date": f"2026-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
            "passenger": rng.choice(PASSENGERS),
            "flights": [{"flight": f"VA{n}", "departs": _time(rng), "arrives": _time(rng),
                         "price": p} for n, p in zip(numbers, prices)],
        }

    @property
    def route(self) -> str:
        return f"{self.params['origin']}-{self.params['destination']}"

    def initialize(self, env: Env) -> None:
        super().initialize(env)
        state = app_state(env, FLIGHTS)
        state["timetable"] = {**state.get("timetable", {}), self.route: self.params["flights"]}
        set_app_state(env, FLIGHTS, state)

    def check(self, env: Env, answer: str | None) -> Score:
        state = app_state(env, FLIGHTS)
        offered = state.get("timetable", {}).get(self.route, [])
        if not offered:
            return Score(success=False, reason=f"the app has no flights for {self.route}")
        cheapest = min(offered, key=lambda f: f["price"])["flight"]
        p = self.params
        want = {"flight": cheapest, "origin": p["origin"], "destination": p["destination"],
                "date": p["date"], "passenger": p["passenger"]}
        bookings = state.get("bookings", [])
        if bookings == [want]:
            return Score(success=True, reason=f"booked {cheapest} for {p['passenger']}")
        return Score(success=False, reason=f"expected exactly the booking {want}, found {bookings}")

    def solution(self, env: Env) -> Iterator[SolutionStep]:
        p = self.params
        yield SolutionStep(tap(find(env, "launcher:flights")), "Open the Flights app.")
        for field in ("origin", "destination", "date"):
            yield SolutionStep(tap(find(env, f"flights:{field}")), f"Select the {field} field.")
            yield SolutionStep(Type(text=p[field]), f"Enter {p[field]} as the {field}.")
        yield SolutionStep(tap(find(env, "flights:search")), "Search for flights.")
        results = wait_for(env, lambda nodes: [n for n in nodes
                                               if n.resource_id.startswith("flights:result-")],
                           "the flight results")
        cheapest = min(results, key=_price)
        yield SolutionStep(tap(cheapest), f"The cheapest is {cheapest.text.strip()}; pick it.")
        yield SolutionStep(tap(find(env, "flights:passenger")), "Select the passenger field.")
        yield SolutionStep(Type(text=p["passenger"]), "Enter the passenger's name.")
        yield SolutionStep(tap(find(env, "flights:confirm")), "Confirm the booking.")
        wait_for(env, lambda nodes: [n for n in nodes if n.resource_id == "flights:booked"
                                     and "Booked" in n.text], "the booking confirmation")
        yield SolutionStep(Terminate(status="success"), "The flight is booked.")


def _price(node: UiNode) -> int:
    match = re.search(r"\$(\d+)", node.text)
    if match is None:
        raise ValueError(f"no price in the result {node.text!r}")
    return int(match.group(1))
