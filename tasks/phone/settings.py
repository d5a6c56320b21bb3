"""Settings app tasks (envs/virtual_phone/apps/settings)."""

from __future__ import annotations

import random
import re
from typing import Any, Iterator

from core.actions import Answer, OpenApp, Terminate, Type
from core.results import Score
from envs.base import Env, EnvError
from tasks.base import SolutionStep
from tasks.phone.device import (
    SETTINGS,
    PhoneTask,
    app_state,
    find,
    scroll_to,
    set_app_state,
    tap,
    wait_for,
)

SWITCHES = ("wifi", "bluetooth")
#: The last switches of the Settings page (key, label): below the fold, so a scroll away.
LOWER_SWITCHES = (("night_light", "Night light"), ("auto_rotate", "Auto-rotate"),
                  ("vibrate", "Vibrate on tap"), ("captions", "Live captions"))
DEVICE_NAMES = ("Ada's phone", "Kitchen tablet", "Work phone", "Pixel of Grace", "Test device 7",
                "Travel phone", "Blue phone", "Alan's handset")


def _on_off(value: bool) -> str:
    return "on" if value else "off"


def update_settings(env: Env, values: dict[str, Any]) -> None:
    """Write ``values`` over the app's current settings; the others keep their state."""
    set_app_state(env, SETTINGS, {**app_state(env, SETTINGS), **values})


def _setting(state: dict[str, Any], key: str) -> Any:
    value = state.get(key)
    return bool(value) if value is None or isinstance(value, bool) else value  # missing: off


