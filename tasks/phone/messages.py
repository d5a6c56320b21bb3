"""Messages app tasks (envs/virtual_phone/apps/messages): the conversations are seeded."""

from __future__ import annotations

import random
from typing import Any, Iterator

from core.actions import Answer, OpenApp, Terminate, Type
from core.results import Score
from envs.base import Env
from tasks.base import SolutionStep
from tasks.phone.device import (
    MESSAGES,
    PhoneTask,
    app_state,
    find,
    long_press,
    same_answer,
    scroll_to,
    set_app_state,
    slug,
    tap,
    wait_for,
    wait_gone,
)
from tasks.phone.people import PEOPLE, draw_threads

MY_LINES = ("On my way", "Sounds good, see you then", "Can we move it to 6pm?",
            "I'll bring the snacks", "Call you after work", "Got it, thanks!")


def _people(rng: random.Random, low: int = 3, high: int = 5) -> list[str]:
    return rng.sample(PEOPLE, rng.randint(low, high))


def _conversations(rng: random.Random) -> dict[str, Any]:
    """A few seeded conversations, and the contact of one of them."""
    people = _people(rng)
    return {"threads": draw_threads(rng, people), "contact": rng.choice(people)}


class MessagesTask(PhoneTask):
    """A task whose start state is the seeded ``threads`` param."""

    uses = frozenset({MESSAGES})
    keywords = ("messages", "message", "text", "sms", "chat", "conversation")

    def initialize(self, env: Env) -> None:
        super().initialize(env)
        set_app_state(env, MESSAGES, {"threads": self.params["threads"]})

    @staticmethod
    def threads(env: Env) -> list[dict[str, Any]]:
        return app_state(env, MESSAGES).get("threads", [])

    def expect(self, env: Env, want: list[dict[str, Any]], done: str,
               new_contact: str | None = None) -> Score:
        """Success when the conversations are ``want``; a conversation the agent started with
        ``new_contact`` may name them in another case, as Messages finds a conversation by its
        name in any case."""
        have = [{**t, "contact": new_contact} if new_contact is not None
                and str(t.get("contact", "")).casefold() == new_contact.casefold() else t
                for t in self.threads(env)]
        if have == want:
            return Score(success=True, reason=done)
        return Score(success=False, reason=f"expected the conversations {want}, found {have}")


def open_thread(env: Env, contact: str) -> Iterator[SolutionStep]:
    """In Messages: scroll to the conversation with ``contact`` and open it."""
    row = yield from scroll_to(env, f"messages:thread-{slug(contact)}", contact)
    yield SolutionStep(tap(row), f"Open the conversation with {contact}.")
    find(env, "messages:input")


def last_message(env: Env) -> str:
    """The last message of the open conversation."""
    bubbles = wait_for(env, lambda nodes: [n for n in nodes if n.resource_id.startswith(
        "messages:message-")], "the messages")
    return max(bubbles, key=lambda n: int(n.resource_id.rsplit("-", 1)[1])).text


def send(env: Env, text: str) -> Iterator[SolutionStep]:
    """In an open conversation: type ``text`` and send it."""
    yield SolutionStep(tap(find(env, "messages:input")), "Select the message field.")
    yield SolutionStep(Type(text=text), "Write the message.")
    yield SolutionStep(tap(find(env, "messages:send")), "Send it.")
    wait_for(env, lambda nodes: [n for n in nodes if n.resource_id.startswith(
        "messages:message-") and n.text == text], "the sent message")


class SendMessage(MessagesTask):
    name = "phone/send-message"
    goal_template = "Send {contact} the message '{text}' in Messages."
    tags = frozenset({"messages", "typing", "easy"})
    max_steps = 10

    @classmethod
    def sample_params(cls, rng: random.Random) -> dict[str, Any]:
        return {**_conversations(rng), "text": rng.choice(MY_LINES)}

    def verdict(self, env: Env, answer: str | None) -> Score:
        p = self.params
        want = [{**t, "messages": [*t["messages"], {"from": "me", "text": p["text"]}]}
                if t["contact"] == p["contact"] else t for t in p["threads"]]
        return self.expect(env, want, f"sent {p['text']!r} to {p['contact']}")

    def solution(self, env: Env) -> Iterator[SolutionStep]:
        yield SolutionStep(tap(find(env, "launcher:messages")), "Open Messages.")
        yield from open_thread(env, self.params["contact"])
        yield from send(env, self.params["text"])
        yield SolutionStep(Terminate(status="success"), "The message is sent.")


