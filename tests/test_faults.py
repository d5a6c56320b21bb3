"""Faults: each ends the episode with a clean status and a reason, the trajectory stays readable,
and every step recorded before the fault is still there. Transient faults (an adb server that
restarts, a model endpoint that answers 500, times out or drops the connection) are retried with
backoff and the episode goes on. Killing a run leaves no process behind."""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable

import pytest

from actions.dialects import get_dialect
from agent.backends.base import Completion
from agent.backends.openai import OpenAIBackend
from agent.loop import Agent, AgentConfig, EpisodeResult
from agent.policies.backend import BackendPolicy
from envs.base import Env
from tests.agent_fakes import FakePhone, ListPolicy
from tests.conftest import require_tool
from tests.probes import wait_until
from tests.proc_table import command, descendants, processes
from tests.serve_fakes import EchoEngine
from trajectories.reader import Trajectory, load
from trajectories.recorder import Recorder

REPO = Path(__file__).resolve().parent.parent
TAP = '*FUNCTION*: Tap *ARGS*: {"point": (500, 500)}'
CLICK = "Action: click(start_box='(500,500)')"
DONE = '*FUNCTION*: Terminate *ARGS*: {"status": "success"}'


def run_episode(env: Env, policy, directory: Path, dialect: str = "qwen2vl",
                max_steps: int = 10) -> tuple[EpisodeResult, Trajectory]:
    agent = Agent(env, policy, get_dialect(dialect, env.form_factor),
                  config=AgentConfig(max_steps=max_steps), recorder=Recorder(directory))
    result = agent.run("Tap the thing")
    trajectory = load(directory)
    assert trajectory.meta.status == result.status and trajectory.meta.reason == result.reason
    assert len(trajectory.steps) == result.steps
    for step in trajectory.steps:
        assert (directory / step.image).is_file()
    return result, trajectory


def at_step(n: int, fault: Callable[[], None], *replies: str) -> Callable:
    """A policy's replies: ``replies`` in turn (the last one again and again), and ``fault()``
    first at step ``n``."""
    def respond(request):
        if request.step == n:
            fault()
        return replies[min(request.step, len(replies) - 1)]
    return respond


# -- the device ---------------------------------------------------------------------------------
@pytest.fixture
def phone_and_adb():
    require_tool("adb")
    require_tool("chromium")
    from envs.virtual_phone.adb_host import connected_phone

    with connected_phone() as pair:
        yield pair


def test_an_adb_server_restart_is_retried_and_the_episode_goes_on(phone_and_adb, tmp_path):
    from envs.android import AndroidEnv

    phone, adb = phone_and_adb
    first = adb.process.pid
    finished = threading.Event()

    def restart() -> None:
        # Down now; back (with the phone attached again) a second later, while the env retries.
        adb.process.kill()
        adb.process.wait()

        def back() -> None:
            time.sleep(1.0)
            adb.start()
            adb.connect(phone.serial)
            finished.wait()  # the server dies with the thread that started it (PDEATHSIG)
        threading.Thread(target=back, daemon=True).start()

    with AndroidEnv(serial=phone.serial, adb_port=adb.port) as env:
        try:
            result, trajectory = run_episode(
                env, ListPolicy(at_step(1, restart, TAP, TAP, TAP, DONE)), tmp_path / "t")
        finally:
            finished.set()
    assert adb.process.pid != first
    assert (result.status, result.steps) == ("success", 4), result.reason
    assert all(step.result.ok for step in trajectory.steps[:3]), trajectory.steps[1].result


def test_a_device_that_goes_away_ends_the_episode_with_a_reason(phone_and_adb, tmp_path):
    from envs.android import AndroidEnv

    phone, adb = phone_and_adb
    with AndroidEnv(serial=phone.serial, adb_port=adb.port, timeout_s=5) as env:
        started = time.monotonic()
        result, trajectory = run_episode(env, ListPolicy(at_step(2, phone.stop, TAP)),
                                         tmp_path / "t")
    assert result.status == "error" and "not reachable" in result.reason
    assert time.monotonic() - started < 120
    # Steps 0 and 1 ran; step 2's tap failed (the model was told), then the screen was gone.
    assert [s.result.ok for s in trajectory.steps] == [True, True, False]