class SettingsTask(PhoneTask):
    """A Settings task: ``initialize`` writes ``start_values`` over the app's settings and keeps
    the whole state it started from, so a check sees every switch (and the name), not only the
    ones its goal names: flipping Airplane mode on the way to Wi-Fi is not the task, as a second
    contact is not an edit."""

    uses = frozenset({SETTINGS})
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.started: dict[str, Any] | None = None

    def start_values(self) -> dict[str, Any]:
        return {}

    def initialize(self, env: Env) -> None:
        super().initialize(env)
        update_settings(env, self.start_values())
        self.started = app_state(env, SETTINGS)

    def changed(self, env: Env, asked: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
        """The app's settings, and the keys that differ from the start state with ``asked``
        applied (each as "key: was -> now")."""
        if self.started is None:
            raise EnvError(f"{self.name}: initialize the task before its check")
        state, want = app_state(env, SETTINGS), {**self.started, **asked}
        return state, [f"{key}: {_setting(want, key)!r} -> {_setting(state, key)!r}"
                       for key in sorted(set(want) | set(state))
                       if _setting(state, key) != _setting(want, key)]


class SetWifiAndBluetooth(SettingsTask):
    name = "phone/set-wifi-bluetooth"
    goal_template = "In Settings, turn Wi-Fi {wifi_word} and Bluetooth {bluetooth_word}."
    tags = frozenset({"settings", "toggle", "easy"})
    max_steps = 6
    keywords = ("wifi", "wi", "fi", "bluetooth", "toggle", "switch", "disable", "enable")

    @classmethod
    def sample_params(cls, rng: random.Random) -> dict[str, Any]:
        want = {key: rng.random() < 0.5 for key in SWITCHES}
        start = {key: rng.random() < 0.5 for key in SWITCHES}
        if start == want:  # at least one switch must change
            flip = rng.choice(SWITCHES)
            start[flip] = not start[flip]
        return {"wifi": want["wifi"], "bluetooth": want["bluetooth"], "start": start,
                "wifi_word": _on_off(want["wifi"]),
                "bluetooth_word": _on_off(want["bluetooth"])}

    def start_values(self) -> dict[str, Any]:
        return self.params["start"]

    def verdict(self, env: Env, answer: str | None) -> Score:
        state, changed = self.changed(env, {key: self.params[key] for key in SWITCHES})
        now = f"Wi-Fi {_on_off(bool(state.get('wifi')))}, Bluetooth " \
              f"{_on_off(bool(state.get('bluetooth')))}"
        return Score(success=not changed,
                     reason=f"{now}; not as asked: {', '.join(changed)}" if changed else now)

    def solution(self, env: Env) -> Iterator[SolutionStep]:
        yield SolutionStep(tap(find(env, "launcher:settings")), "Open Settings.")
        for key, label in (("wifi", "Wi-Fi"), ("bluetooth", "Bluetooth")):
            switch = find(env, f"settings:{key}")
            if switch.checked != self.params[key]:  # the screen shows the start state
                yield SolutionStep(tap(switch), f"Switch {label} {_on_off(self.params[key])}.")
        summary = (f"Wi-Fi {self.params['wifi_word']}, "
                   f"Bluetooth {self.params['bluetooth_word']}")
        wait_for(env, lambda nodes: [n for n in nodes if n.resource_id == "settings:summary"
                                     and summary in n.text], "the updated summary")
        yield SolutionStep(Terminate(status="success"), f"Now {summary}.")


class ToggleSetting(SettingsTask):
    name = "phone/toggle-setting"
    goal_template = "In Settings, turn {label} {word}."
    tags = frozenset({"settings", "toggle", "scroll", "easy"})
    max_steps = 8
    keywords = ("toggle", "switch", "disable", "enable", "night", "light", "rotate", "captions")

    @classmethod
    def sample_params(cls, rng: random.Random) -> dict[str, Any]:
        key, label = rng.choice(LOWER_SWITCHES)
        want = rng.random() < 0.5
        return {"key": key, "label": label, "on": want, "word": _on_off(want),
                # the rest of the lower switches start anywhere; this one the other way
                "start": {**{k: rng.random() < 0.5 for k, _ in LOWER_SWITCHES}, key: not want}}

    def start_values(self) -> dict[str, Any]:
        return self.params["start"]

    def verdict(self, env: Env, answer: str | None) -> Score:
        p = self.params
        _, changed = self.changed(env, {p["key"]: p["on"]})
        if not changed:
            return Score(success=True, reason=f"{p['label']} is {p['word']}")
        return Score(success=False, reason=f"not as asked: {', '.join(changed)}")

    def solution(self, env: Env) -> Iterator[SolutionStep]:
        p = self.params
        yield SolutionStep(tap(find(env, "launcher:settings")), "Open Settings.")
        switch = yield from scroll_to(env, f"settings:{p['key']}", p["label"])
        yield SolutionStep(tap(switch), f"Switch {p['label']} {p['word']}.")
        wait_for(env, lambda nodes: [n for n in nodes if n.resource_id == switch.resource_id
                                     and n.checked == p["on"]], f"{p['label']} {p['word']}")
        yield SolutionStep(Terminate(status="success"), f"{p['label']} is {p['word']}.")


class RenameDevice(SettingsTask):
    name = "phone/rename-device"
    goal_template = "Rename this phone to '{device_name}' in Settings, under About phone."
    tags = frozenset({"settings", "edit", "typing", "scroll", "medium"})
    max_steps = 12
    keywords = ("rename", "device", "name", "about")

    @classmethod
    def sample_params(cls, rng: random.Random) -> dict[str, Any]:
        old, new = rng.sample(DEVICE_NAMES, 2)
        return {"start_name": old, "device_name": new}

    def start_values(self) -> dict[str, Any]:
        return {"device_name": self.params["start_name"]}

    def verdict(self, env: Env, answer: str | None) -> Score:
        state, changed = self.changed(env, {"device_name": self.params["device_name"]})
        now = f"the phone is {state.get('device_name')!r}"
        return Score(success=not changed,
                     reason=f"{now}; not as asked: {', '.join(changed)}" if changed else now)

    def solution(self, env: Env) -> Iterator[SolutionStep]:
        name = self.params["device_name"]
        yield SolutionStep(tap(find(env, "launcher:settings")), "Open Settings.")
        about = yield from scroll_to(env, "settings:about", "About phone")
        yield SolutionStep(tap(about), "Open About phone.")
        yield SolutionStep(tap(find(env, "settings:clear-name")), "Clear the old name.")
        yield SolutionStep(Type(text=name), "Enter the new name.")
        yield SolutionStep(tap(find(env, "settings:save-name")), "Save it.")
        wait_for(env, lambda nodes: [n for n in nodes if n.resource_id == "settings:saved-name"
                                     and n.text == f"Name: {name}"], "the saved name")
        yield SolutionStep(Terminate(status="success"), f"The phone is now {name!r}.")


def switch_said(answer: str | None, label: str) -> str | None:
    """"on" or "off", where the answer says one of them beside the switch's name and nothing
    that turns it round ("Auto-rotate is off." -> "off"; "It is not on", "on, not off" and
    "isn't off" -> None)."""
    words = re.findall(r"[a-z']+", (answer or "").casefold().replace(label.casefold(), " "))
    said = {w for w in words if w in ("on", "off")}
    if len(said) != 1 or any(w in ("not", "no") or w.endswith("n't") for w in words):
        return None
    return said.pop()


class SwitchQuestion(SettingsTask):
    name = "phone/setting-question"
    goal_template = "Is {label} on or off in Settings? Answer with on or off."
    tags = frozenset({"settings", "answer", "scroll", "easy"})
    max_steps = 8
    keywords = ("is", "on", "off", "status")

    @classmethod
    def sample_params(cls, rng: random.Random) -> dict[str, Any]:
        key, label = rng.choice(LOWER_SWITCHES)
        return {"key": key, "label": label, "on": rng.random() < 0.5}

    def start_values(self) -> dict[str, Any]:
        return {self.params["key"]: self.params["on"]}

    def verdict(self, env: Env, answer: str | None) -> Score:
        """The switch as it was when asked; flipping it (or any other) is no answer."""
        p = self.params
        word = _on_off(p["on"])
        _, changed = self.changed(env, {})
        if changed:
            return Score(success=False, reason=f"asked a question, the agent changed Settings: "
                                               f"{', '.join(changed)}")
        return Score(success=switch_said(answer, p["label"]) == word,
                     reason=f"answered {answer!r}; {p['label']} is {word}")

    def solution(self, env: Env) -> Iterator[SolutionStep]:
        label = self.params["label"]
        yield SolutionStep(OpenApp(app="Settings"), "Open Settings.")
        switch = yield from scroll_to(env, f"settings:{self.params['key']}", label)
        word = _on_off(switch.checked)
        yield SolutionStep(Answer(text=word), f"The {label} switch is {word}.")
