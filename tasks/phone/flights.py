"""Flights app tasks (envs/virtual_phone/apps/flights): the timetable is the app's state, so a
task writes its own in ``initialize`` and its check reads it back from the device."""

from __future__ import annotations

import random
import re
from typing import Any, Iterator

from core.actions import Answer, Key, Terminate, Type
from core.results import Score
from envs.base import Env
from envs.ui_tree import UiNode
from tasks.base import SolutionStep
from tasks.phone.device import (
    FLIGHTS,
    PhoneTask,
    app_state,
    find,
    set_app_state,
    tap,
    wait_for,
)

AIRPORTS = ("SFO", "JFK", "LAX", "SEA", "BOS", "ORD", "LHR", "CDG", "AMS", "NRT")
PASSENGERS = ("Ada Lovelace", "Grace Hopper", "Alan Turing", "Katherine Johnson",
              "Edsger Dijkstra", "Barbara Liskov")


def _time(rng: random.Random) -> str:
    return f"{rng.randrange(24):02d}:{rng.choice((0, 10, 15, 25, 30, 40, 45, 55)):02d}"


def draw_trip(rng: random.Random) -> dict[str, Any]:
    """A route, a date and the four flights the app offers on it, at distinct prices (so exactly
    one is cheapest)."""
    origin, destination = rng.sample(AIRPORTS, 2)
    numbers = rng.sample(range(100, 1000), 4)
    prices = rng.sample(range(89, 600), 4)
    return {
        "origin": origin, "destination": destination,
        "date": f"2026-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
        "flights": [{"flight": f"VA{n}", "departs": _time(rng), "arrives": _time(rng),
                     "price": p} for n, p in zip(numbers, prices)],
    }


class FlightsTask(PhoneTask):
    """A task on the seeded trip of ``draw_trip``: the app's timetable offers its flights."""

    uses = frozenset({FLIGHTS})
    keywords = ("flights", "airline", "ticket", "plane", "trip")

    @property
    def route(self) -> str:
        """The timetable's key for the trip: its route on its date only, so a search on another
        date shows other flights (a question answered from the wrong date is wrong)."""
        p = self.params
        return f"{p['origin']}-{p['destination']} {p['date']}"

    def initialize(self, env: Env) -> None:
        super().initialize(env)
        state = app_state(env, FLIGHTS)
        state["timetable"] = {**state.get("timetable", {}), self.route: self.params["flights"]}
        set_app_state(env, FLIGHTS, state)

    def cheapest(self) -> dict[str, Any]:
        """The route's cheapest flight, as seeded (the app's timetable is not the agent's to
        change)."""
        return min(self.params["flights"], key=lambda f: f["price"])

    def check_booking(self, env: Env, passenger: str) -> Score:
        cheapest, p = self.cheapest(), self.params
        want = {"flight": cheapest["flight"], "origin": p["origin"],
                "destination": p["destination"], "date": p["date"], "passenger": passenger}
        bookings = app_state(env, FLIGHTS).get("bookings", [])
        if bookings == [want]:
            return Score(success=True, reason=f"booked {cheapest['flight']} for {passenger}")
        return Score(success=False, reason=f"expected exactly the booking {want}, found {bookings}")


def search(env: Env, trip: dict[str, Any], enter_key: bool = False) -> Iterator[SolutionStep]:
    """Fill in the search form and search (tapping Search, or with ``enter_key`` pressing
    Enter in the last field); ends on the results."""
    for field in ("origin", "destination", "date"):
        yield SolutionStep(tap(find(env, f"flights:{field}")), f"Select the {field} field.")
        yield SolutionStep(Type(text=trip[field]), f"Enter {trip[field]} as the {field}.")
    if enter_key:
        yield SolutionStep(Key(key="enter"), "Press enter to search.")
    else:
        yield SolutionStep(tap(find(env, "flights:search")), "Search for flights.")


def cheapest_result(env: Env) -> UiNode:
    results = wait_for(env, lambda nodes: [n for n in nodes
                                           if n.resource_id.startswith("flights:result-")],
                       "the flight results")
    return min(results, key=price_shown)


