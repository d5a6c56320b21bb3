"""`model generate` says what it is doing while it loads the weights and while it generates (a 7B
checkpoint takes minutes on a CPU): a spinner on a terminal's stderr, nothing on a pipe."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import time

from tests.test_agent_cli import CLI

ARGS = ["-p", "hi", "--max-new-tokens", "4", "--device", "cpu"]


def on_a_terminal(args: list[str], cwd, timeout: float = 120) -> tuple[int, str]:
    """Run the CLI with stdout and stderr on a pseudo-terminal; its exit status and output."""
    main, sub = pty.openpty()
    proc = subprocess.Popen(args, cwd=cwd, stdin=subprocess.DEVNULL, stdout=sub, stderr=sub,
                            env={**os.environ, "COLUMNS": "120", "TERM": "xterm"})
    os.close(sub)
    out, deadline = b"", time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([main], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(main, 65536)
            except OSError:  # the other end closed
                break
            if not chunk:
                break
            out += chunk
        elif proc.poll() is not None:
            break
    os.close(main)
    if proc.poll() is None:  # past the deadline: its output so far says where it was
        proc.kill()
        out += b"\n(killed after %d s)" % timeout
    return proc.wait(timeout=10), out.decode(errors="replace")


def test_generate_shows_what_it_is_doing_on_a_terminal(tmp_path, tiny_checkpoint):
    status, shown = on_a_terminal([*CLI, "model", "generate", str(tiny_checkpoint), *ARGS],
                                  cwd=tmp_path)
    assert status == 0, shown
    assert "loading the model" in shown and "generating" in shown, shown


def test_generate_keeps_a_pipe_free_of_the_spinner(tmp_path, tiny_checkpoint):
    done = subprocess.run([*CLI, "model", "generate", str(tiny_checkpoint), *ARGS], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "loading the model" not in done.stdout + done.stderr
    assert "new tokens" in done.stderr