# -- the browser and the desktop ---------------------------------------------------------------
def test_a_killed_browser_ends_the_episode_with_a_reason(tmp_path):
    require_tool("chromium")
    from envs.browser import BrowserEnv

    def kill_chromium() -> None:
        browsers = [p for p in descendants(os.getpid()) if "--type=" not in command(p)
                    and "chrom" in command(p)]
        assert browsers, "no chromium process found"
        for pid in browsers:
            os.kill(pid, signal.SIGKILL)

    with BrowserEnv(viewport=(640, 480)) as env:
        result, trajectory = run_episode(env, ListPolicy(at_step(2, kill_chromium, CLICK)),
                                         tmp_path / "t", dialect="uitars")
    assert result.status == "error" and "browser" in result.reason, result.reason
    assert 2 <= len(trajectory.steps) <= 3 and all(s.result.ok for s in trajectory.steps[:2])


def test_a_page_that_stops_responding_ends_the_episode_with_a_reason(tmp_path):
    require_tool("chromium")
    from envs.browser import BrowserEnv

    frozen = "data:text/html,<button style='width:100vw;height:100vh' onclick='while(1){}'>x"
    with BrowserEnv(viewport=(640, 480), start_url=frozen, hang_s=3) as env:
        result, trajectory = run_episode(env, ListPolicy([CLICK, CLICK]), tmp_path / "t",
                                         dialect="uitars")
    assert result.status == "error" and "did not respond for 3 s" in result.reason, result.reason
    # The click failed (the model was told), then the page could not be observed.
    assert [s.result.ok for s in trajectory.steps] == [False]
    assert "did not respond" in trajectory.steps[0].result.message


def test_xvfb_dying_ends_the_desktop_run_with_a_reason(tmp_path):
    for tool in ("xvfb", "xdotool"):
        require_tool(tool)
    replies = tmp_path / "replies.jsonl"
    replies.write_text("".join(json.dumps({"response": r}) + "\n"
                               for r in (CLICK, *["Action: wait()"] * 3)))
    process = subprocess.Popen(
        [sys.executable, str(REPO / "agent_cli.py"), "run", "Click", "--env", "desktop",
         "--display", "new", "--dialect", "uitars", "--model", f"replay:{replies}",
         "--out", str(tmp_path / "runs")],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True)
    steps = lambda: [p for p in (tmp_path / "runs").glob("*/steps.jsonl")  # noqa: E731
                     if p.read_text().count("\n") >= 2]
    (steps_file,) = wait_until(steps, timeout_s=120, what="the run's second step")
    (xvfb,) = [p for p in descendants(process.pid)
               if Path(command(p).split(" ")[0]).name == "Xvfb"]
    os.kill(xvfb, signal.SIGKILL)  # during the second step's wait
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 1, output
    trajectory = load(steps_file.parent)
    assert trajectory.meta.status == "error" and "desktop" in trajectory.meta.reason, output
    assert 2 <= len(trajectory.steps) <= 3  # killed in step 2's observation or its wait
    assert "Traceback" not in output, output


def test_a_pointer_parked_in_a_corner_stops_the_desktop_run_as_ctrl_c_does(tmp_path,
                                                                          monkeypatch):
    """pyautogui's fail-safe, a person's emergency brake, escaped the loop as a traceback."""
    for tool in ("xvfb", "xdotool"):
        require_tool(tool)
    from envs.desktop import DesktopEnv
    from envs.xvfb import Xvfb

    for key in ("DISPLAY", "XAUTHORITY"):  # the env points this process at its display
        monkeypatch.setenv(key, os.environ.get(key, ""))
    with Xvfb(640, 480) as xvfb, DesktopEnv(display=xvfb.display,
                                            xauthority=xvfb.xauthority) as env:
        def park() -> None:
            subprocess.run(["xdotool", "mousemove", "0", "0"], env={**os.environ, **xvfb.env},
                           check=True)

        result, trajectory = run_episode(env, ListPolicy(at_step(2, park, CLICK)),
                                         tmp_path / "t", dialect="uitars")
    assert result.status == "interrupted" and "fail-safe" in result.reason, result.reason
    assert result.steps == 2 and all(step.result.ok for step in trajectory.steps)