def book(env: Env, trip: dict[str, Any], passenger: str) -> Iterator[SolutionStep]:
    """From the Flights app's search page: book the trip's cheapest flight for ``passenger``."""
    yield from search(env, trip)
    cheapest = cheapest_result(env)
    yield SolutionStep(tap(cheapest), f"The cheapest is {cheapest.text.strip()}; pick it.")
    yield SolutionStep(tap(find(env, "flights:passenger")), "Select the passenger field.")
    yield SolutionStep(Type(text=passenger), "Enter the passenger's name.")
    yield SolutionStep(tap(find(env, "flights:confirm")), "Confirm the booking.")
    wait_for(env, lambda nodes: [n for n in nodes if n.resource_id == "flights:booked"
                                 and "Booked" in n.text], "the booking confirmation")


class BookFlight(FlightsTask):
    name = "phone/book-flight"
    goal_template = ("Book the cheapest flight from {origin} to {destination} on {date} "
                     "for {passenger}.")
    tags = frozenset({"flights", "typing", "easy"})
    max_steps = 15

    @classmethod
    def sample_params(cls, rng: random.Random) -> dict[str, Any]:
        trip = draw_trip(rng)
        return {**{k: trip[k] for k in ("origin", "destination", "date")},
                "passenger": rng.choice(PASSENGERS), "flights": trip["flights"]}

    def verdict(self, env: Env, answer: str | None) -> Score:
        return self.check_booking(env, self.params["passenger"])

    def solution(self, env: Env) -> Iterator[SolutionStep]:
        yield SolutionStep(tap(find(env, "launcher:flights")), "Open the Flights app.")
        yield from book(env, self.params, self.params["passenger"])
        yield SolutionStep(Terminate(status="success"), "The flight is booked.")


class CheapestFareQuestion(FlightsTask):
    name = "phone/cheapest-fare-question"
    goal_template = ("How much does the cheapest flight from {origin} to {destination} on "
                     "{date} cost? Answer with the price in dollars.")
    tags = frozenset({"flights", "answer", "typing", "medium"})
    max_steps = 12
    keywords = ("flights", "price", "fare", "cost", "cheapest")

    @classmethod
    def sample_params(cls, rng: random.Random) -> dict[str, Any]:
        return draw_trip(rng)

    def verdict(self, env: Env, answer: str | None) -> Score:
        """The seeded fares; a question is no licence to book one."""
        booked = app_state(env, FLIGHTS).get("bookings", [])
        if booked:
            return Score(success=False, reason=f"asked a question, the agent booked {booked}")
        price = self.cheapest()["price"]
        said = _prices_said(answer or "", {f["price"] for f in self.params["flights"]})
        ok = len(said) == 1 and said.pop() == price
        return Score(success=ok, reason=f"answered {answer!r}; the cheapest costs ${price}")

    def solution(self, env: Env) -> Iterator[SolutionStep]:
        yield SolutionStep(tap(find(env, "launcher:flights")), "Open the Flights app.")
        yield from search(env, self.params, enter_key=True)
        price = price_shown(cheapest_result(env))
        yield SolutionStep(Answer(text=f"${price}"), f"The cheapest flight costs ${price}.")


def _prices_said(answer: str, fares: set[int]) -> set[float]:
    """The prices an answer names: its dollar amounts ("$296", "296 dollars", "296 USD"), and
    its numbers that stand alone (not a date's, a time's such as 08:15, nor a flight code's such
    as VA718); beside a dollar amount, only those that are ``fares`` of the route ("559 or
    $296", not "$296 for 1 adult"). One price must remain for a right answer, so naming several
    is no way to be right."""
    text = answer.replace(",", "")
    dollars = {float(n) for found in re.findall(
        r"\$\s*(\d+(?:\.\d+)?)(?:\s*[-\u2013]\s*(\d+(?:\.\d+)?))?"  # $296, $296-559
        r"|(?<![\w.])(\d+(?:\.\d+)?)\s*(?:dollars?|usd)\b",  # 296 dollars, 296 USD
        text, re.I) for n in found if n}
    alone = {float(n) for n in re.findall(r"(?<![\w.$:-])(\d+(?:\.\d+)?)(?![\w:-])", text)}
    return dollars | {n for n in alone if not dollars or n in fares}


def price_shown(node: UiNode) -> int:
    """The fare a search result shows."""
    match = re.search(r"\$(\d+)", node.text)
    if match is None:
        raise ValueError(f"no price in the result {node.text!r}")
    return int(match.group(1))
