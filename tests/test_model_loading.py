"""Checkpoint loading: shards, key layouts, tied embeddings, real sizes on meta, clear errors."""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from model import Qwen2VL, Qwen2VLProcessor
from model.config import Qwen2VLConfig
from runtime.tiny_checkpoint import make_tiny_checkpoint

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from model_gpu import hub_config  # noqa: E402  (the published configs the GPU benchmark builds)

PROMPT = "<|im_start|>user\nHello there, tap the blue button.<|im_end|>\n<|im_start|>assistant\n"


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    return make_tiny_checkpoint(tmp_path_factory.mktemp("single"), seed=1)


@pytest.fixture(scope="module")
def input_ids(single):
    return Qwen2VLProcessor.from_pretrained(single)(text=PROMPT)["input_ids"]


@pytest.fixture(scope="module")
def single_logits(single, input_ids):
    return Qwen2VL.from_pretrained(single, device="cpu")(input_ids=input_ids)


def _copy_metadata(src, dst):
    dst.mkdir()
    for f in src.glob("*.json"):
        shutil.copy(f, dst / f.name)


def test_sharded_checkpoint_with_index_gives_same_logits(tmp_path, input_ids, single_logits):
    path = make_tiny_checkpoint(tmp_path, seed=1, max_shard_size="500KB")
    assert (path / "model.safetensors.index.json").is_file()
    assert len(list(path.glob("*.safetensors"))) > 2
    logits = Qwen2VL.from_pretrained(path, device="cpu")(input_ids=input_ids)
    assert torch.equal(logits, single_logits)


def test_transformers5_key_layout_gives_same_logits(tmp_path, single, input_ids, single_logits):
    renamed = {}
    with safe_open(str(single / "model.safetensors"), "pt") as f:
        for key in f.keys():
            if key.startswith("visual."):
                new = "model." + key
            elif key.startswith("model."):
                new = "model.language_model." + key[len("model.") :]
            else:
                new = key
            renamed[new] = f.get_tensor(key)
    assert any(k.startswith("model.language_model.layers.") for k in renamed)
    path = tmp_path / "t5"
    _copy_metadata(single, path)
    save_file(renamed, str(path / "model.safetensors"))
    logits = Qwen2VL.from_pretrained(path, device="cpu")(input_ids=input_ids)
    assert torch.equal(logits, single_logits)


def test_tied_embeddings_match_transformers(tmp_path, input_ids):
    from transformers import Qwen2VLForConditionalGeneration

    path = make_tiny_checkpoint(tmp_path, seed=2, tie_word_embeddings=True)
    with safe_open(str(path / "model.safetensors"), "pt") as f:
        assert "lm_head.weight" not in f.keys()
    ours = Qwen2VL.from_pretrained(path, device="cpu")
    assert ours.lm_head.weight is ours.model.embed_tokens.weight
    ref = Qwen2VLForConditionalGeneration.from_pretrained(path, dtype=torch.float32).eval()
    with torch.no_grad():
        want = ref(input_ids=input_ids).logits
    assert (ours(input_ids=input_ids) - want).abs().max() <= 1e-4


