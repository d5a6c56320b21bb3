"""Errors a user can cause end in one line that names what to change, never a traceback."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.test_agent_cli import cli
from tests.test_export import run_list

#: Python lists each module it imports on stderr, which one_line_error leaves aside.
IMPORTS_SHOWN = {"PYTHONPROFILEIMPORTTIME": "1"}


def assert_told_before_torch(done) -> None:
    """The error came before torch's seconds of import."""
    imported = {line.rpartition("|")[2].strip() for line in done.stderr.splitlines()
                if line.startswith("import time:")}
    assert "json" in imported and "torch" not in imported


def one_line_error(done, *needles: str) -> None:
    output = (done.stdout + done.stderr).strip()
    assert done.returncode != 0, output
    assert "Traceback" not in output, output
    lines = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, output
    for needle in needles:
        assert needle in lines[0], output


@pytest.fixture(scope="module")
def broken_checkpoints(tiny_checkpoint, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("broken")
    made = {}
    for name in ("no_tokenizer", "no_weights", "truncated", "cut_tokenizer", "bad_index",
                 "no_vocab", "bad_images", "weights_folder", "broken_link", "quantized"):
        made[name] = Path(shutil.copytree(tiny_checkpoint, root / name))
    (made["no_tokenizer"] / "tokenizer.json").unlink()
    for weights in made["no_weights"].glob("*.safetensors"):
        weights.unlink()
    for weights in made["truncated"].glob("*.safetensors"):
        data = weights.read_bytes()
        weights.write_bytes(data[: len(data) // 2])  # an interrupted download
    tokenizer = made["cut_tokenizer"] / "tokenizer.json"
    tokenizer.write_bytes(tokenizer.read_bytes()[:5000])
    # A sharded checkpoint's index (model.safetensors, when there, is read first)
    (made["bad_index"] / "model.safetensors").rename(
        made["bad_index"] / "model-00001-of-00001.safetensors")
    (made["bad_index"] / "model.safetensors.index.json").write_text('{"metadata": {}}')
    # A folder with a weights file's name, and a hub cache's link to a blob never downloaded.
    (made["weights_folder"] / "model.safetensors").unlink()
    (made["weights_folder"] / "model.safetensors").mkdir()
    (made["broken_link"] / "model.safetensors").unlink()
    (made["broken_link"] / "model.safetensors").symlink_to(root / "blobs" / "never-fetched")
    config = json.loads((made["no_vocab"] / "config.json").read_text())
    del config["text_config"]["vocab_size"]
    (made["no_vocab"] / "config.json").write_text(json.dumps(config))
    # As Qwen's own AWQ builds say it (their layers' weights are packed qweight/qzeros/scales).
    config = json.loads((made["quantized"] / "config.json").read_text())
    (made["quantized"] / "config.json").write_text(json.dumps({**config, "quantization_config": {
        "quant_method": "awq", "bits": 4, "group_size": 128, "version": "gemm"}}))
    images = json.loads((made["bad_images"] / "preprocessor_config.json").read_text())
    (made["bad_images"] / "preprocessor_config.json").write_text(
        json.dumps({**images, "max_pixels": "lots"}))
    return made


@pytest.mark.parametrize("name, needle", [("no_tokenizer", "has no tokenizer.json"),
                                          ("no_weights", "has no *.safetensors"),
                                          ("truncated", "is truncated"),
                                          ("cut_tokenizer", "tokenizer.json cannot be read"),
                                          ("bad_index", "has no weight_map"),
                                          ("no_vocab", "config.json has no vocab_size"),
                                          ("weights_folder", "has no *.safetensors"),
                                          ("broken_link", "is a link to a file that does not")])
def test_broken_checkpoints(tmp_path, broken_checkpoints, name, needle):
    path = str(broken_checkpoints[name])
    done = cli("model", "generate", path, "-p", "hi", "--device", "cpu", cwd=tmp_path,
               env=IMPORTS_SHOWN)
    one_line_error(done, needle, "download the checkpoint again")
    ran = cli("run", "x", "--model", path, "--env", "browser", cwd=tmp_path, env=IMPORTS_SHOWN)
    one_line_error(ran, needle, path)
    if name != "cut_tokenizer":  # seen only as the tokenizer loads
        assert_told_before_torch(done)
        assert_told_before_torch(ran)
    runs = tmp_path / "runs"  # a run that never started leaves no empty folder
    assert not runs.exists() or not any(runs.iterdir())


def test_unusable_image_settings_end_every_command_in_one_line(tmp_path, broken_checkpoints):
    path = str(broken_checkpoints["bad_images"])
    needles = ("preprocessor_config.json", "max_pixels must be a whole number")
    for command in (("model", "info", path), ("model", "generate", path, "-p", "hi"),
                    ("run", "x", "--model", path, "--env", "browser"), ("serve", path)):
        done = cli(*command, cwd=tmp_path, env=IMPORTS_SHOWN)
        one_line_error(done, *needles)
        assert_told_before_torch(done)


def test_a_quantized_checkpoint_is_refused_as_quantized_by_every_command(tmp_path,
                                                                         broken_checkpoints):
    path = str(broken_checkpoints["quantized"])
    needles = ("config.json: the checkpoint is quantized", "'awq'", "--model http://")
    done = cli("model", "info", path, cwd=tmp_path, env=IMPORTS_SHOWN)
    one_line_error(done, *needles)
    assert_told_before_torch(done)
    for command in (("model", "generate", path, "-p", "hi"),
                    ("run", "x", "--model", path, "--env", "browser"), ("serve", path)):
        done = cli(*command, cwd=tmp_path, env=IMPORTS_SHOWN)
        one_line_error(done, *needles)
        assert_told_before_torch(done)


def test_paths_and_numbers_that_cannot_be_used_end_in_one_line(tmp_path, tiny_checkpoint):
    taken = tmp_path / "a-file"
    taken.write_text("not a folder")
    one_line_error(cli("run", "--task", "miniwob/click-button", "--model", "scripted",
                       "--env", "browser", "--out", str(taken), cwd=tmp_path), str(taken))
    one_line_error(cli("bench", "--suite", "phone", "--out", str(taken), cwd=tmp_path),
                   f"--out {taken} is a file")
    one_line_error(cli("bench", "--suite", "phone", "--out", str(taken / "sub"), cwd=tmp_path),
                   f"--out {taken / 'sub'} cannot be made")
    for scale in ("nan", "inf"):
        one_line_error(cli("run", "x", "--model", "scripted", "--task", "miniwob/click-button",
                           "--env", "browser", "--scale", scale, cwd=tmp_path), "--scale")
    path = str(tiny_checkpoint)
    one_line_error(cli("model", "generate", path, "-p", "hi", "--image", str(tmp_path),
                       "--device", "cpu", cwd=tmp_path), "cannot read image")
    for refused in (["model", "generate", path, "-p", "hi", "--max-new-tokens", "0"],
                    ["model", "info", path, "--max-pixels", "-5"]):
        done = cli(*refused, cwd=tmp_path)
        assert done.returncode == 2 and "Traceback" not in done.stdout + done.stderr


def test_a_task_without_a_solution_is_refused_to_the_scripted_model_before_any_env(tmp_path):
    done = cli("run", "--task", "miniwob/click-color", "--env", "browser", "--model",
               "scripted", "--out", "runs", cwd=tmp_path)
    one_line_error(done, "miniwob/click-color has no scripted solution")
    assert done.returncode == 2 and not (tmp_path / "runs").exists()


def test_missing_system_tools_are_named_with_their_package(tmp_path):
    """Nothing on PATH: the virtual phone needs adb, a desktop run on a display of its own
    needs Xvfb; each says what to install, and leaves no folder behind."""
    empty = tmp_path / "bin"
    empty.mkdir()
    no_tools = {"PATH": str(empty)}
    one_line_error(cli("run", "book a flight", "--env", "android", "--device", "virtual",
                       "--model", "scripted", "--out", "runs", cwd=tmp_path, env=no_tools),
                   "apt-get install adb")
    # --out's parents that the run made go with it.
    one_line_error(cli("run", "x", "--env", "desktop", "--display", "new", "--model",
                       "scripted", "--task", "desktop/calculator-compute", "--out",
                       "runs/a/b", cwd=tmp_path, env=no_tools), "apt-get install xvfb")
    assert not (tmp_path / "runs").exists()


def test_a_sigterm_while_the_model_loads_stops_the_run_as_ctrl_c_does(tmp_path,
                                                                      tiny_checkpoint):
    """`timeout`, systemd and `docker stop` send SIGTERM: during the load (torch alone takes
    seconds to import) the run says it was interrupted, exits 143 (128 + SIGTERM, as a shell
    reports it) and leaves no folder."""
    import os
    import signal
    import subprocess
    import time

    from tests.test_agent_cli import CLI

    proc = subprocess.Popen([*CLI, "run", "x", "--env", "browser", "--model",
                             str(tiny_checkpoint), "--out", "runs/a"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "COLUMNS": "160"})
    try:
        deadline = time.monotonic() + 60
        while not list((tmp_path / "runs" / "a").glob("*")):  # made before the model loads
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.01)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 143, out + err
    assert "interrupted" in out and "Traceback" not in out + err
    assert not (tmp_path / "runs").exists()


def test_an_unknown_dtype_is_refused_before_the_weights_load(tmp_path, tiny_checkpoint):
    one_line_error(cli("run", "x", "--model", str(tiny_checkpoint), "--env", "browser",
                       "--dtype", "int8", cwd=tmp_path), "--dtype 'int8'", "bf16", "fp32")
    assert not (tmp_path / "runs").exists()  # refused before any trajectory was started


def test_cuda_device_without_cuda(tmp_path, tiny_checkpoint):
    # No GPU visible to the command, whether or not this machine has one.
    one_line_error(cli("model", "generate", str(tiny_checkpoint), "-p", "hi", "--device",
                       "cuda", cwd=tmp_path, env={"CUDA_VISIBLE_DEVICES": ""}),
                   "--device cuda needs CUDA", "--device cpu")


def test_corrupt_meta_and_malformed_action(tmp_path):
    done = '*FUNCTION*: Terminate *ARGS*: {"status": "success"}'
    corrupt = run_list(tmp_path / "meta", [done])
    (corrupt / "meta.json").write_text('{"goal": "x", "env": ')
    for command in (["view"], ["replay"], ["export", "--out", "x.jsonl", "--strict"]):
        one_line_error(cli(*command, str(corrupt), cwd=tmp_path), "meta.json", "fix or remove")

    bad_action = run_list(tmp_path / "action", ['*FUNCTION*: Home *ARGS*: {}', done])
    steps = bad_action / "steps.jsonl"
    lines = steps.read_text().splitlines()
    first = json.loads(lines[0])
    first["action"] = {"kind": "tap", "x": "left"}  # edited by hand
    steps.write_text("\n".join([json.dumps(first), *lines[1:]]) + "\n")
    one_line_error(cli("view", str(bad_action), cwd=tmp_path), "steps.jsonl:1",
                   "invalid action", "fix or delete that line")