# -- the model endpoint ----------------------------------------------------------------------------
class ScriptedEndpoint(http.server.ThreadingHTTPServer):
    """An OpenAI-style endpoint that answers each request as its script says: ``500``, ``close``
    (drop the connection without an answer), ``slow`` (answer after the client gave up), or the
    reply text."""

    def __init__(self, script: list[str]) -> None:
        self.script = script
        self.requests = 0
        super().__init__(("127.0.0.1", 0), _EndpointHandler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


class _EndpointHandler(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        self.rfile.read(int(self.headers["Content-Length"]))
        server: ScriptedEndpoint = self.server  # type: ignore[assignment]
        server.requests += 1
        what = server.script.pop(0) if server.script else "500"
        if what == "close":
            self.close_connection = True
            return
        if what == "slow":
            time.sleep(1.5)
            what = TAP
        status, body = (500, {"error": {"message": "boom"}}) if what == "500" else \
            (200, {"choices": [{"message": {"content": what}}]})
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


def endpoint_policy(endpoint: ScriptedEndpoint, retries: int = 4) -> BackendPolicy:
    return BackendPolicy(OpenAIBackend(endpoint.url, "m", timeout_s=0.5, retries=retries,
                                       backoff_s=0.05))


def test_a_failing_model_endpoint_is_retried_and_the_episode_goes_on(tmp_path):
    endpoint = ScriptedEndpoint(["500", "close", TAP, "slow", TAP, "500", "500", DONE])
    try:
        result, trajectory = run_episode(FakePhone(), endpoint_policy(endpoint), tmp_path / "t")
    finally:
        endpoint.shutdown()
    assert (result.status, result.steps) == ("success", 3), result.reason
    assert [s.action["kind"] for s in trajectory.steps] == ["tap", "tap", "terminate"]
    assert endpoint.requests == 8


@pytest.mark.parametrize("fault", ["500", "stopped"])
def test_a_model_endpoint_that_keeps_failing_ends_the_episode(fault, tmp_path):
    endpoint = ScriptedEndpoint([TAP, TAP])

    def stop() -> None:
        endpoint.shutdown()
        endpoint.server_close()

    policy = endpoint_policy(endpoint, retries=2)
    respond = policy.respond

    def responding(request):
        if request.step == 2 and fault == "stopped":
            stop()
        return respond(request)

    policy.respond = responding  # type: ignore[method-assign]
    try:
        result, trajectory = run_episode(FakePhone(), policy, tmp_path / "t")
    finally:
        if fault == "500":
            stop()
    assert result.status == "error" and "failed 3 time(s)" in result.reason, result.reason
    assert ("HTTP 500" if fault == "500" else "ConnectError") in result.reason
    assert [s.action["kind"] for s in trajectory.steps] == ["tap", "tap"]


class TapEngine(EchoEngine):
    """``serve``'s engine for these tests: every answer is a tap; the ``slow``-th batch takes
    longer than the client waits."""

    def __init__(self, slow: int) -> None:
        super().__init__()
        self.slow, self.calls = slow, 0

    def generate_batch(self, batch, on_text=None, gone=None):  # streams nothing: serve sends all at the end
        self.calls += 1
        if self.calls == self.slow:
            time.sleep(0.8)
        return [Completion(TAP, job.prompt_tokens, 3) for job in batch]


def test_our_own_serve_slowed_then_stopped(tmp_path):
    from runtime.server.app import ServerSettings, create_app, running_server

    engine = TapEngine(slow=2)
    server = contextlib.ExitStack()
    url = server.enter_context(running_server(create_app(engine, ServerSettings(model_id="m"))))
    policy = BackendPolicy(OpenAIBackend(url, "m", timeout_s=0.5, retries=3, backoff_s=0.2))
    respond = policy.respond

    def responding(request):
        if request.step == 3:
            server.close()  # serve stops between two steps
        return respond(request)

    policy.respond = responding  # type: ignore[method-assign]
    try:
        result, trajectory = run_episode(FakePhone(), policy, tmp_path / "t")
    finally:
        server.close()
    # Step 1's answer came too late: asked again, it came; step 3 found no server.
    assert engine.calls >= 4
    assert result.status == "error" and "ConnectError" in result.reason, result.reason
    assert [s.action["kind"] for s in trajectory.steps] == ["tap", "tap", "tap"]


# -- the disk -------------------------------------------------------------------------------------
@pytest.fixture
def small_disk(tmp_path):
    """A folder that fills up: a 256 KiB tmpfs as root, else a folder made read-only later (root
    writes there anyway), else (root where no tmpfs can be mounted) a file size limit that makes
    writes fail as on a full disk."""
    import resource

    folder = tmp_path / "disk"
    folder.mkdir()
    if os.geteuid() != 0:
        yield folder, lambda: (folder / "t" / "images").chmod(0o500)
        return
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(folder)],
                             capture_output=True, text=True)
    if mounted.returncode == 0:
        try:
            yield folder, lambda: None  # the screenshots fill it
        finally:
            subprocess.run(["umount", "-l", str(folder)], check=False)
        return
    limits = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write fails instead (EFBIG)
    try:
        yield folder, lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (4096, limits[1]))
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, limits)
        signal.signal(signal.SIGXFSZ, handler)