@pytest.mark.parametrize("family", ["qwen2_vl", "qwen2_5_vl"])
def test_a_tied_checkpoint_that_stores_only_the_head_loads_as_transformers_does(tmp_path,
                                                                               input_ids, family):
    """safetensors' save_model keeps one name for a shared tensor, and may keep the head's: the
    stored head is the embedding matrix too."""
    import transformers

    reference = {"qwen2_vl": transformers.Qwen2VLForConditionalGeneration,
                 "qwen2_5_vl": transformers.Qwen2_5_VLForConditionalGeneration}[family]
    path = make_tiny_checkpoint(tmp_path / "ckpt", seed=3, tie_word_embeddings=True,
                                model_type=family)
    with safe_open(str(path / "model.safetensors"), "pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    (embed_key,) = [k for k in tensors if k.endswith("embed_tokens.weight")]
    tensors["lm_head.weight"] = tensors.pop(embed_key)
    save_file(tensors, str(path / "model.safetensors"))
    ours = Qwen2VL.from_pretrained(path, device="cpu")
    ref = reference.from_pretrained(path, dtype=torch.float32).eval()
    assert ours.lm_head.weight is ours.model.embed_tokens.weight
    with torch.no_grad():
        want = ref(input_ids=input_ids).logits
    assert (ours(input_ids=input_ids) - want).abs().max() <= 1e-4
    tensors["lm_head.weight"] = tensors["lm_head.weight"][:, :-1].contiguous()
    save_file(tensors, str(path / "model.safetensors"))
    with pytest.raises(ValueError, match="shape mismatch for lm_head.weight"):
        Qwen2VL.from_pretrained(path, device="cpu")


def test_bf16_load_casts_every_weight(single, input_ids, single_logits):
    model = Qwen2VL.from_pretrained(single, device="cpu", dtype="bf16")
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert not any(p.is_meta for p in model.parameters())
    logits = model(input_ids=input_ids).float()
    assert (logits - single_logits).abs().max() < 0.25 * single_logits.abs().max()


def test_default_device_and_dtype(single):
    model = Qwen2VL.from_pretrained(single)
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert model.device.type == expected
    assert model.dtype == (torch.bfloat16 if expected == "cuda" else torch.float32)


# --- errors ---------------------------------------------------------------------------------
def test_a_device_this_machine_lacks_is_named(single):
    with pytest.raises(ValueError, match="unknown device 'bogus'"):
        Qwen2VL.from_pretrained(single, device="bogus")
    with pytest.raises(ValueError, match="'mps': vlagent runs on cpu or cuda"):
        Qwen2VL.from_pretrained(single, device="mps")
    missing = "cuda" if not torch.cuda.is_available() else f"cuda:{torch.cuda.device_count()}"
    with pytest.raises(ValueError, match=f"device '{missing}'"):
        Qwen2VL.from_pretrained(single, device=missing)


def test_missing_directory_and_files_are_clear(tmp_path, single):
    with pytest.raises(FileNotFoundError, match="config.json"):
        Qwen2VL.from_pretrained(tmp_path / "nowhere")
    empty = tmp_path / "noweights"
    _copy_metadata(single, empty)
    with pytest.raises(FileNotFoundError, match="safetensors"):
        Qwen2VL.from_pretrained(empty)
    (empty / "tokenizer.json").unlink()
    with pytest.raises(FileNotFoundError, match="tokenizer.json"):
        Qwen2VLProcessor.from_pretrained(empty)


def test_wrong_model_type_is_clear(tmp_path, single):
    path = tmp_path / "llama"
    _copy_metadata(single, path)
    config = json.loads((path / "config.json").read_text())
    config["model_type"] = "llama"
    (path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="model_type 'llama'"):
        Qwen2VL.from_pretrained(path)


def test_shape_mismatch_names_the_tensor(tmp_path, single):
    path = tmp_path / "bad"
    _copy_metadata(single, path)
    shutil.copy(single / "model.safetensors", path / "model.safetensors")
    config = json.loads((path / "config.json").read_text())
    config["text_config"]["intermediate_size"] += 8
    (path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"shape mismatch for model\.layers\.0\.mlp\.\w+_proj\.weight"):
        Qwen2VL.from_pretrained(path)


def test_missing_tensor_is_named(tmp_path, single):
    path = tmp_path / "partial"
    _copy_metadata(single, path)
    with safe_open(str(single / "model.safetensors"), "pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys() if k != "model.norm.weight"}
    save_file(tensors, str(path / "model.safetensors"))
    with pytest.raises(ValueError, match="missing.*model.norm.weight"):
        Qwen2VL.from_pretrained(path)


def test_rotary_buffers_a_conversion_saved_are_skipped_and_other_tensors_refused(
        tmp_path, single, input_ids, single_logits):
    """Some conversions save the rotary embeddings' inv_freq buffers, which follow from
    config.json: transformers skips them, and the checkpoint was refused here. A tensor of
    no known kind is still refused, by name."""
    with safe_open(str(single / "model.safetensors"), "pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    for name, extra in [("with-inv-freq", {"model.rotary_emb.inv_freq": torch.ones(8),
                                           "visual.rotary_pos_emb.inv_freq": torch.ones(4)}),
                        ("with-stray", {"model.layers.0.mlp.extra.weight": torch.ones(2)})]:
        path = tmp_path / name
        _copy_metadata(single, path)
        save_file({**tensors, **extra}, str(path / "model.safetensors"))
        if name == "with-stray":
            with pytest.raises(ValueError, match=r"unexpected tensors.*mlp\.extra\.weight"):
                Qwen2VL.from_pretrained(path)
        else:
            logits = Qwen2VL.from_pretrained(path, device="cpu")(input_ids=input_ids)
            assert torch.equal(logits, single_logits)


