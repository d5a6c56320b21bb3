"""config.json settings that transformers honours and a checkpoint folder can hold: scaled rope
types, sliding attention windows, and an eos_token_id list in config.json when
generation_config.json is absent."""

from __future__ import annotations

import json

import pytest
import torch

from model import Qwen2VL, Qwen2VLProcessor
from model.config import Qwen2VLConfig
from tests.conftest import copy_checkpoint


def _flat(nested: dict, rope: dict) -> dict:
    """The hub's (transformers 4) layout of a transformers 5 config.json, with ``rope`` as its
    rope_scaling."""
    flat = {k: v for k, v in nested.items() if k != "text_config"}
    text = dict(nested["text_config"])
    params = text.pop("rope_parameters")
    flat.update(text, rope_theta=params["rope_theta"],
                rope_scaling={**rope, "mrope_section": params["mrope_section"]})  # fmt: skip
    flat["model_type"] = nested["model_type"]  # not the text part's own
    return flat


@pytest.mark.parametrize("rope", [{"type": "mrope"}, {"type": "default"}, {"rope_type": "default"}])
def test_default_rope_types_load(tiny_checkpoint, rope):
    nested = json.loads((tiny_checkpoint / "config.json").read_text())
    assert Qwen2VLConfig.from_dict(_flat(nested, rope)) == Qwen2VLConfig.from_dict(nested)


SCALED = {
    "hub-yarn": {"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 1024},
    "hub-linear": {"type": "linear", "factor": 2.0},
    "hub-dynamic": {"type": "dynamic", "factor": 2.0},
}


@pytest.mark.parametrize("case", SCALED, ids=list(SCALED))
def test_scaled_rope_is_refused_not_ignored(tiny_checkpoint, tmp_path, case):
    # transformers computes these (YaRN gave logits 1.4 away from ours on a tiny checkpoint);
    # the default M-RoPE in their place would be a different model without a word.
    path = copy_checkpoint(tiny_checkpoint, tmp_path / "ckpt",
                           change=lambda nested: _flat(nested, SCALED[case]))
    with pytest.raises(ValueError, match=f"rope type '{SCALED[case]['type']}'"):
        Qwen2VL.from_pretrained(path, device="cpu")


def test_scaled_rope_in_the_nested_layout_is_refused(tiny_checkpoint, tmp_path):
    def yarn(config):
        config["text_config"]["rope_parameters"].update(rope_type="yarn", factor=4.0)
        return config

    path = copy_checkpoint(tiny_checkpoint, tmp_path / "ckpt", change=yarn)
    with pytest.raises(ValueError, match="config.json asks for rope type 'yarn'"):
        Qwen2VLConfig.from_pretrained(path)


def test_eos_list_in_config_json_without_generation_config(tiny_checkpoint, tmp_path):
    from transformers import Qwen2VLForConditionalGeneration

    path = copy_checkpoint(tiny_checkpoint, tmp_path / "ckpt")
    (path / "generation_config.json").unlink()
    config = json.loads((path / "config.json").read_text())
    processor = Qwen2VLProcessor.from_pretrained(path)
    ids = [processor.token_to_id("<|im_end|>"), processor.token_to_id("<|endoftext|>")]
    config["text_config"]["eos_token_id"] = ids
    (path / "config.json").write_text(json.dumps(config))

    reference = Qwen2VLForConditionalGeneration.from_pretrained(path, dtype=torch.float32)
    assert reference.generation_config.eos_token_id == ids
    assert Qwen2VL.from_pretrained(path, device="cpu").eos_token_ids == ids
    assert Qwen2VLProcessor.from_pretrained(path).eos_token_ids == ids


WINDOWS = {  # text_config settings -> the decoder layers transformers runs sliding
    "layer 1 slides": (dict(use_sliding_window=True, sliding_window=4, max_window_layers=1), [1]),
    "both slide": (dict(use_sliding_window=True, sliding_window=4, max_window_layers=0), [0, 1]),
    "no layer from 2 on": (dict(use_sliding_window=True, sliding_window=4, max_window_layers=2), []),
    "window holds the context": (dict(use_sliding_window=True, sliding_window=4096,
                                      max_window_layers=0), []),
    "switched off": (dict(use_sliding_window=False, sliding_window=4, max_window_layers=0), []),
}


@pytest.mark.parametrize("listed", [True, False], ids=["layer_types saved", "hub layout"])
@pytest.mark.parametrize("case", WINDOWS, ids=list(WINDOWS))
def test_a_sliding_window_is_refused_where_it_changes_the_model(tmp_path, case, listed):
    """transformers masks the layers that slide to the window (logits 3.4 away from full
    attention on a tiny checkpoint): refused where a window shorter than the context applies,
    and equal to transformers where none does."""
    import transformers

    from runtime.tiny_checkpoint import make_tiny_checkpoint

    settings, sliding = WINDOWS[case]
    made = make_tiny_checkpoint(tmp_path / "made", seed=4, text_overrides=settings)

    def layout(nested: dict) -> dict:
        if not listed:  # a hub config.json names no layer_types: they follow max_window_layers
            flat = _flat(nested, {"type": "mrope"})
            del flat["layer_types"]
            return flat
        return nested

    path = copy_checkpoint(made, tmp_path / "ckpt", change=layout)
    if sliding:
        with pytest.raises(ValueError, match=rf"4 tokens in decoder layer\(s\) "
                                             rf"{', '.join(map(str, sliding))} "):
            Qwen2VL.from_pretrained(path, device="cpu")
        return
    ours = Qwen2VL.from_pretrained(path, device="cpu")
    ref = transformers.Qwen2VLForConditionalGeneration.from_pretrained(
        path, dtype=torch.float32).eval()
    ids = Qwen2VLProcessor.from_pretrained(path)(
        text="a prompt of more than a few tokens, across any window of four")["input_ids"]
    with torch.no_grad():
        assert torch.allclose(ours(ids), ref(input_ids=ids).logits, atol=1e-4)


def _set(path: list, value):
    def change(config):
        part = config
        for key in path[:-1]:
            part = part[key]
        part[path[-1]] = value
        return config
    return change


@pytest.mark.parametrize("path, value, said", [
    (["text_config", "rope_parameters"], "default", "rope_parameters must be an object"),
    (["vision_config", "rope_parameters"], [1], "rope_parameters must be an object"),
    (["image_token_id"], "151655", "image_token_id must be a whole number, not '151655'"),
    (["vision_start_token_id"], None, "vision_start_token_id must be a whole number"),
    (["text_config", "eos_token_id"], [2, "3"], "eos_token_id must be a whole number, not '3'"),
])
def test_a_field_of_the_wrong_kind_is_named(tiny_checkpoint, path, value, said):
    """Each was an AttributeError or a TypeError deep in loading or in the processor."""
    nested = json.loads((tiny_checkpoint / "config.json").read_text())
    with pytest.raises(ValueError, match=said):
        Qwen2VLConfig.from_dict(_set(path, value)(nested))


def test_key_value_heads_that_do_not_divide_the_heads_are_named(tiny_checkpoint):
    """Loading then failed on a weight's shape, which named nothing a user could change."""
    nested = json.loads((tiny_checkpoint / "config.json").read_text())
    heads = nested["text_config"]["num_attention_heads"]
    with pytest.raises(ValueError, match=f"num_attention_heads {heads} is not a multiple of "
                                         f"num_key_value_heads {heads + 1}"):
        Qwen2VLConfig.from_dict(_set(["text_config", "num_key_value_heads"], heads + 1)(nested))
