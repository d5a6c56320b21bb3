"""`parse` refuses a resize budget whose lower bound is above its upper one, as `run` does: the
resized screenshot it would map a Qwen2.5-VL reply's pixels from means nothing."""

from __future__ import annotations

import subprocess

from tests.test_agent_cli import CLI

CLICK = ('<tool_call>{"name": "mobile_use", "arguments": {"action": "click", '
         '"coordinate": [5, 5]}}</tool_call>')


def parse(tmp_path, *budget: str) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, "parse", "-d", "qwen25vl", "-f", "phone", "--screen",
                           "1080x2400", *budget],
                          input=CLICK, capture_output=True, text=True, cwd=tmp_path, timeout=60)


def test_min_pixels_above_max_pixels_is_a_usage_error(tmp_path):
    done = parse(tmp_path, "--min-pixels", "5000", "--max-pixels", "4000")
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stdout == ""  # no action printed
    assert "Traceback" not in done.stderr
    assert "--min-pixels 5000 is above --max-pixels 4000" in " ".join(done.stderr.split())


def test_a_budget_in_order_still_parses(tmp_path):
    done = parse(tmp_path, "--min-pixels", "3136", "--max-pixels", "4000000")
    assert done.returncode == 0, done.stderr
    assert '"kind":"tap"' in done.stdout