# --- real sizes on the meta device -------------------------------------------------------------
REAL = {size: hub_config(size) for size in ("2B", "7B", "72B")}


def _ours_on_meta(raw: dict) -> dict[str, int]:
    with torch.device("meta"):
        return Qwen2VL(Qwen2VLConfig.from_dict(raw)).parameter_counts()


@pytest.mark.parametrize("size", REAL, ids=list(REAL))
def test_real_sizes_match_transformers_on_meta(size):
    from transformers import Qwen2VLConfig as HFConfig
    from transformers import Qwen2VLForConditionalGeneration

    counts = _ours_on_meta(REAL[size])
    with torch.device("meta"):
        ref = Qwen2VLForConditionalGeneration(HFConfig(**REAL[size]))
    assert counts["total"] == sum(p.numel() for p in ref.parameters())  # shared params once
    assert counts["visual"] == sum(p.numel() for p in ref.model.visual.parameters())
    assert counts["language_model"] == sum(p.numel() for p in ref.model.language_model.parameters())


def test_real_7b_exact_counts():
    counts = _ours_on_meta(REAL["7B"])
    assert counts == {
        "visual": 675_759_104,
        "language_model": 7_070_619_136,
        "lm_head": 544_997_376,
        "total": 8_291_375_616,
    }


def test_real_2b_is_tied_and_about_2_2b():
    counts = _ours_on_meta(REAL["2B"])
    assert counts["lm_head"] == 0
    assert 2.20e9 < counts["total"] < 2.22e9


def test_nested_transformers5_config_loads_like_hub_layout(single):
    nested = json.loads((single / "config.json").read_text())
    assert "text_config" in nested
    cfg = Qwen2VLConfig.from_dict(nested)
    flat = {k: v for k, v in nested.items() if k != "text_config"}
    text = dict(nested["text_config"])
    rope = text.pop("rope_parameters")
    text.pop("model_type")
    flat.update(text, rope_theta=rope["rope_theta"],
                rope_scaling={"type": "mrope", "mrope_section": rope["mrope_section"]})  # fmt: skip
    assert Qwen2VLConfig.from_dict(flat) == cfg


@pytest.mark.parametrize("token", ["<|im_start|>", "<|im_end|>", "<|image_pad|>"])
def test_a_tokenizer_without_a_qwen2vl_token_is_refused(tmp_path, single, token):
    """Without one of its special tokens, the tokenizer numbers the later ones differently, so
    the ids in config.json would name other tokens: refused, naming what is wrong."""
    copy = Path(shutil.copytree(single, tmp_path / "ckpt"))
    data = json.loads((copy / "tokenizer.json").read_text())
    data["added_tokens"] = [t for t in data["added_tokens"] if t["content"] != token]
    (copy / "tokenizer.json").write_text(json.dumps(data))
    said = f"has no {token} token" if token != "<|image_pad|>" else "not '<|image_pad|>'"
    with pytest.raises(ValueError, match=re.escape(said)):
        Qwen2VLProcessor.from_pretrained(copy)


