"""A resume of a bench whose model changed on disk since the run started (a checkpoint retrained
in place, a replay file edited) is refused: its results would mix two models under one name."""

from __future__ import annotations

import json
import shutil

import pytest
from typer.testing import CliRunner

import cli.bench_cmd
from cli.app import app
from runtime.bench.fingerprint import SAMPLE_BYTES, model_fingerprint
from runtime.bench.plan import BenchSettings
from runtime.bench.runner import SETTINGS_FILE
from tests import bench_fakes

DONE = '*FUNCTION*: Terminate *ARGS*: {"status": "success"}'


def bench(model: str, out) -> object:
    return CliRunner().invoke(app, ["bench", "--suite", "fake", "--tasks", "fake/type-word",
                                    "--model", model, "--out", str(out)],
                              env={"COLUMNS": "160"})


def test_a_resume_with_an_edited_replay_file_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(cli.bench_cmd, "default_runner", lambda: bench_fakes.RIGHT)
    replies = tmp_path / "replies.jsonl"
    replies.write_text(json.dumps({"response": DONE}) + "\n")
    model = f"replay:{replies}"
    first = bench(model, tmp_path / "run")
    assert first.exit_code == 0, first.output
    again = bench(model, tmp_path / "run")  # the same file: a resume with nothing left to do
    assert again.exit_code == 0, again.output
    replies.write_text(json.dumps({"response": DONE.replace("success", "failure")}) + "\n")
    changed = bench(model, tmp_path / "run")
    assert changed.exit_code != 0
    assert "whose files have changed since it started" in " ".join(changed.output.split())
    # A run stored before fingerprints were kept resumes as before.
    stored = tmp_path / "run" / SETTINGS_FILE
    settings = json.loads(stored.read_text())
    stored.write_text(json.dumps({k: v for k, v in settings.items()
                                  if k != "model_fingerprint"}))
    assert BenchSettings.model_validate_json(stored.read_text()).model_fingerprint is None
    assert bench(model, tmp_path / "run").exit_code == 0


def test_a_checkpoints_fingerprint_follows_its_weights_and_configs_only(tiny_checkpoint,
                                                                        tmp_path):
    folder = shutil.copytree(tiny_checkpoint, tmp_path / "ckpt")
    before = model_fingerprint(str(folder))
    assert before is not None and model_fingerprint("scripted") is None
    (folder / "README.md").write_text("notes on the training run")
    assert model_fingerprint(str(folder)) == before
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "rms_norm_eps": 1e-5}))
    assert model_fingerprint(str(folder)) != before


@pytest.mark.parametrize("where", ["start", "end"])
def test_a_large_weights_file_is_told_apart_by_its_ends(tmp_path, where):
    """Retraining changes every tensor, its first and last ones too: a large file is read at
    both ends only, not hashed whole at each resume."""
    folder = tmp_path / "ckpt"
    folder.mkdir()
    weights = bytearray(b"\x01" * (4 * SAMPLE_BYTES))
    (folder / "model.safetensors").write_bytes(weights)
    before = model_fingerprint(str(folder))
    at = {"start": 10, "end": len(weights) - 10}[where]
    weights[at] = 2
    (folder / "model.safetensors").write_bytes(weights)
    assert model_fingerprint(str(folder)) != before


def test_shards_of_two_models_are_not_merged_behind_one_whose_model_is_unknown(tmp_path,
                                                                              monkeypatch):
    """A shard stored before fingerprints were kept matches any model, but the two shards
    after it are still compared with each other."""
    monkeypatch.setattr(cli.bench_cmd, "default_runner", lambda: bench_fakes.RIGHT)
    replies = tmp_path / "replies.jsonl"
    common = ["bench", "--suite", "fake", "--tasks", "fake/type-word", "--episodes", "3",
              "--model", f"replay:{replies}"]

    def shard(i: int) -> None:
        done = CliRunner().invoke(app, [*common, "--shard", f"{i}/3", "--out",
                                        str(tmp_path / f"s{i}")], env={"COLUMNS": "160"})
        assert done.exit_code == 0, done.output

    replies.write_text(json.dumps({"response": DONE}) + "\n")
    shard(1)
    shard(2)
    replies.write_text(json.dumps({"response": DONE.replace("success", "failure")}) + "\n")
    shard(3)
    stored = tmp_path / "s1" / SETTINGS_FILE
    settings = json.loads(stored.read_text())
    stored.write_text(json.dumps({k: v for k, v in settings.items() if k != "model_fingerprint"}))
    merged = CliRunner().invoke(app, ["bench", *[a for i in (1, 2, 3) for a in
                                                 ("--merge", str(tmp_path / f"s{i}"))],
                                      "--out", str(tmp_path / "all")], env={"COLUMNS": "160"})
    assert merged.exit_code != 0
    said = " ".join(merged.output.split())
    assert "s3 ran its episodes with other settings than" in said and "model_fingerprint" in said
    assert not (tmp_path / "all" / "results.jsonl").exists()
