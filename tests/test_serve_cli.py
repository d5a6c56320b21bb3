"""``agent_cli.py serve`` as users start it: loopback by default, the key from the environment."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def listening_addresses(port: int) -> set[str]:
    """The local addresses of the sockets listening on ``port``, as Linux's /proc/net/tcp and
    tcp6 list them (hex, in the host's byte order, each 32-bit word of an IPv6 address too)."""
    found = set()
    for table, family in (("/proc/net/tcp", socket.AF_INET), ("/proc/net/tcp6", socket.AF_INET6)):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            host, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                raw = bytes.fromhex(host)
                words = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
                found.add(socket.inet_ntop(family, words))
    return found


def test_serve_binds_loopback_and_requires_the_key_from_the_environment(tiny_checkpoint):
    port = free_port()
    env = {**os.environ, "VLAGENT_API_KEY": "from-env"}
    server = subprocess.Popen(
        [sys.executable, "agent_cli.py", "serve", str(tiny_checkpoint), "--port", str(port),
         "--device", "cpu", "--served-model-name", "tiny"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, server.stdout.read()
            try:
                answer = httpx.get(f"{url}/models")
                break
            except httpx.ConnectError:
                assert time.monotonic() < deadline, "serve did not start in 120 s"
                time.sleep(0.2)
        assert answer.status_code == 401
        authorized = httpx.get(f"{url}/models", headers={"authorization": "Bearer from-env"})
        assert [m["id"] for m in authorized.json()["data"]] == ["tiny"]
        # Reachable from this machine only: no other address, nor all of them (0.0.0.0).
        assert listening_addresses(port) == {"127.0.0.1"}
        # Nor from a web page whose name was pointed at this machine (DNS rebinding).
        key = {"authorization": "Bearer from-env"}
        assert httpx.get(f"{url}/models", headers={**key, "host": "localhost"}).status_code == 200
        rebound = httpx.get(f"{url}/models", headers={**key, "host": f"evil.example:{port}"})
        assert rebound.status_code == 403 and "evil.example" in rebound.json()["error"]["message"]
    finally:
        server.terminate()
        output, _ = server.communicate(timeout=30)
    assert "from-env" not in output  # the key never reaches the log


def test_serve_says_at_once_that_its_port_is_taken(tiny_checkpoint):
    """Before the model loads, not after a banner that says it serves."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run([sys.executable, "agent_cli.py", "serve", str(tiny_checkpoint),
                                 "--port", str(port), "--device", "cpu"], cwd=ROOT,
                                capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "serving" not in result.stderr and "Traceback" not in result.stderr


def test_serve_refuses_a_folder_that_is_no_checkpoint(tmp_path):
    result = subprocess.run([sys.executable, "agent_cli.py", "serve", str(tmp_path / "nope")],
                            cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 2
    assert "is not a checkpoint directory" in result.stderr


def test_serve_names_a_device_it_cannot_use(tiny_checkpoint):
    result = subprocess.run([sys.executable, "agent_cli.py", "serve", str(tiny_checkpoint),
                             "--device", "bogus"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 2
    assert "unknown device 'bogus'" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize(("host", "key", "warned"), [
    ("0.0.0.0", None, True), ("192.0.2.7", None, True), ("0.0.0.0", "a-key", False),
    ("127.0.0.1", None, False), ("localhost", None, False), ("::1", None, False)])
def test_serve_warns_when_bound_beyond_loopback_without_a_key(tiny_checkpoint, monkeypatch, host,
                                                              key, warned):
    import uvicorn
    from typer.testing import CliRunner

    import agent.backends.local
    import cli.serve_cmd
    from agent_cli import app
    from tests.serve_fakes import EchoEngine

    class Loaded(EchoEngine):  # the checkpoint is not loaded: the warning comes before the model
        def __init__(self, *args, **kwargs) -> None:
            super().__init__()

        def describe(self) -> str:
            return "a stand-in"

    class Bound:  # 192.0.2.7 is no address of this machine: nothing is bound here
        def __init__(self, host, port) -> None:
            self.address = (host, port)

        def getsockname(self):
            return self.address

    started = []
    monkeypatch.setattr(agent.backends.local, "LocalBackend", Loaded)
    monkeypatch.setattr(cli.serve_cmd, "_listening_socket", Bound)
    monkeypatch.setattr(uvicorn.Server, "run", lambda server, sockets: started.append(
        (server.config.host, server.config.port, sockets[0].address)))
    monkeypatch.delenv("VLAGENT_API_KEY", raising=False)
    result = CliRunner().invoke(
        app, ["serve", str(tiny_checkpoint), "--host", host, "--port", "8123", "--device", "cpu"],
        env={**({"VLAGENT_API_KEY": key} if key else {}), "COLUMNS": "40"})
    assert result.exit_code == 0, result.output
    assert started == [(host, 8123, (host, 8123))]  # it went on to serve either way
    assert ("reachable from other machines and no --api-key" in result.output) is warned
    # The banner's URL is on its banner's line however narrow the terminal, and a client can
    # use it (an IPv6 address in brackets).
    [banner] = [line for line in result.output.splitlines() if line.startswith("serving ")]
    url = httpx.URL(banner.split(" at ", 1)[1].split()[0])
    assert (url.host, url.port, url.path) == (host, 8123, "/v1")


@pytest.mark.parametrize("key", ["s3cret ", "cl\u00e9", "a\nb"])
def test_serve_refuses_a_key_no_client_could_send_before_loading_the_model(tiny_checkpoint,
                                                                           monkeypatch, key):
    """Every request was answered 401: a header cannot carry the key as serve compares it."""
    import uvicorn
    from typer.testing import CliRunner

    import agent.backends.local
    from agent_cli import app

    loaded = []
    monkeypatch.setattr(agent.backends.local, "LocalBackend",
                        lambda *args, **kwargs: loaded.append(args))
    monkeypatch.setattr(uvicorn.Server, "run", lambda server, sockets: loaded.append(sockets))
    result = CliRunner().invoke(app, ["serve", str(tiny_checkpoint), "--port", "0",
                                      "--device", "cpu"], env={"VLAGENT_API_KEY": key})
    assert result.exit_code == 2, result.output
    assert "API key holds a character an HTTP header cannot carry" in result.output
    assert key.strip() not in result.output and loaded == []