@pytest.mark.parametrize("equal", [True, False])
def test_a_tied_config_with_a_stored_head_loads_as_transformers_does(tmp_path, single, input_ids,
                                                                     equal):
    """config.json says tie, and the weights hold lm_head.weight too: transformers 5 ties them
    when the head equals the embeddings and keeps the stored head when it does not."""
    from transformers import Qwen2VLForConditionalGeneration

    path = tmp_path / "tied"
    _copy_metadata(single, path)
    config = json.loads((path / "config.json").read_text())
    config["tie_word_embeddings"] = True
    (path / "config.json").write_text(json.dumps(config))
    with safe_open(str(single / "model.safetensors"), "pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    embed = next(v for k, v in tensors.items() if k.endswith("embed_tokens.weight"))
    assert not torch.equal(tensors["lm_head.weight"], embed)
    if equal:
        tensors["lm_head.weight"] = embed.clone()
    save_file(tensors, str(path / "model.safetensors"))
    ours = Qwen2VL.from_pretrained(path, device="cpu")
    ref = Qwen2VLForConditionalGeneration.from_pretrained(path, dtype=torch.float32).eval()
    assert ours.tied_head == equal
    assert (ours.parameter_counts()["lm_head"] == 0) == equal
    with torch.no_grad():
        want = ref(input_ids=input_ids).logits
    assert (ours(input_ids=input_ids) - want).abs().max() <= 1e-4


def _with_config(tmp_path, single, change) -> Path:
    path = tmp_path / "ckpt"
    _copy_metadata(single, path)
    config = json.loads((path / "config.json").read_text())
    change(config)
    (path / "config.json").write_text(json.dumps(config))
    return path


@pytest.mark.parametrize("field", ["rms_norm_eps", "rope_theta", "max_position_embeddings"])
def test_a_field_config_json_leaves_out_takes_transformers_default(tmp_path, single, field):
    from transformers import AutoConfig

    def drop(config):
        for where in (config, config["text_config"], config["text_config"]["rope_parameters"]):
            where.pop(field, None)

    path = _with_config(tmp_path, single, drop)
    theirs = AutoConfig.from_pretrained(path).text_config
    want = (theirs.rope_parameters["rope_theta"] if field == "rope_theta"
            else getattr(theirs, field))
    assert getattr(Qwen2VLConfig.from_pretrained(path).text, field) == want


@pytest.mark.parametrize("change, said", [
    (lambda c: c["text_config"].pop("vocab_size"), "config.json has no vocab_size"),
    (lambda c: c["text_config"].pop("hidden_size"), "config.json has no hidden_size"),
    (lambda c: c["text_config"].update(num_hidden_layers="28"), "num_hidden_layers must be a whole"),
    (lambda c: c["text_config"].update(num_attention_heads=3), "not a multiple of"),
    (lambda c: c.update(text_config=[1, 2]), "text_config must be an object"),
    (lambda c: c.update(vision_config="big"), "vision_config must be an object"),
    (lambda c: c["text_config"]["rope_parameters"].update(mrope_section=None),
     "mrope_section must be a list of whole numbers, not None"),
    (lambda c: c["text_config"]["rope_parameters"].update(mrope_section=[16, 24, "24"]),
     "text_config's mrope_section must be a list of whole numbers"),
    (lambda c: c["text_config"].update(rms_norm_eps="1e-6"),
     "text_config's rms_norm_eps must be a number above 0, not '1e-6'"),
    (lambda c: c["text_config"].update(rms_norm_eps=float("nan")), "rms_norm_eps must be a number"),
    (lambda c: c["vision_config"].update(num_heads=3), "is not a multiple of its num_heads 3"),
    (lambda c: c["vision_config"].update(depth=0), "vision_config's depth must be a whole number"),
    (lambda c: c["vision_config"].update(hidden_act=None), "hidden_act must be a string"),
])
def test_a_config_without_a_shape_field_names_it(tmp_path, single, change, said):
    path = _with_config(tmp_path, single, change)
    with pytest.raises(ValueError, match=re.escape(said)) as caught:
        Qwen2VLConfig.from_pretrained(path)
    assert str(path) in str(caught.value)


def test_a_null_context_length_takes_the_default(tmp_path, single):
    cfg = Qwen2VLConfig.from_pretrained(_with_config(
        tmp_path, single, lambda c: c["text_config"].update(max_position_embeddings=None)))
    assert cfg.text.max_position_embeddings == 32768


def test_a_null_vision_config_takes_the_released_tower(tmp_path, single):
    cfg = Qwen2VLConfig.from_pretrained(_with_config(
        tmp_path, single, lambda c: c.update(vision_config=None)))
    assert cfg.vision.depth == 32 and cfg.vision.embed_dim == 1280


def test_a_config_that_is_no_json_object_is_refused(tmp_path, single):
    path = tmp_path / "list"
    _copy_metadata(single, path)
    (path / "config.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="holds list, not a JSON object"):
        Qwen2VLConfig.from_pretrained(path)


def test_an_unknown_dtype_in_the_safetensors_header_names_the_file(tmp_path, single):
    path = shutil.copytree(single, tmp_path / "ckpt")
    weights = path / "model.safetensors"
    data = weights.read_bytes()
    at = data.index(b'"F32"')  # same length: the header still parses as JSON
    weights.write_bytes(data[:at] + b'"F3X"' + data[at + 5:])
    with pytest.raises(ValueError, match=r"model\.safetensors cannot be read as safetensors"):
        Qwen2VL.from_pretrained(path, device="cpu")


def test_an_eos_id_that_is_no_token_id_is_refused(tmp_path, single):
    path = shutil.copytree(single, tmp_path / "ckpt")
    gen = path / "generation_config.json"
    gen.write_text(json.dumps({**json.loads(gen.read_text()), "eos_token_id": "x"}))
    with pytest.raises(ValueError, match="eos_token_id must be a token id or a list of them"):
        Qwen2VL.from_pretrained(path, device="cpu")
