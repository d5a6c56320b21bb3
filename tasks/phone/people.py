"""The people, numbers and texts phone tasks draw their contacts and conversations from."""

from __future__ import annotations

import random
from typing import Any

PEOPLE = ("Ada Lovelace", "Alan Turing", "Barbara Liskov", "Claude Shannon", "Dennis Ritchie",
          "Donald Knuth", "Edsger Dijkstra", "Frances Allen", "Grace Hopper", "Hedy Lamarr",
          "Ivan Sutherland", "John McCarthy", "Ken Thompson", "Katherine Johnson",
          "Leslie Lamport", "Linus Torvalds", "Margaret Hamilton", "Niklaus Wirth",
          "Radia Perlman", "Robin Milner", "Shafi Goldwasser", "Tim Berners-Lee", "Tony Hoare",
          "Vint Cerf", "Whitfield Diffie", "Yukihiro Matsumoto")

CHAT_LINES = ("Are we still on for Friday?", "Running ten minutes late", "Thanks for the notes!",
              "Can you call me back?", "Lunch tomorrow?", "Happy birthday!",
              "The meeting moved to 3pm", "Did you see the game last night?",
              "I left my umbrella at your place", "See you at the station")


def phone_numbers(rng: random.Random, count: int) -> list[str]:
    """``count`` distinct numbers in the +1 555 range."""
    return [f"+1 555 {n:04d}" for n in rng.sample(range(100, 10000), count)]


def draw_contacts(rng: random.Random, count: int, exclude: tuple[str, ...] = ()) -> list[dict]:
    """``count`` contacts sorted by name (as the app lists them), each with its own number."""
    names = sorted(rng.sample([p for p in PEOPLE if p not in exclude], count))
    return [{"name": name, "phone": phone, "email": ""}
            for name, phone in zip(names, phone_numbers(rng, count))]


def draw_threads(rng: random.Random, contacts: list[str]) -> list[dict[str, Any]]:
    """A conversation with each of ``contacts``: one to three lines, the last one theirs."""
    threads = []
    for name in contacts:
        lines = rng.sample(CHAT_LINES, rng.randint(1, 3))
        senders = ["me" if (len(lines) - i) % 2 == 0 else name for i in range(len(lines))]
        threads.append({"contact": name, "messages": [{"from": who, "text": text}
                                                      for who, text in zip(senders, lines)]})
    return threads
