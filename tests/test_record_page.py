"""`agent_cli.py record`: a person's demonstration through the page, in real chromium.

The test records phone/write-note on the virtual phone by clicking the page's screenshot where
the task's elements are, typing the note and pressing Done; the trajectory then passes the task's
check, replays to the same outcome and exports. On the browser, a drag and the wheel become a drag
and a scroll at the right screenshot pixels.
"""

from __future__ import annotations

import os
import queue
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.conftest import chromium_tab

REPO = Path(__file__).resolve().parent.parent
CLI = [sys.executable, str(REPO / "agent_cli.py")]
TASK = "phone/write-note"


def lines_of(stream) -> queue.Queue:
    """The process's output lines, read on a thread so the test never blocks on a pipe."""
    lines: queue.Queue = queue.Queue()

    def pump() -> None:
        for line in stream:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    return lines


def page_url(lines: queue.Queue, seen: list[str]) -> str:
    while True:
        line = lines.get(timeout=60)
        assert line is not None, "record exited before serving its page:\n" + "".join(seen)
        seen.append(line)
        if match := re.search(r"record at (http://127\.0\.0\.1:\d+/)", line):
            return match.group(1)


@pytest.fixture
def browser_page():
    with chromium_tab(1200, 900) as page:
        yield page


def wait_for_step(page, step: int) -> None:
    """Until the page shows step ``step``'s screenshot and takes input."""
    page.wait_for_function(
        f"document.getElementById('screen').dataset.step === '{step}' && "
        "!document.getElementById('screen').classList.contains('busy')", timeout=30_000)


def click_screen_at(page, x: int, y: int) -> None:
    """Click the page's picture where the screenshot's pixel (x, y) is shown."""
    shown = page.evaluate("(() => { const i = document.getElementById('screen'); "
                          "const b = i.getBoundingClientRect(); "
                          "return [b.width / i.naturalWidth, b.height / i.naturalHeight]; })()")
    page.locator("#screen").click(position={"x": x * shown[0], "y": y * shown[1]})


