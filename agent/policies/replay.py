"""``--model replay:FILE``: replies read from a JSONL file or a trajectory directory, in order.

A JSONL file holds one ``{"response": "..."}`` object per line, with the optional ``"stop"`` and
``"truncated"`` of a step record's usage (what ended the reply). A trajectory directory (or its
steps.jsonl, read as the directory is) gives its steps' raw texts and endings, so replaying a
trajectory on the same start state repeats it, and its export trains what the first run's would.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from agent.policies.base import Policy, PolicyError, Reply, Request


def read_responses(source: str | Path, secrets: Mapping[str, str] | None = None) -> list[Reply]:
    """The recorded replies of a JSONL file or a trajectory directory. A trajectory's reply
    that was recorded with a secret's placeholder in place of the value the model wrote
    (``response_masked``) gets the value back from ``secrets``, where it names one."""
    from trajectories.reader import load, trajectory_folder

    path = Path(source)
    if (folder := trajectory_folder(path)) is not None:
        path = folder
        replies = [Reply(_unmasked(step.response, secrets) if step.response_masked
                         else step.response, _ending(step.usage))
                   for step in load(path).steps]
        if not replies:  # a run killed before its first step
            raise PolicyError(f"{path} recorded no step, so there is no reply to replay")
        return replies
    if not path.is_file():
        raise PolicyError(f"replay source {path} does not exist")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise PolicyError(f"{path} is not UTF-8 text: {exc}") from None
    responses = []
    # Lines end at "\n" only: U+2028, U+0085 and the like may stand unescaped in JSON strings.
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise PolicyError(f"{path}:{number} is not JSON: {exc}") from None
        if not isinstance(item, dict) or not isinstance(item.get("response"), str):
            raise PolicyError(f'{path}:{number} must be an object with a "response" string')
        if not isinstance(item.get("stop", ""), (str, type(None))):
            raise PolicyError(f'{path}:{number}: "stop" must be a string or null')
        if not isinstance(item.get("truncated", False), bool):
            raise PolicyError(f'{path}:{number}: "truncated" must be true or false')
        responses.append(Reply(item["response"], _ending(item)))
    return responses


def _unmasked(text: str, secrets: Mapping[str, str] | None) -> str:
    from agent.secrets import PLACEHOLDER

    values = secrets or {}
    return PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), text)


def _ending(record: dict) -> dict:
    """What ended a recorded reply (``trajectories.records.StepRecord.usage``): the stop string
    and whether the token limit cut it off, where the record says."""
    return {key: record[key] for key in ("stop", "truncated") if key in record}


class ReplayPolicy(Policy):
    def __init__(self, source: str | Path, secrets: Mapping[str, str] | None = None) -> None:
        self.name = f"replay:{source}"
        self._responses = read_responses(source, secrets)
        self._next = 0

    def respond(self, request: Request) -> Reply:
        if self._next >= len(self._responses):
            raise PolicyError(f"the replay ran out after {len(self._responses)} replies")
        reply = self._responses[self._next]
        self._next += 1
        return reply