class NewConversation(MessagesTask):
    name = "phone/new-conversation"
    goal_template = "Start a new conversation with {contact} in Messages and send them '{text}'."
    tags = frozenset({"messages", "typing", "medium"})
    max_steps = 14

    @classmethod
    def sample_params(cls, rng: random.Random) -> dict[str, Any]:
        contact, *people = _people(rng, 3, 6)
        return {"threads": draw_threads(rng, people), "contact": contact,
                "text": rng.choice(MY_LINES)}

    def verdict(self, env: Env, answer: str | None) -> Score:
        p = self.params
        return self.expect(env, [*p["threads"], {"contact": p["contact"], "messages": [
            {"from": "me", "text": p["text"]}]}], f"sent {p['text']!r} to {p['contact']}",
            new_contact=p["contact"])

    def solution(self, env: Env) -> Iterator[SolutionStep]:
        contact = self.params["contact"]
        yield SolutionStep(OpenApp(app="Messages"), "Open Messages.")
        yield SolutionStep(tap(find(env, "messages:new")), "Start a new message.")
        yield SolutionStep(tap(find(env, "messages:to")), "Select the recipient field.")
        yield SolutionStep(Type(text=contact), f"Address it to {contact}.")
        yield SolutionStep(tap(find(env, "messages:start")), "Open the conversation.")
        yield from send(env, self.params["text"])
        yield SolutionStep(Terminate(status="success"), "The message is sent.")


class LastMessageQuestion(MessagesTask):
    name = "phone/last-message-question"
    goal_template = "What did {contact} last write to me in Messages? Answer with their message."
    tags = frozenset({"messages", "answer", "easy"})
    max_steps = 6

    @classmethod
    def sample_params(cls, rng: random.Random) -> dict[str, Any]:
        return _conversations(rng)

    def verdict(self, env: Env, answer: str | None) -> Score:
        """The seeded conversation; a question is no licence to write or delete messages."""
        contact = self.params["contact"]
        if self.threads(env) != self.params["threads"]:
            return Score(success=False, reason="asked a question, the agent changed Messages")
        theirs = [m["text"] for t in self.params["threads"] if t["contact"] == contact
                  for m in t["messages"] if m["from"] == contact]
        return Score(success=same_answer(answer, theirs[-1]),
                     reason=f"answered {answer!r}; {contact} last wrote {theirs[-1]!r}")

    def solution(self, env: Env) -> Iterator[SolutionStep]:
        contact = self.params["contact"]
        yield SolutionStep(tap(find(env, "launcher:messages")), "Open Messages.")
        yield from open_thread(env, contact)
        text = last_message(env)  # the conversation ends with their message
        yield SolutionStep(Answer(text=text), f"{contact} last wrote: {text}")


class DeleteConversation(MessagesTask):
    name = "phone/delete-conversation"
    goal_template = "Delete my conversation with {contact} in Messages."
    tags = frozenset({"messages", "delete", "long-press", "medium"})
    max_steps = 8

    @classmethod
    def sample_params(cls, rng: random.Random) -> dict[str, Any]:
        return _conversations(rng)

    def verdict(self, env: Env, answer: str | None) -> Score:
        contact = self.params["contact"]
        return self.expect(env, [t for t in self.params["threads"] if t["contact"] != contact],
                           f"deleted the conversation with {contact}")

    def solution(self, env: Env) -> Iterator[SolutionStep]:
        contact = self.params["contact"]
        yield SolutionStep(tap(find(env, "launcher:messages")), "Open Messages.")
        row = yield from scroll_to(env, f"messages:thread-{slug(contact)}", contact)
        yield SolutionStep(long_press(row), "Press and hold the conversation for its menu.")
        yield SolutionStep(tap(find(env, "messages:menu-delete")), "Delete the conversation.")
        wait_gone(env, row.resource_id, "messages:new", f"the list without {contact}")
        yield SolutionStep(Terminate(status="success"), "The conversation is deleted.")
