"""Qwen2-VL and Qwen2.5-VL checkpoint configuration, read from config.json in either layout.

The hub's config.json (transformers 4.x) keeps the text fields at the top level with
``rope_scaling.mrope_section``; transformers 5 nests them under ``text_config`` with
``rope_parameters.mrope_section``. Both load into the same dataclasses.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

#: The vision towers' activations, by their config.json names (model.vision.ACTIVATIONS computes
#: each; named here so that reading a config needs no torch).
VISION_ACTIVATIONS = ("quick_gelu", "gelu", "silu")

# config.json's model_type -> the family's name; the decoder is the same, the vision tower differs.
FAMILIES = {"qwen2_vl": "Qwen2-VL", "qwen2_5_vl": "Qwen2.5-VL"}
SUPPORTED_MODEL_TYPES = tuple(FAMILIES)
# The rope types the decoder computes ("mrope" is the hub's name for the default). transformers
# also reads scaled ones (YaRN, linear, dynamic), which would give other logits here without a word.
ROPE_TYPES = ("default", "mrope")


@dataclass(frozen=True)
class VisionConfig:
    depth: int = 32
    embed_dim: int = 1280
    num_heads: int = 16
    mlp_ratio: float = 4.0
    hidden_act: str = "quick_gelu"
    in_channels: int = 3
    patch_size: int = 14
    temporal_patch_size: int = 2
    spatial_merge_size: int = 2
    out_dim: int = 3584  # the merger's output: the language model's hidden size
    rope_theta: float = 10_000.0

    @property
    def head_dim(self) -> int:
        return self.embed_dim // self.num_heads


@dataclass(frozen=True)
class TextConfig:
    vocab_size: int = 152064
    hidden_size: int = 3584
    intermediate_size: int = 18944
    num_hidden_layers: int = 28
    num_attention_heads: int = 28
    num_key_value_heads: int = 4
    rms_norm_eps: float = 1e-5  # transformers' default
    rope_theta: float = 1_000_000.0
    mrope_section: tuple[int, int, int] = (16, 24, 24)
    max_position_embeddings: int = 32768

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads


@dataclass(frozen=True)
class Qwen2VLConfig:
    text: TextConfig
    vision: VisionConfig
    image_token_id: int
    video_token_id: int
    vision_start_token_id: int
    vision_end_token_id: int
    tie_word_embeddings: bool = False
    eos_token_ids: tuple[int, ...] = ()  # config.json's; generation_config.json's come first
    model_type: str = "qwen2_vl"

    @property
    def family(self) -> str:
        return FAMILIES[self.model_type]

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Qwen2VLConfig:
        model_type = raw.get("model_type")
        if model_type not in SUPPORTED_MODEL_TYPES:
            raise ValueError(
                f"config.json has model_type {model_type!r}; this implementation loads "
                f"{', '.join(SUPPORTED_MODEL_TYPES)} checkpoints (Qwen2-VL, Qwen2.5-VL and "
                "same-architecture models)"
            )
        # transformers 5 nests the text fields; the hub layout keeps them at the top level.
        text_raw = {**raw, **object_field(raw, "text_config")}
        # An AWQ, GPTQ or FP8 build stores packed weights and scales that the layers here do not
        # compute with: say so, not that its tensors are unexpected (a corrupt download).
        quantized = text_raw.get("quantization_config")
        if quantized:
            method = quantized.get("quant_method") if isinstance(quantized, dict) else None
            raise ValueError(
                f"config.json: the checkpoint is quantized (quantization_config, quant_method "
                f"{method!r}); this implementation loads unquantized weights (bf16, fp16 or "
                "fp32): use the unquantized checkpoint, or serve this one with vLLM and reach it "
                "with --model http://HOST:PORT/v1")
        rope = (object_field(text_raw, "rope_parameters")
                or object_field(text_raw, "rope_scaling"))
        rope_type = rope.get("rope_type", rope.get("type")) or "default"
        if rope_type not in ROPE_TYPES:
            raise ValueError(f"config.json asks for rope type {rope_type!r}, which this "
                             "implementation does not compute (only the default M-RoPE): remove "
                             "the rope scaling settings from config.json")
        if text_raw.get("hidden_act", "silu") != "silu":  # the decoder's MLP computes SiLU only
            raise ValueError(f"config.json: the decoder's hidden_act {text_raw['hidden_act']!r} "
                             "is not one this implementation computes (silu)")
        hidden = _size(text_raw, "hidden_size")
        heads = _size(text_raw, "num_attention_heads")
        if hidden % heads:
            raise ValueError(f"config.json: hidden_size {hidden} is not a multiple of "
                             f"num_attention_heads {heads}")
        kv_heads = text_raw.get("num_key_value_heads") or heads
        text = TextConfig(
            vocab_size=_size(text_raw, "vocab_size"),
            hidden_size=hidden,
            intermediate_size=_size(text_raw, "intermediate_size"),
            num_hidden_layers=_size(text_raw, "num_hidden_layers"),
            num_attention_heads=heads,
            num_key_value_heads=kv_heads,
            rms_norm_eps=text_raw.get("rms_norm_eps", TextConfig.rms_norm_eps),
            rope_theta=rope.get("rope_theta", text_raw.get("rope_theta", 1_000_000.0)),
            mrope_section=whole_numbers(rope, "mrope_section", (16, 24, 24)),
            max_position_embeddings=text_raw.get("max_position_embeddings") or 32768,
        )
        check_fields(text, "text_config")
        if heads % text.num_key_value_heads:  # each key/value head serves a group of heads
            raise ValueError(f"config.json: num_attention_heads {heads} is not a multiple of "
                             f"num_key_value_heads {text.num_key_value_heads}")
        _check_no_sliding_window(text_raw, text)
        if len(text.mrope_section) != 3 or sum(text.mrope_section) * 2 != text.head_dim:
            raise ValueError(
                f"mrope_section {list(text.mrope_section)} must sum to head_dim/2 = {text.head_dim // 2}"
            )
        v = object_field(raw, "vision_config")
        # --- architecture hook: Qwen2.5-VL's window-attention tower reads its own fields ---
        if model_type == "qwen2_5_vl":
            from model.config_qwen25 import window_vision_config

            vision = window_vision_config(v, hidden)
        else:
            vision = VisionConfig(
                depth=v.get("depth", 32),
                embed_dim=v.get("embed_dim", 1280),
                num_heads=v.get("num_heads", 16),
                mlp_ratio=v.get("mlp_ratio", 4),
                hidden_act=v.get("hidden_act", "quick_gelu"),
                in_channels=v.get("in_channels", v.get("in_chans", 3)),
                patch_size=v.get("patch_size", v.get("spatial_patch_size", 14)),
                temporal_patch_size=v.get("temporal_patch_size", 2),
                spatial_merge_size=v.get("spatial_merge_size", 2),
                out_dim=hidden,
                rope_theta=object_field(v, "rope_parameters").get("rope_theta", 10_000.0),
            )
            check_fields(vision, "vision_config")
        if vision.embed_dim % vision.num_heads:
            raise ValueError(f"config.json: the vision tower's width {vision.embed_dim} is not a "
                             f"multiple of its num_heads {vision.num_heads}")
        if vision.hidden_act not in VISION_ACTIVATIONS:  # else a KeyError building the tower
            raise ValueError(f"config.json: vision_config's hidden_act {vision.hidden_act!r} is "
                             f"not one this implementation computes "
                             f"({', '.join(VISION_ACTIVATIONS)})")
        eos = text_raw.get("eos_token_id")
        return cls(
            text=text,
            vision=vision,
            **{key: _token_id(raw.get(key, default), key) for key, default in _TOKEN_IDS.items()},
            tie_word_embeddings=bool(
                raw.get("tie_word_embeddings", False) or text_raw.get("tie_word_embeddings", False)
            ),
            # transformers stops at every id of a list, not only the first
            eos_token_ids=tuple(_token_id(e, "eos_token_id") for e in
                                (eos if isinstance(eos, list) else [] if eos is None else [eos])),
            model_type=model_type,
        )

    @classmethod
    def from_pretrained(cls, path: str | Path) -> Qwen2VLConfig:
        raw = read_json(Path(path) / "config.json")
        try:
            return cls.from_dict(raw)
        except ValueError as exc:  # name the checkpoint: a run may load several
            raise ValueError(f"{path}: {exc}") from None


def _check_no_sliding_window(text_raw: dict[str, Any], text: TextConfig) -> None:
    """Refuse a decoder whose layers would attend within a sliding window, which this
    implementation does not compute, unless the window holds the whole context anyway. The
    layers that slide are transformers': ``layer_types`` where config.json lists them, else
    those from ``max_window_layers`` on, and only with ``use_sliding_window``."""
    if not text_raw.get("use_sliding_window"):
        return
    window = text_raw.get("sliding_window", 4096)
    context = text.max_position_embeddings
    kinds = text_raw.get("layer_types") or [
        "sliding_attention" if i >= text_raw.get("max_window_layers", 80) else "full_attention"
        for i in range(text.num_hidden_layers)]
    sliding = [i for i, kind in enumerate(kinds) if kind == "sliding_attention"]
    if window is not None and sliding and window < context:
        raise ValueError(
            f"config.json asks for sliding-window attention of {window} tokens in decoder "
            f"layer(s) {', '.join(map(str, sliding))} (use_sliding_window, sliding_window, "
            "max_window_layers or layer_types), which this implementation does not compute: it "
            "attends to the whole context. Set use_sliding_window to false, or sliding_window to "
            f"max_position_embeddings ({context}) or more")


def check_fields(cfg: Any, section: str) -> None:
    """A ValueError naming the field where config.json gave a value of the wrong kind: sizes and
    counts are whole numbers above 0, rates and epsilons finite numbers above 0, index lists whole
    numbers (a string "1e-6" or a null would fail later, deep in a forward pass)."""
    for f in fields(cfg):
        value, kind = getattr(cfg, f.name), str(f.type)
        if kind == "int":
            ok = isinstance(value, int) and not isinstance(value, bool) and value >= 1
            want = "a whole number above 0"
        elif kind == "float":
            ok = (isinstance(value, (int, float)) and not isinstance(value, bool)
                  and math.isfinite(value) and value > 0)
            want = "a number above 0"
        elif kind == "str":
            ok, want = isinstance(value, str), "a string"
        else:  # a tuple of indexes or sizes
            ok = all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value)
            want = "a list of whole numbers"
        if not ok:
            raise ValueError(f"config.json: {section}'s {f.name} must be {want}, not {value!r}")


def check_temperature(temperature: float, name: str = "temperature") -> None:
    """A ValueError unless ``temperature`` is a finite number of at least 0: NaN cannot be
    sampled with, and an endpoint's JSON body cannot carry NaN or infinity ("Out of range float
    values are not JSON compliant", without a name)."""
    if not 0 <= temperature < math.inf:
        raise ValueError(f"{name} must be a finite number of at least 0, got {temperature}")


