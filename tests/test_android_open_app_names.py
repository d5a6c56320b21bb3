"""``open_app`` with a name that is blank, or a package name written with spaces around it.

A blank name matched every clickable home-screen node with no text or no content-desc (a
label compared as "" is in {"", ...}), so the env tapped whatever such node came first: an
action the model never asked for. A package name with a space or line break around it (as a
model's JSON string may end) opened nothing.
"""

from __future__ import annotations

import pytest

from core.actions import OpenApp
from tests.adb_fakes import FakeAdbDevice, fake_android_env

#: A launcher screen with a clickable node that has no label (a search bar's container, a page
#: indicator) before the labelled icon.
LAUNCHER = (
    '<?xml version="1.0"?><hierarchy rotation="0">'
    '<node index="0" text="" resource-id="" class="android.widget.FrameLayout" '
    'package="launcher" content-desc="" clickable="false" focused="false" password="false" '
    'bounds="[0,0][1080,2400]">'
    '<node index="0" text="" resource-id="launcher:search" class="android.view.View" '
    'package="launcher" content-desc="" clickable="true" focused="false" password="false" '
    'bounds="[40,100][1040,220]" />'
    '<node index="1" text="Notes" resource-id="" class="android.widget.TextView" '
    'package="launcher" content-desc="" clickable="true" focused="false" password="false" '
    'bounds="[40,400][240,600]" />'
    '</node></hierarchy>')


class LauncherDevice(FakeAdbDevice):
    def _answer(self, command: str):
        answer = super()._answer(command)
        if command.startswith("uiautomator dump"):
            answer.output = LAUNCHER
        return answer


@pytest.mark.parametrize("app", [" ", "  \t", "\n"])
def test_a_blank_app_name_taps_nothing(app):
    device = LauncherDevice(packages=("com.vlagent.notes",))
    result = fake_android_env(device).execute(OpenApp(app=app))
    assert not result.ok
    assert not [c for c in device.commands if c.startswith(("input tap", "monkey"))]


def test_the_labelled_icon_is_still_found():
    device = LauncherDevice(packages=("com.example.other",))
    assert fake_android_env(device).execute(OpenApp(app="notes")).ok
    assert [c for c in device.commands if c.startswith("input tap")] == ["input tap 140 500"]


@pytest.mark.parametrize("app", [" com.vlagent.notes", "com.vlagent.notes\n"])
def test_a_package_name_with_space_around_it_opens_that_package(app):
    device = LauncherDevice(packages=("com.vlagent.notes", "com.vlagent.contacts"))
    env = fake_android_env(device)
    assert env.resolve_app(app).package == "com.vlagent.notes"
    assert env.execute(OpenApp(app=app)).ok
    assert [c for c in device.commands if c.startswith("monkey")] == [
        "monkey -p com.vlagent.notes -c android.intent.category.LAUNCHER 1"]


#: The chooser that ``resolve-activity`` names for a package with several launcher activities:
#: AOSP's (Samsung's too), Huawei EMUI's and Lenovo ZUI's.
CHOOSERS = ["android/com.android.internal.app.ResolverActivity",
            "com.huawei.android.internal.app/.HwResolverActivity",
            "com.zui.resolver/.ResolverActivity"]


class StockPhone(FakeAdbDevice):
    """Answers ``cmd package resolve-activity`` as Android 7+ does: the launcher activity of an
    app, "No activity found" for a package without one (a content provider)."""

    def __init__(self, packages: tuple[str, ...], chooser: str = CHOOSERS[0]) -> None:
        super().__init__(packages)
        self.apps = {"com.android.settings": "com.android.settings/.Settings",
                     "com.google.android.calendar": "com.google.android.calendar/.AllInOneActivity",
                     "com.example.settings": "com.example.settings/.Main",
                     # Contacts holds the Phone's launcher activity too: the chooser answers.
                     "com.android.contacts": chooser}

    def _answer(self, command: str):
        answer = super()._answer(command)
        if command.startswith("cmd package resolve-activity"):
            package = command.split()[-1]
            answer.output = (f"priority=0 preferredOrder=0 match=0x108000 specificIndex=-1 "
                             f"isDefault=false\n{self.apps[package]}\n"
                             if package in self.apps else "No activity found\n")
        return answer


@pytest.mark.parametrize("app, package, chooser", [
    ("Settings", "com.android.settings", CHOOSERS[0]),
    ("calendar", "com.google.android.calendar", CHOOSERS[0]),
    *[("Contacts", "com.android.contacts", chooser) for chooser in CHOOSERS]])
def test_a_name_a_content_provider_shares_opens_the_app_that_has_something_to_launch(
        app, package, chooser):
    device = StockPhone(packages=("com.android.providers.settings", "com.android.settings",
                                  "com.android.providers.calendar",
                                  "com.google.android.calendar", "com.android.providers.contacts",
                                  "com.android.contacts"), chooser=chooser)
    env = fake_android_env(device)
    assert env.resolve_app(app).package == package
    assert env.execute(OpenApp(app=app)).ok
    assert [c for c in device.commands if c.startswith("monkey")] == [
        f"monkey -p {package} -c android.intent.category.LAUNCHER 1"]


def test_two_launchable_apps_of_one_name_open_neither():
    device = StockPhone(packages=("com.android.providers.settings", "com.android.settings",
                                  "com.example.settings"))
    result = fake_android_env(device).execute(OpenApp(app="Settings"))
    assert not result.ok and "several installed packages could be 'Settings'" in result.message
    assert not [c for c in device.commands if c.startswith(("monkey", "input tap"))]
