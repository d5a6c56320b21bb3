"""`agent_cli.py model info|generate` on a tiny checkpoint, checked against transformers."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from agent_cli import app
from runtime.tiny_checkpoint import make_tiny_checkpoint
from tests.test_agent_cli import REPO

runner = CliRunner()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return make_tiny_checkpoint(tmp_path_factory.mktemp("ckpt"), seed=4)


def test_info_prints_counts_and_budget(checkpoint):
    from transformers import Qwen2VLForConditionalGeneration

    ref = Qwen2VLForConditionalGeneration.from_pretrained(checkpoint)
    result = runner.invoke(app, ["model", "info", str(checkpoint), "--max-pixels", "1003520"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert f"{sum(p.numel() for p in ref.model.visual.parameters()):,}" in out
    assert f"{sum(p.numel() for p in ref.model.language_model.parameters()):,}" in out
    assert f"{ref.lm_head.weight.numel():,}" in out
    assert f"{sum(p.numel() for p in ref.parameters()):,}" in out
    assert "Qwen2-VL (model_type qwen2_vl)" in out
    assert "mrope_section [16, 24, 24]" in out
    assert "1092x2408 -> 3,354 tokens" in out  # released checkpoints' default budget
    assert "16,384" in out and "1,280" in out  # max tokens per image at both limits


def test_info_on_a_bad_path_fails_clearly(tmp_path):
    result = runner.invoke(app, ["model", "info", str(tmp_path)])
    assert result.exit_code == 2
    assert "config.json not found" in result.output


def test_generate_prints_transformers_greedy_answer(checkpoint, tmp_path):
    from transformers import Qwen2VLForConditionalGeneration, Qwen2VLImageProcessorPil

    from model import Qwen2VLProcessor

    rng = np.random.default_rng(0)
    picture = Image.fromarray(rng.integers(0, 256, (90, 130, 3), dtype=np.uint8))
    file = tmp_path / "screen.png"
    picture.save(file)

    # The reference answer: transformers' model and image processor on the same prompt.
    proc = Qwen2VLProcessor.from_pretrained(checkpoint)
    text = proc.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Where?"}]}]
    )
    pixels = Qwen2VLImageProcessorPil().preprocess([picture], return_tensors="pt")
    ids = proc(text=text, images=[picture])["input_ids"]
    ref = Qwen2VLForConditionalGeneration.from_pretrained(checkpoint, dtype=torch.float32).eval()
    out = ref.generate(
        input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=10, do_sample=False,
        mm_token_type_ids=(ids == proc.image_token_id).int(), **pixels,
    )  # fmt: skip
    expected = proc.decode(out[0, ids.shape[1] :], skip_special_tokens=True)

    result = runner.invoke(
        app,
        ["model", "generate", str(checkpoint), "--image", str(file), "--prompt", "Where?",
         "--max-new-tokens", "10", "--device", "cpu"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert expected.strip()
    assert result.stdout == expected + "\n"
    # Sampling from the one likeliest token is greedy decoding, whatever the temperature.
    sampled = runner.invoke(
        app,
        ["model", "generate", str(checkpoint), "--image", str(file), "--prompt", "Where?",
         "--max-new-tokens", "10", "--device", "cpu", "--temperature", "1.5", "--top-k", "1",
         "--seed", "3"],
    )  # fmt: skip
    assert sampled.exit_code == 0, sampled.output
    assert sampled.stdout == expected + "\n"


def test_an_empty_system_prompt_is_an_empty_system_turn(checkpoint):
    """As the chat template renders ``{"role": "system", "content": ""}``; the default system
    message is for no --system at all."""
    from model import Qwen2VLProcessor

    proc = Qwen2VLProcessor.from_pretrained(checkpoint)
    user = {"role": "user", "content": [{"type": "text", "text": "hi"}]}
    for given, messages in ((["--system", ""], [{"role": "system", "content": ""}, user]),
                            ([], [user])):
        expected = len(proc(text=proc.apply_chat_template(messages))["input_ids"][0])
        result = runner.invoke(app, ["model", "generate", str(checkpoint), "-p", "hi", *given,
                                     "--max-new-tokens", "1", "--device", "cpu"])
        assert result.exit_code == 0, result.output
        assert f"{expected} prompt tokens" in result.stderr


def test_generate_with_a_missing_image_fails_clearly(checkpoint, tmp_path):
    result = runner.invoke(
        app, ["model", "generate", str(checkpoint), "--image", str(tmp_path / "no.png"), "-p", "x"]
    )
    assert result.exit_code == 2
    assert "cannot read image" in result.output


@pytest.mark.parametrize("case, words", [
    ("strip", "aspect ratio must be smaller than 200"),
    ("bomb", "cannot read image"),
    ("placeholders", "image placeholder"),
    ("budget", "exceeds the context of"),
    ("pixels", "--min-pixels 5000 is above --max-pixels 4000"),
    # counted from the image's size, before 2 TiB of patches are made for it
    ("huge min pixels", "the prompt has at least"),
    ("seed", "--seed must be in [0, 2^63), got -1"),
    ("big seed", "--seed must be in [0, 2^63)"),
])
def test_generate_refuses_bad_input_in_one_line(checkpoint, tmp_path, monkeypatch, case, words):
    """Input the model cannot take ends in one error line, before any cache is allocated."""
    strip = tmp_path / "strip.png"
    Image.new("RGB", (600, 2)).save(strip)
    Image.new("RGB", (500, 400)).save(small := tmp_path / "small.png")
    args = {
        "strip": ["--image", str(strip), "-p", "x"],
        "bomb": ["--image", str(strip), "-p", "x"],
        "placeholders": ["-p", "a<|vision_start|><|image_pad|><|vision_end|>b"],
        "budget": ["-p", "x", "--max-new-tokens", "1000000000"],
        "pixels": ["-p", "x", "--min-pixels", "5000", "--max-pixels", "4000"],
        "huge min pixels": ["--image", str(small), "-p", "x", "--min-pixels", "99999999999"],
        "seed": ["-p", "x", "--seed", "-1"],
        "big seed": ["-p", "x", "--temperature", "0.5", "--seed", str(2**70)],
    }[case]
    if case == "bomb":  # as PIL refuses a picture of too many pixels
        monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    result = runner.invoke(app, ["model", "generate", str(checkpoint), *args])
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit)  # not a crash
    assert words in " ".join(result.output.split())
    assert "Traceback" not in result.output
    assert "at least 0 tokens" not in result.output  # no images: no count from their sizes


@pytest.mark.parametrize("flag", [["--temperature", "-1"], ["--top-p", "1.5"]])
def test_generate_refuses_sampling_values_out_of_range(checkpoint, flag):
    result = runner.invoke(app, ["model", "generate", str(checkpoint), "-p", "x", *flag])
    assert result.exit_code == 2 and "Invalid value" in result.output


def test_info_prints_the_qwen25_family_and_counts(tiny_qwen25_checkpoint):
    from transformers import Qwen2_5_VLForConditionalGeneration

    ref = Qwen2_5_VLForConditionalGeneration.from_pretrained(tiny_qwen25_checkpoint)
    result = runner.invoke(app, ["model", "info", str(tiny_qwen25_checkpoint)])
    assert result.exit_code == 0, result.output
    out = " ".join(result.output.split())
    assert "Qwen2.5-VL checkpoint" in out and "model_type qwen2_5_vl" in out
    assert "112 px (4x4 merged tokens), full attention in blocks [1]" in out
    assert f"{sum(p.numel() for p in ref.model.visual.parameters()):,}" in out
    assert f"{sum(p.numel() for p in ref.model.language_model.parameters()):,}" in out
    assert f"{sum(p.numel() for p in ref.parameters()):,}" in out


@pytest.mark.parametrize("family,model_type", [("qwen2vl", "qwen2_vl"), ("qwen25vl", "qwen2_5_vl")])
def test_model_tiny_writes_a_checkpoint_that_loads_and_generates(tmp_path, family, model_type):
    import json

    target = tmp_path / "tiny"
    made = runner.invoke(app, ["model", "tiny", str(target), "--family", family])
    assert made.exit_code == 0, made.output
    names = {p.name for p in target.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "generation_config.json",
            "preprocessor_config.json"} <= names
    assert json.loads((target / "config.json").read_text())["model_type"] == model_type
    answer = runner.invoke(app, ["model", "generate", str(target), "-p", "hi",
                                 "--max-new-tokens", "3", "--device", "cpu"])
    assert answer.exit_code == 0, answer.output

    again = runner.invoke(app, ["model", "tiny", str(target)])
    assert again.exit_code == 2 and "not an empty directory" in again.output
    bad = runner.invoke(app, ["model", "tiny", str(tmp_path / "other"), "--family", "qwen3"])
    assert bad.exit_code == 2 and "unknown --family 'qwen3'" in bad.output


def test_model_tiny_refuses_a_seed_or_folder_it_cannot_use(tmp_path):
    (tmp_path / "a-file").write_text("x")
    under_a_file = runner.invoke(app, ["model", "tiny", str(tmp_path / "a-file" / "tiny")])
    assert under_a_file.exit_code == 2 and isinstance(under_a_file.exception, SystemExit)
    assert "cannot write the checkpoint to" in under_a_file.output
    seed = runner.invoke(app, ["model", "tiny", str(tmp_path / "t"), "--seed", str(2**64)])
    assert seed.exit_code == 2 and "Invalid value for '--seed'" in seed.output
    assert not (tmp_path / "t").exists()


def test_an_eager_generate_never_imports_torch_compile(checkpoint, tmp_path):
    """torch._dynamo takes over a second to import; only a compiled decode step needs it, so
    every other command that loads a model starts that much sooner."""
    script = (
        "import atexit, runpy, sys\n"
        f"sys.path.insert(0, {str(REPO)!r})\n"
        "atexit.register(lambda: print('dynamo imported:', 'torch._dynamo' in sys.modules))\n"
        f"sys.argv = ['agent_cli.py', 'model', 'generate', {str(checkpoint)!r}, '-p', 'hi',\n"
        "            '--max-new-tokens', '3', '--device', 'cpu']\n"
        f"runpy.run_path({str(REPO / 'agent_cli.py')!r}, run_name='__main__')\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "new tokens" in done.stderr + done.stdout  # it loaded the model and generated
    assert done.stdout.splitlines()[-1] == "dynamo imported: False"
