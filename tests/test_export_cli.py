"""`agent_cli.py export` from the command line: filters, warnings, exit codes and --stats."""

from __future__ import annotations

import json
import os
import shutil
import signal

import pytest

from tests.test_agent_cli import cli
from tests.test_export import record, run_list


def test_export_command_filters_warns_and_counts(tmp_path, tiny_checkpoint):
    from agent.policies.local import PromptRenderer

    good = record(tmp_path / "good", "qwen2vl", PromptRenderer.from_pretrained(tiny_checkpoint))
    failed = run_list(tmp_path / "failed", ['*FUNCTION*: Terminate *ARGS*: {"status": '
                                            '"failure"}'])
    corrupt = record(tmp_path / "corrupt", "qwen2vl")
    (corrupt / "meta.json").write_text('{"goal": "x"')

    done = cli("export", str(good), str(failed), str(corrupt), "--out", "sft.jsonl", "--stats",
               cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert f"warning: left out {corrupt / 'meta.json'}" in done.stderr
    assert "Traceback" not in done.stderr
    assert "3 sample(s) from 1 episode(s)" in done.stdout
    rows = [json.loads(line) for line in (tmp_path / "sft.jsonl").read_text().splitlines()]
    images = sum(p["type"] == "image" for r in rows for m in r["messages"] for p in m["content"])
    assert "samples: 3" in done.stdout and f"images: {images} " in done.stdout
    assert "tokens per sample: min " in done.stdout

    strict = cli("export", str(good), str(corrupt), "--out", "s.jsonl", "--strict", cwd=tmp_path)
    assert strict.returncode == 2 and "meta.json" in strict.stderr
    assert len(strict.stderr.strip().splitlines()) == 1

    typo = cli("export", str(good), "--status", "sucess", "--out", "t.jsonl", cwd=tmp_path)
    assert typo.returncode == 2 and "unknown status 'sucess'" in typo.stderr

    # The folder that holds the runs, named in their place: the error says how to name them.
    parent = cli("export", str(tmp_path), "--out", "u.jsonl", cwd=tmp_path)
    assert parent.returncode == 2 and not (tmp_path / "u.jsonl").exists()
    assert f"it holds 3 trajectory folder(s): name them, as {tmp_path / '*'}" in parent.stderr
    # A bench's folder holds its episodes under trajectories/.
    bench = tmp_path / "elsewhere" / "bench-phone"
    shutil.copytree(good, bench / "trajectories" / "phone-a-s0")
    named = cli("export", str(bench), "--out", "v.jsonl", cwd=tmp_path)
    assert named.returncode == 2
    assert f"it holds 1 trajectory folder(s): name them, as {bench / 'trajectories' / '*'}" \
        in named.stderr
    nothing = cli("export", str(failed), "--out", "n.jsonl", cwd=tmp_path)
    assert nothing.returncode == 2 and "nothing to export" in nothing.stderr
    assert not (tmp_path / "n.jsonl").exists()
    every = cli("export", str(failed), "--status", "all", "--out", "a.jsonl", cwd=tmp_path)
    assert every.returncode == 0 and "1 sample(s)" in every.stdout
    # One folder named three ways is one episode: its samples were written three times.
    again = cli("export", str(good), "good/", "./good", "--out", "g.jsonl", cwd=tmp_path)
    assert again.returncode == 0 and "3 sample(s) from 1 episode(s)" in again.stdout


def test_view_and_export_never_write_over_the_trajectory_they_read(tmp_path):
    """An --out or --gif that names the trajectory's meta, steps or a screenshot is refused, and
    the trajectory stays as it was (view and export then still read it)."""
    from typer.testing import CliRunner

    from cli.app import app

    traj = record(tmp_path / "traj", "qwen2vl")
    own = [traj / "meta.json", traj / "steps.jsonl", traj / "images" / "step_000.png"]
    before = {path: path.read_bytes() for path in own}
    linked = tmp_path / "linked"
    linked.symlink_to(traj)  # the same files by another name
    hard = tmp_path / "steps-too.html"
    hard.hardlink_to(traj / "steps.jsonl")  # another name of the same file: view wrote into it
    for target in [*own, linked / "steps.jsonl", hard]:
        for command in (["export", str(traj), "--status", "all", "--out", str(target)],
                        ["view", str(traj), "--out", str(target)],
                        ["view", str(traj), "--out", str(tmp_path / "v.html"),
                         "--gif", str(target)]):
            done = CliRunner().invoke(app, command)  # in process: twelve commands
            assert done.exit_code == 2, (command, done.output)
            assert "is part of the trajectory in" in done.output, done.output
            assert {path: path.read_bytes() for path in own} == before, command
    # Files of its own beside the record are fine: the default view, a dataset, a GIF.
    assert cli("view", str(traj), "--gif", str(traj / "episode.gif"), cwd=tmp_path).returncode == 0
    exported = cli("export", str(traj), "--out", str(traj / "sft.jsonl"), cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr
    assert (traj / "view.html").is_file() and (traj / "episode.gif").is_file()


def test_an_out_through_a_symbolic_link_writes_the_file_its_paths_start_from(tmp_path):
    """The link was replaced by a file of its own, beside which the --relative image paths,
    made from the link's target's folder, did not resolve."""
    from trajectories.export import export

    traj = record(tmp_path / "traj", "qwen2vl")
    (tmp_path / "a" / "data").mkdir(parents=True)
    (tmp_path / "b").mkdir()
    target = tmp_path / "b" / "sft.json"
    target.write_text("[]")
    link = tmp_path / "a" / "data" / "sft.json"
    link.symlink_to(target)
    export([traj], "llamafactory", "step", link, relative=True)
    assert link.is_symlink() and link.resolve() == target
    rows = json.loads(target.read_text())
    assert rows and all((target.parent / image).is_file() for row in rows
                        for image in row["images"])


@pytest.mark.parametrize("command, module, name", [
    ("export", "trajectories.export", "export"), ("view", "trajectories.viewer", "write_view")])
def test_sigterm_while_a_file_is_written_leaves_none_half_written(tmp_path, monkeypatch,
                                                                  command, module, name):
    """``timeout``, systemd or ``docker stop`` end ``export`` (and ``view``) with SIGTERM, which
    left the half-written ``OUT.xxxx.tmp`` beside --out; Ctrl-C removed it."""
    import importlib

    from typer.testing import CliRunner

    from cli.app import app
    from core.files import replacing

    out = tmp_path / "out" / "sft.jsonl"
    out.parent.mkdir()

    def written_then_stopped(*args, **kwargs):
        with replacing(out) as f:
            f.write("{}\n")
            os.kill(os.getpid(), signal.SIGTERM)
            f.write("{}\n")

    monkeypatch.setattr(importlib.import_module(module), name, written_then_stopped)
    # Stands for SIGTERM's default action (the end of the process), which would end pytest.
    previous = signal.signal(signal.SIGTERM, lambda *_: None)
    try:
        done = CliRunner().invoke(app, [command, str(tmp_path), "--out", str(out)])
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert list(out.parent.iterdir()) == []
    assert done.exit_code == 143  # as a shell reports SIGTERM; it was Ctrl-C's 130
