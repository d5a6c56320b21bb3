"""`record`'s page server against other sites the user has open, and against oversized bodies.

A demonstration server waits for a person's action on a real ``DemonstrationPolicy`` (a step is
pending, as in a run). Another origin must not get an action through: not by framing the page and
having the user click in it (clickjacking, in real chromium), not by a body it never finishes
sending, not by a body too large to hold. Nor does a second page showing an older screenshot
act on the screen the device has moved on to. Each refusal is prompt, says why, and leaves the
step waiting with nothing submitted.
"""

from __future__ import annotations

import socket
import threading
import time

import httpx
import pytest

from tests.conftest import chromium_tab

WIDTH, HEIGHT = 400, 300


@pytest.fixture
def waiting_server():
    """A record server whose policy waits for step 0's action (then 1's and 2's); yields (root
    URL, the replies the loop received: empty while nothing was submitted)."""
    from PIL import Image

    from actions.dialects import get_dialect
    from agent.policies.base import Episode, PolicyError, Request
    from agent.policies.demonstration import DemonstrationPolicy
    from core.geometry import Screen
    from runtime.record import record_app
    from runtime.server.app import running_server

    policy = DemonstrationPolicy()
    policy.start(Episode(goal="Press nothing", dialect=get_dialect("qwen2vl", "browser")))
    received: list[str] = []

    def loop() -> None:  # the agent loop's side: steps 0, 1, 2 ask the page in turn
        try:
            for step in range(3):
                request = Request(prompt=None, screen=Screen(WIDTH, HEIGHT), step=step,
                                  images=[Image.new("RGB", (WIDTH, HEIGHT), "white")])
                received.append(policy.respond(request).text)
        except PolicyError:
            pass  # stopped at the end of the test

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    while not policy.view().waiting:
        time.sleep(0.005)
    try:
        with running_server(record_app(policy, threading.Event())) as base:
            yield base.removesuffix("/v1"), received
    finally:
        policy.stop()
        thread.join(timeout=10)


def raw_post(root: str, headers: dict[str, str], body: bytes = b"") -> tuple[int, bytes, float]:
    """POST /action over a plain socket, sending ``body`` and no more (however much the headers
    promise); the status, the response body and the seconds it took to answer."""
    host, port = root.removeprefix("http://").rstrip("/").split(":")
    head = "".join(f"{k}: {v}\r\n" for k, v in {"Host": f"{host}:{port}", **headers}.items())
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        started = time.monotonic()
        sock.sendall(f"POST /action HTTP/1.1\r\n{head}\r\n".encode() + body)
        answer = b""
        try:
            while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                answer += chunk
        except TimeoutError:
            return 0, answer, time.monotonic() - started  # no answer within 10 s
        elapsed = time.monotonic() - started
    status = int(answer.split(b" ", 2)[1]) if answer else 0
    return status, answer.partition(b"\r\n\r\n")[2], elapsed


def test_another_origin_is_refused_before_its_body_is_read(waiting_server):
    root, received = waiting_server
    # A page on another site promises 8 GB and sends nothing: the refusal does not wait for it.
    status, body, elapsed = raw_post(root, {
        "Origin": "https://evil.example", "Content-Type": "text/plain",
        "Content-Length": str(8 << 30)})
    assert status == 403 and b"evil.example" in body and elapsed < 5
    assert received == []


def test_a_body_over_the_limit_is_refused_and_nothing_acts(waiting_server):
    root, received = waiting_server
    # Declared too large: refused from the header, before any of it is read.
    status, body, elapsed = raw_post(root, {
        "Content-Type": "application/json", "Content-Length": str(8 << 30)})
    assert status == 413 and b"limit" in body and elapsed < 5
    # Sent without a length (chunked), a valid action whose thought runs to 4 MB: refused as the
    # body passes the limit, not parsed, not acted on.
    action = b'{"action": {"kind": "click", "x": 5, "y": 5}, "thought": "' + b"a" * (4 << 20)

    def chunks():
        yield action
        yield b'"}'

    response = httpx.post(root + "/action", content=chunks(), timeout=30,
                          headers={"Content-Type": "application/json", "Origin": root})
    assert response.status_code == 413 and "limit" in response.json()["error"]
    assert received == []
    # The page's own small action still goes through afterwards.
    ok = httpx.post(root + "/action", json={"action": {"kind": "click", "x": 5, "y": 5}},
                    headers={"Origin": root})
    assert ok.status_code == 200, ok.text
    deadline = time.monotonic() + 10
    while not received and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(received) == 1 and "Click" in received[0]


def test_the_page_cannot_be_framed_by_another_site(waiting_server):
    root, received = waiting_server
    page = httpx.get(root + "/")
    assert page.headers.get("x-frame-options", "").upper() == "DENY"
    assert "frame-ancestors 'none'" in page.headers.get("content-security-policy", "")

    with chromium_tab() as tab:
        # Another site frames the record page under a button that invites a click.
        tab.set_content(f'<p>Win a prize!</p><iframe id="f" src="{root}" '
                        'style="width:900px;height:700px"></iframe>')
        tab.wait_for_timeout(1500)  # time for the frame to load and poll, if it may
        frame = tab.frame_locator("#f")
        done = frame.locator("#done")
        if done.count():  # the framed page loaded: a click in it is the clickjack
            done.click(timeout=3000)
            tab.wait_for_timeout(500)
        assert done.count() == 0, "another site's page shows the record page in a frame"
    assert received == []


def wait_for(received: list[str], count: int) -> None:
    deadline = time.monotonic() + 10
    while len(received) < count and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(received) == count


def test_an_action_on_a_screen_the_device_has_left_is_refused(waiting_server):
    root, received = waiting_server
    click = {"kind": "click", "x": 5, "y": 5}
    # Two tabs show step 0's screen; the first one's click moves the device on to step 1.
    first = httpx.post(root + "/action", json={"action": click, "step": 0}, headers={"Origin": root})
    assert first.status_code == 200, first.text
    wait_for(received, 1)
    while httpx.get(root + "/state").json()["step"] != 1:
        time.sleep(0.01)
    # The second tab still shows step 0: its click is not sent to step 1's screen.
    late = httpx.post(root + "/action", json={"action": {"kind": "click", "x": 300, "y": 200},
                                              "step": 0}, headers={"Origin": root})
    assert late.status_code == 400 and "step 1" in late.json()["error"]
    time.sleep(0.2)
    assert len(received) == 1
    # An action on the screen that is showing goes through; a script that names no step too.
    now = httpx.post(root + "/action", json={"action": click, "step": 1}, headers={"Origin": root})
    assert now.status_code == 200, now.text
    wait_for(received, 2)
    while httpx.get(root + "/state").json()["step"] != 2:
        time.sleep(0.01)
    assert httpx.post(root + "/action", json={"action": click}).status_code == 200
    wait_for(received, 3)


def test_the_server_listens_on_loopback_only(waiting_server):
    root, _ = waiting_server
    port = int(root.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=5):
        pass
    # Another address of this machine (127.0.0.2 is as local as it gets) finds nothing there.
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.2", port), timeout=5).close()
