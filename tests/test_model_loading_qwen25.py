"""Qwen2.5-VL checkpoints: both config layouts, both key layouts, tied heads, real sizes on meta."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from model import Qwen2VL, Qwen2VLProcessor
from model.config import Qwen2VLConfig
from runtime.tiny_checkpoint import make_tiny_checkpoint

PROMPT = "<|im_start|>user\nHello there, tap the blue button.<|im_end|>\n<|im_start|>assistant\n"


@pytest.fixture(scope="module")
def input_ids(tiny_qwen25_checkpoint):
    return Qwen2VLProcessor.from_pretrained(tiny_qwen25_checkpoint)(text=PROMPT)["input_ids"]


@pytest.fixture(scope="module")
def logits(tiny_qwen25_checkpoint, input_ids):
    return Qwen2VL.from_pretrained(tiny_qwen25_checkpoint, device="cpu")(input_ids=input_ids)


def _copy_metadata(src, dst):
    dst.mkdir()
    for f in src.glob("*.json"):
        shutil.copy(f, dst / f.name)


def test_transformers5_key_layout_gives_same_logits(tmp_path, tiny_qwen25_checkpoint, input_ids, logits):
    # save_pretrained writes the hub's visual.* / model.*; transformers 5's modules sit under model.*.
    renamed = {}
    with safe_open(str(tiny_qwen25_checkpoint / "model.safetensors"), "pt") as f:
        for key in f.keys():
            if key.startswith("visual."):
                new = "model." + key
            elif key.startswith("model."):
                new = "model.language_model." + key[len("model.") :]
            else:
                new = key
            renamed[new] = f.get_tensor(key)
    assert any(k.startswith("model.visual.blocks.") for k in renamed)
    path = tmp_path / "t5"
    _copy_metadata(tiny_qwen25_checkpoint, path)
    save_file(renamed, str(path / "model.safetensors"))
    assert torch.equal(Qwen2VL.from_pretrained(path, device="cpu")(input_ids=input_ids), logits)


def test_tied_embeddings_match_transformers(tmp_path, input_ids):
    # Qwen2.5-VL-3B ties lm_head to the embeddings.
    from transformers import Qwen2_5_VLForConditionalGeneration

    path = make_tiny_checkpoint(tmp_path, seed=2, tie_word_embeddings=True, model_type="qwen2_5_vl")
    ours = Qwen2VL.from_pretrained(path, device="cpu")
    assert ours.lm_head.weight is ours.model.embed_tokens.weight
    ref = Qwen2_5_VLForConditionalGeneration.from_pretrained(path, dtype=torch.float32).eval()
    with torch.no_grad():
        want = ref(input_ids=input_ids).logits
    assert (ours(input_ids=input_ids) - want).abs().max() <= 1e-4


def test_flat_hub_config_loads_like_the_nested_one(tiny_qwen25_checkpoint):
    nested = json.loads((tiny_qwen25_checkpoint / "config.json").read_text())
    assert nested["model_type"] == "qwen2_5_vl" and "text_config" in nested
    flat = {k: v for k, v in nested.items() if k != "text_config"}
    text = dict(nested["text_config"])
    rope = text.pop("rope_parameters")
    text.pop("model_type")
    flat.update(text, rope_theta=rope["rope_theta"],
                rope_scaling={"type": "mrope", "mrope_section": rope["mrope_section"]})  # fmt: skip
    assert Qwen2VLConfig.from_dict(flat) == Qwen2VLConfig.from_dict(nested)


def test_bad_window_size_is_clear():
    raw = _hub_config(2048, 11008, 36, 16, 2, 151936, True)
    raw["vision_config"]["window_size"] = 14
    with pytest.raises(ValueError, match="window_size 14"):
        Qwen2VLConfig.from_dict(raw)


# --- real sizes on the meta device ---------------------------------------------------------------
def _hub_config(hidden, intermediate, layers, heads, kv, vocab, tied) -> dict:
    """config.json as published for Qwen/Qwen2.5-VL-*-Instruct (hub layout); UI-TARS-1.5-7B is
    the 7B shape with the same fields and key names."""
    return {
        "architectures": ["Qwen2_5_VLForConditionalGeneration"],
        "model_type": "qwen2_5_vl",
        "bos_token_id": 151643, "eos_token_id": 151645,
        "vision_start_token_id": 151652, "vision_end_token_id": 151653,
        "vision_token_id": 151654, "image_token_id": 151655, "video_token_id": 151656,
        "hidden_act": "silu", "hidden_size": hidden, "intermediate_size": intermediate,
        "max_position_embeddings": 128000, "max_window_layers": layers,
        "num_attention_heads": heads, "num_hidden_layers": layers, "num_key_value_heads": kv,
        "rms_norm_eps": 1e-6, "rope_theta": 1000000.0, "sliding_window": 32768,
        "tie_word_embeddings": tied, "torch_dtype": "bfloat16", "use_cache": True,
        "use_sliding_window": False, "vocab_size": vocab,
        "vision_config": {
            "depth": 32, "hidden_act": "silu", "hidden_size": 1280, "intermediate_size": 3420,
            "num_heads": 16, "in_chans": 3, "out_hidden_size": hidden, "patch_size": 14,
            "spatial_merge_size": 2, "spatial_patch_size": 14, "window_size": 112,
            "fullatt_block_indexes": [7, 15, 23, 31], "tokens_per_second": 2,
            "temporal_patch_size": 2,
        },
        "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]},
    }  # fmt: skip


REAL = {
    "3B": _hub_config(2048, 11008, 36, 16, 2, 151936, True),
    "7B": _hub_config(3584, 18944, 28, 28, 4, 152064, False),
    "32B": _hub_config(5120, 27648, 64, 40, 8, 152064, False),
    "72B": _hub_config(8192, 29568, 80, 64, 8, 152064, False),
}
# The published sizes, in billions: a coarse check that the configs above are the real ones.
PUBLISHED = {"3B": 3.75, "7B": 8.29, "32B": 33.45, "72B": 73.4}


@pytest.mark.parametrize("size", REAL, ids=list(REAL))
def test_real_sizes_match_transformers_on_meta(size):
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    config = Qwen2VLConfig.from_dict(REAL[size])
    assert config.family == "Qwen2.5-VL"
    with torch.device("meta"):
        counts = Qwen2VL(config).parameter_counts()
        ref = Qwen2_5_VLForConditionalGeneration(Qwen2_5_VLConfig(**REAL[size]))
    assert counts["total"] == sum(p.numel() for p in ref.parameters())  # shared params once
    assert counts["visual"] == sum(p.numel() for p in ref.model.visual.parameters())
    assert counts["language_model"] == sum(p.numel() for p in ref.model.language_model.parameters())
    assert counts["lm_head"] == (0 if REAL[size]["tie_word_embeddings"] else ref.lm_head.weight.numel())
    assert abs(counts["total"] / 1e9 - PUBLISHED[size]) < 0.05 * PUBLISHED[size]
