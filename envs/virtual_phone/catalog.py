"""The catalog of bundled apps: static web apps in ``apps/<name>/`` beside this module, each
described by its app.json.

app.json holds the Android identity (package, activity, label), the launcher icon colour and
the app's initial state (what ``vphone reset`` restores and a task's success check reads).
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

APPS_DIR = Path(__file__).resolve().parent / "apps"
#: The origin the phone serves apps from; requests anywhere else are refused (no network).
ORIGIN = "http://vphone.apps"
LAUNCHER = "com.vlagent.launcher"


@dataclass(frozen=True)
class App:
    name: str  # its directory under envs/virtual_phone/apps
    package: str
    label: str
    activity: str
    color: str = "#607d8b"
    initial_state: dict[str, Any] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"{ORIGIN}/{self.name}/index.html"

    @property
    def component(self) -> str:
        return f"{self.package}/{self.activity}"

    def fresh_state(self) -> dict[str, Any]:
        return copy.deepcopy(self.initial_state)


def load_apps(apps_dir: Path = APPS_DIR) -> dict[str, App]:
    """Every app under ``apps_dir`` by package; the launcher must be among them."""
    apps: dict[str, App] = {}
    for manifest in sorted(apps_dir.glob("*/app.json")):
        data = json.loads(manifest.read_text())
        app = App(name=manifest.parent.name, **data)
        apps[app.package] = app
    if LAUNCHER not in apps:
        raise FileNotFoundError(f"no launcher app ({LAUNCHER}) under {apps_dir}")
    return apps


def app_for_url(apps: dict[str, App], url: str) -> App | None:
    """The app whose directory serves ``url``, if any."""
    if not url.startswith(ORIGIN + "/"):
        return None
    name = url[len(ORIGIN) + 1:].split("/", 1)[0]
    return next((app for app in apps.values() if app.name == name), None)