def test_a_full_disk_ends_the_episode_and_keeps_what_was_written(small_disk):
    folder, fill = small_disk
    result, trajectory = run_episode(FakePhone(), ListPolicy(at_step(3, fill, TAP)),
                                     folder / "t", max_steps=1000)
    assert result.status == "error" and "could not be written" in result.reason, result.reason
    assert result.steps >= 3 and trajectory.meta.status == "error"  # run_episode: as on disk


# -- killing the run ------------------------------------------------------------------------------
def _group(pgid: int) -> list[int]:
    return [pid for pid, fields in processes().items() if int(fields[2]) == pgid]


def _start_phone_run(tmp_path: Path) -> tuple[subprocess.Popen, Path, int]:
    """A CLI run on a new virtual phone, in its own process group, stuck in a long wait at its
    second step; returns the process, its trajectory folder and its adb server's port."""
    require_tool("adb")
    require_tool("chromium")
    replies = tmp_path / "replies.jsonl"
    wait = '*FUNCTION*: Wait *ARGS*: {"seconds": 60}'
    replies.write_text("".join(json.dumps({"response": r}) + "\n" for r in (TAP, wait, DONE)))
    log = open(tmp_path / "out.log", "w")
    process = subprocess.Popen(
        [sys.executable, str(REPO / "agent_cli.py"), "run", "Wait", "--env", "android",
         "--device", "virtual", "--dialect", "qwen2vl", "--model", f"replay:{replies}",
         "--out", str(tmp_path / "runs")],
        cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    steps = lambda: [p for p in (tmp_path / "runs").glob("*/steps.jsonl")  # noqa: E731
                     if p.read_text().count("\n") >= 1]
    (steps_file,) = wait_until(steps, timeout_s=180, what="the run's first step")
    time.sleep(1.0)  # into the second step's wait
    port = int((tmp_path / "out.log").read_text().split("adb server on port ")[1].split(")")[0])
    return process, steps_file.parent, port


def _adb_servers(port: int) -> list[int]:
    """adb servers on ``port``: ours (``-P PORT nodaemon server``) or a daemon (``tcp:PORT``)."""
    return [pid for pid in processes() if "server" in (line := command(pid))
            and (f"-P {port} " in line or f"tcp:{port} " in line)]


def test_sigkill_of_the_run_leaves_no_adb_server_and_no_process_of_its_group(tmp_path):
    process, directory, port = _start_phone_run(tmp_path)
    assert len(_adb_servers(port)) == 1
    try:
        os.kill(process.pid, signal.SIGKILL)  # the run alone: no cleanup of its own runs
        process.wait(10)
        wait_until(lambda: not _adb_servers(port), timeout_s=10, what="the adb server to exit")
        # The rest of what it started (the phone's browser and its driver) ends by itself.
        wait_until(lambda: not _group(process.pid), timeout_s=30, what="the group to be gone")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    trajectory = load(directory)  # what was recorded before the kill is readable
    assert trajectory.meta.status == "running" and len(trajectory.steps) == 1


def test_sigterm_mid_step_finishes_the_trajectory_and_leaves_nothing(tmp_path):
    process, directory, port = _start_phone_run(tmp_path)
    process.terminate()
    assert process.wait(60) == 128 + signal.SIGTERM  # as a shell reports it, not Ctrl-C's 130
    trajectory = load(directory)
    assert trajectory.meta.status == "interrupted"
    assert trajectory.meta.reason == "stopped by SIGTERM" and trajectory.meta.finished_at
    assert len(trajectory.steps) >= 1
    wait_until(lambda: not _group(process.pid), timeout_s=20, what="the group to be gone")
    assert not _adb_servers(port)
