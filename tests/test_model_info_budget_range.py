"""`model info --max-pixels N` refuses a budget below the checkpoint's min_pixels in one line (the
table showed "0 max tokens / image" beside a "1 tokens" screenshot); one in range is shown."""

from __future__ import annotations

from tests.test_agent_cli import cli


def test_a_budget_below_min_pixels_is_one_error_line(tmp_path, tiny_checkpoint):
    done = cli("model", "info", str(tiny_checkpoint), "--max-pixels", "100", cwd=tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "--max-pixels 100" in errors[0] and "3136" in errors[0]
    assert "Image token budget" not in done.stdout


def test_a_budget_in_range_is_shown(tmp_path, tiny_checkpoint):
    done = cli("model", "info", str(tiny_checkpoint), "--max-pixels", "1003520", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "672x1484 -> 1,272 tokens" in done.stdout