def check_repetition_penalty(penalty: float | None, name: str = "repetition_penalty") -> None:
    """A ValueError unless ``penalty`` is None or a finite number above 0."""
    if penalty is not None and not (isinstance(penalty, (int, float))
                                    and not isinstance(penalty, bool)
                                    and 0 < penalty < float("inf")):
        raise ValueError(f"{name} must be a number above 0 (1: none), got {penalty!r}")


def whole_numbers(raw: dict[str, Any], key: str, default: tuple[int, ...]) -> tuple[int, ...]:
    value = raw.get(key, default)
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"config.json: {key} must be a list of whole numbers, not {value!r}")
    return tuple(value)


#: The special tokens' ids config.json may give, and Qwen2-VL's own.
_TOKEN_IDS = {"image_token_id": 151655, "video_token_id": 151656,
              "vision_start_token_id": 151652, "vision_end_token_id": 151653}


def _token_id(value: Any, key: str) -> int:
    """A special token's id: a whole number (a string would fail deep in the processor)."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"config.json: {key} must be a whole number, not {value!r}")
    return value


def object_field(raw: dict[str, Any], key: str) -> dict[str, Any]:
    """A nested part of config.json; absent or null is empty (every field then has a default)."""
    part = raw.get(key)
    if part is None:
        return {}
    if not isinstance(part, dict):
        raise ValueError(f"config.json: {key} must be an object, not {part!r}")
    return part


def _size(raw: dict[str, Any], key: str) -> int:
    """A field without a default: the model's shape cannot be guessed."""
    if key not in raw:
        raise ValueError(f"config.json has no {key}, and the model's shape cannot be known "
                         "without it: download the checkpoint again")
    value = raw[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"config.json: {key} must be a whole number above 0, not {value!r}")
    return value


def read_json(file: Path) -> dict[str, Any]:
    """Read a checkpoint's JSON file with an error that names it."""
    if not file.is_file():
        raise FileNotFoundError(
            f"{file.name} not found in {file.parent}: a Qwen2-VL or Qwen2.5-VL checkpoint directory needs it"
        )
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{file} is not valid JSON: {e}") from e
    if not isinstance(data, dict):
        raise ValueError(f"{file} holds {type(data).__name__}, not a JSON object")
    return data
