"""``python agent_cli.py parse``: stdin to action JSON, exit status 2 on a parse error."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "agent_cli.py"), "parse", *args],
        input=stdin, capture_output=True, text=True, cwd=ROOT, timeout=60,
    )


def test_prints_the_action_in_screen_pixels():
    out = cli("--dialect", "qwen2vl", "--screen", "1080x2400",
              stdin='Open it.\n*FUNCTION*: Tap *ARGS*: {"point": (348,291)}\n')
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("\n") == 1  # one JSON object on one line
    assert json.loads(out.stdout) == {"kind": "tap", "x": 376, "y": 698}


def test_qwen25vl_uses_the_resize_budget():
    reply = '<tool_call>\n{"name": "mobile_use", "arguments": {"action": "click", ' \
            '"coordinate": [336, 742]}}\n</tool_call>'
    # 1080x2400 at max_pixels 1,003,520 is resized to 672x1484: (336, 742) is the centre.
    out = cli("-d", "qwen25vl", "--screen", "1080x2400", "--max-pixels", "1003520", stdin=reply)
    assert json.loads(out.stdout) == {"kind": "tap", "x": 540, "y": 1200}
    # At the default budget (1092x2408) the same numbers mean another point.
    out = cli("-d", "qwen25vl", "--screen", "1080x2400", stdin=reply)
    assert json.loads(out.stdout) == {"kind": "tap", "x": 332, "y": 740}


def test_uitars_form_factor_chooses_tap_or_click():
    reply = "Thought: open it\nAction: click(start_box='(500,500)')"
    phone = cli("-d", "uitars", "--screen", "1080x2400", "--form-factor", "phone", stdin=reply)
    desktop = cli("-d", "uitars", "--screen", "1080x2400", stdin=reply)
    assert json.loads(phone.stdout) == {"kind": "tap", "x": 540, "y": 1200}
    assert json.loads(desktop.stdout) == {"kind": "click", "x": 540, "y": 1200}


def test_parse_error_exits_2_with_the_message_on_stderr():
    out = cli("-d", "uitars", "--screen", "1920x1080",
              stdin="Thought: x\nAction: click(start_box='(1200,5)')")
    assert out.returncode == 2
    assert out.stdout == ""
    assert "outside the screen" in out.stderr and "Expected" in out.stderr


def test_empty_stdin_is_a_parse_error():
    out = cli("-d", "qwen25vl", "--screen", "1080x2400", stdin="")
    assert out.returncode == 2 and "empty" in out.stderr


def test_bad_options_are_usage_errors():
    for args in (["--screen", "1080by2400"], ["--screen", "0x5"], [], ["-d", "gpt", "-s", "5x5"],
                 ["-s", "5x5", "-f", "watch"], ["-s", "1080x2400", "--kinds", "tap,fly"]):
        out = cli(*args, stdin="*FUNCTION*: Home")
        assert out.returncode == 2, args
        assert "Traceback" not in out.stderr
    assert "unknown kind 'fly'" in out.stderr


def test_list_dialects():
    out = cli("--list-dialects")
    assert out.returncode == 0
    lines = dict(line.split("\t") for line in out.stdout.splitlines())
    assert list(lines) == ["qwen2vl", "qwen25vl", "uitars", "uitars15"]
    # Each line describes its own dialect: UI-TARS-1.5's points are not in [0, 1000).
    assert "[0, 1000)" in lines["uitars"] and "[0, 1000)" not in lines["uitars15"]


def test_prompt_prints_the_system_prompt():
    out = cli("-d", "qwen2vl", "--prompt", "-f", "phone", "--kinds", "tap,type")
    assert out.returncode == 0
    assert "### Tap" in out.stdout and "### Type" in out.stdout and "### Click" not in out.stdout
    # A kind the device does not have would be left out of the prompt, or listed where no run
    # lists it: refused, naming the kinds there are.
    for device, kinds, missing in (("computer", "tap,type", "tap"),
                                   ("phone", "click,navigate", "click")):
        refused = cli("-d", "qwen2vl", "--prompt", "-f", device, "--kinds", kinds)
        assert refused.returncode == 2 and f"has no '{missing}'" in refused.stderr
    uitars = cli("-d", "uitars", "--prompt", "-f", "computer", "--kinds", "tap")
    assert uitars.returncode == 2 and "has no 'tap'" in uitars.stderr
    out = cli("-d", "qwen25vl", "--prompt", "-f", "phone", "--kinds", "tap,type",
              "--screen", "1080x2400")
    assert "The screen's resolution is 1092x2408." in out.stdout


WRAPPER = """
import io, json, runpy, sys
sys.argv = ["agent_cli.py", "parse", "--dialect", "qwen2vl", "--screen", "1080x2400"]
sys.stdin = io.StringIO('*FUNCTION*: Tap *ARGS*: {"point": (348,291)}')
code = 0
try:
    runpy.run_path("agent_cli.py", run_name="__main__")
except SystemExit as exc:
    code = exc.code or 0
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "playwright", "transformers"))
sys.stderr.write(json.dumps({"code": code, "heavy": heavy}) + "\\n")
"""


def test_parse_imports_neither_torch_nor_playwright():
    out = subprocess.run([sys.executable, "-c", WRAPPER], capture_output=True, text=True,
                         cwd=ROOT, timeout=60)
    report = json.loads(out.stderr.strip().splitlines()[-1])
    assert report == {"code": 0, "heavy": []}
    assert json.loads(out.stdout) == {"kind": "tap", "x": 376, "y": 698}
