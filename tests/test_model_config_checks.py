"""config.json settings that transformers honours and a checkpoint folder can hold: scaled rope
types, and an eos_token_id list in config.json when generation_config.json is absent."""

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
