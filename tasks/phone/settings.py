"""Settings app tasks (envs/virtual_phone/apps/settings)."""

from __future__ import annotations

import random
from typing import Any, Iterator

from core.actions import Terminate
from core.results import Score
from envs.base import Env
from tasks.base import SolutionStep
from tasks.phone.device import SETTINGS, PhoneTask, app_state, find, set_app_state, tap, wait_for

SWITCHES = ("wifi", "bluetooth")


def _on_off(value: bool) -> str:
    return "on" if value else "off"


class SetWifiAndBluetooth(PhoneTask):
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

    def initialize(self, env: Env) -> None:
        super().initialize(env)
        set_app_state(env, SETTINGS, dict(self.params["start"]))

    def check(self, env: Env, answer: str | None) -> Score:
        state = app_state(env, SETTINGS)
        have = {key: state.get(key) for key in SWITCHES}
        want = {key: self.params[key] for key in SWITCHES}
        return Score(success=have == want,
                     reason=f"Wi-Fi {_on_off(bool(have['wifi']))}, Bluetooth "
                            f"{_on_off(bool(have['bluetooth']))}")

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