def test_a_demonstration_through_the_page_passes_replays_and_exports(
        virtual_phone, browser_page, tmp_path):
    from envs.android import AndroidEnv
    from tasks.phone.device import find
    from tasks.registry import get_task
    from trajectories.reader import load

    phone, adb = virtual_phone
    env_vars = {**os.environ, "COLUMNS": "160", "ANDROID_ADB_SERVER_PORT": str(adb.port)}
    note = get_task(TASK, 0).params["text"]
    proc = subprocess.Popen(
        [*CLI, "record", "--env", "android", "--device", phone.serial, "--task", TASK,
         "--out", "runs"], cwd=tmp_path, env=env_vars, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    seen: list[str] = []
    try:
        lines = lines_of(proc.stdout)
        page = browser_page
        page.goto(page_url(lines, seen))
        with AndroidEnv(serial=phone.serial, adb_port=adb.port) as device:
            # The task's own elements, where the live screen shows them.
            wait_for_step(page, 0)
            page.fill("#thought", "Open the Notes app.")
            click_screen_at(page, *find(device, "launcher:notes").center)
            wait_for_step(page, 1)
            click_screen_at(page, *find(device, "notes:body").center)
            wait_for_step(page, 2)
            page.fill("#text", note)
            page.click("#type")
            wait_for_step(page, 3)
            click_screen_at(page, *find(device, "notes:save").center)
            wait_for_step(page, 4)
            page.click("#done")
        page.wait_for_function("document.getElementById('end').textContent !== ''")
        assert "Check: passed" in page.text_content("#end")
        proc.wait(timeout=60)
        seen.extend(iter(lambda: lines.get(timeout=10), None))  # the rest of its output
        output = "".join(seen)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, output
    assert "check: passed" in output, output

    (directory,) = (tmp_path / "runs").iterdir()
    trajectory = load(directory)
    assert trajectory.meta.model == "demonstration" and trajectory.meta.status == "success"
    steps = trajectory.steps
    assert [s.action["kind"] for s in steps] == ["tap", "tap", "type", "tap", "terminate"]
    assert steps[0].thought == "Open the Notes app." and steps[2].action["text"] == note
    # Written as the model writes: integer [0, 1000) coordinates in the dialect's text.
    assert re.search(r'"point": \(\d{1,3},\s*\d{1,3}\)', steps[0].response)

    replayed = subprocess.run([*CLI, "replay", str(directory), "--device", phone.serial,
                               "--out", "replays"], cwd=tmp_path, env=env_vars,
                              capture_output=True, text=True, timeout=120)
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    assert "check: passed" in replayed.stdout

    exported = subprocess.run([*CLI, "export", str(directory), "--format", "llamafactory",
                               "--out", "sft.json"], cwd=tmp_path, env=env_vars,
                              capture_output=True, text=True, timeout=120)
    assert exported.returncode == 0, exported.stdout + exported.stderr
    assert "from 1 episode(s)" in exported.stdout and (tmp_path / "sft.json").is_file()


def test_on_the_browser_a_drag_is_a_drag_and_the_wheel_a_scroll(browser_page, tmp_path):
    from trajectories.reader import load

    page_html = "data:text/html,<div style='height:3000px'>tall</div>"
    proc = subprocess.Popen(
        [*CLI, "record", "Scroll down", "--env", "browser", "--url", page_html,
         "--dialect", "qwen25vl", "--out", "runs"], cwd=tmp_path, text=True,
        env={**os.environ, "COLUMNS": "160"}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    seen: list[str] = []
    try:
        lines = lines_of(proc.stdout)
        page = browser_page
        page.goto(page_url(lines, seen))
        wait_for_step(page, 0)
        assert page.is_hidden("#home")  # a browser has no home action
        box = page.locator("#screen").bounding_box()
        page.mouse.move(box["x"] + 100, box["y"] + 100)
        page.mouse.down()
        page.mouse.move(box["x"] + 300, box["y"] + 150, steps=4)
        page.mouse.up()
        wait_for_step(page, 1)
        page.mouse.move(box["x"] + 200, box["y"] + 200)
        page.mouse.wheel(0, 200)
        wait_for_step(page, 2)
        page.click("#done")
        proc.wait(timeout=60)
        seen.extend(iter(lambda: lines.get(timeout=10), None))
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, "".join(seen)
    (directory,) = (tmp_path / "runs").iterdir()
    steps = load(directory).steps
    assert [s.action["kind"] for s in steps] == ["drag", "scroll", "terminate"]
    scale = 1280 / box["width"]  # screenshot pixels per page pixel
    drag, scroll = steps[0].action, steps[1].action
    assert abs(drag["x"] - 100 * scale) <= 3 and abs(drag["x2"] - 300 * scale) <= 3
    assert abs(drag["y"] - 100 * scale) <= 3 and abs(drag["y2"] - 150 * scale) <= 3
    assert scroll["direction"] == "down" and abs(scroll["amount"] - 200 * scale) <= 3
    assert steps[1].result.ok


def test_the_page_api_answers_only_this_machine_and_json():
    import threading

    import httpx

    from agent.policies.demonstration import DemonstrationPolicy
    from runtime.record import record_app
    from runtime.server.app import running_server

    with running_server(record_app(DemonstrationPolicy(), threading.Event())) as base:
        root = base.removesuffix("/v1")
        state = httpx.get(root + "/state")
        assert state.status_code == 200 and state.json()["step"] == -1
        assert "<img id=\"screen\"" in httpx.get(root + "/").text
        # A site whose DNS name was rebound to 127.0.0.1 is refused.
        assert httpx.get(root + "/state", headers={"Host": "evil.example"}).status_code == 400
        # A cross-site form post (not JSON) is no action.
        form = httpx.post(root + "/action", content='{"action": {"kind": "home"}}',
                          headers={"Content-Type": "text/plain"})
        assert form.status_code == 415 and "application/json" in form.json()["error"]
        early = httpx.post(root + "/action", json={"action": {"kind": "home"}})
        assert early.status_code == 400 and "busy" in early.json()["error"]
        shouted = httpx.post(root + "/action", content='{"action": {"kind": "home"}}',
                             headers={"Content-Type": "Application/JSON; charset=UTF-8"})
        assert shouted.status_code == 400 and "busy" in shouted.json()["error"]  # not a 415
        # Another site's page (its fetch names its origin) is refused whatever it sends; the
        # page's own origin reaches the policy.
        evil = httpx.post(root + "/action", json={"action": {"kind": "home"}},
                          headers={"Origin": "https://evil.example"})
        assert evil.status_code == 403 and "evil.example" in evil.json()["error"]
        own = httpx.post(root + "/action", json={"action": {"kind": "home"}},
                         headers={"Origin": root})
        assert own.status_code == 400 and "busy" in own.json()["error"]
