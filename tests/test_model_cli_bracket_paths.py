"""`model tiny` and `model info` print a checkpoint folder's name as written: square brackets in
it (``ckpt[v2]``, ``runs/[/old]``) are no rich markup, which would hide them or end in a
MarkupError traceback."""

from __future__ import annotations

import shutil

from tests.test_agent_cli import cli


def test_model_info_shows_a_folder_with_brackets_as_written(tmp_path, tiny_checkpoint):
    for name in ("ckpt[/old]", "ckpt[red]"):
        folder = shutil.copytree(tiny_checkpoint, tmp_path / name)
        done = cli("model", "info", str(folder), cwd=tmp_path, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "Traceback" not in done.stderr
        assert name in done.stdout


def test_model_tiny_names_a_folder_with_brackets_as_written(tmp_path):
    folder = tmp_path / "tiny[/x]"
    done = cli("model", "tiny", str(folder), cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert f"checkpoint in {folder}:" in done.stdout
    assert (folder / "config.json").is_file()
