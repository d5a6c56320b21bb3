"""Build tiny random Qwen2-VL / Qwen2.5-VL checkpoints: transformers' own model, saved like the hub.

The tests build their reference checkpoints with it, and ``agent_cli.py model tiny DIR`` writes one
to try a run offline (its replies are random text).

The directory holds what a real checkpoint holds: config.json and *.safetensors written by
``save_pretrained`` (optionally sharded with an index), a byte-level BPE ``tokenizer.json`` that can
encode any unicode text and carries every Qwen2-VL special token, generation_config.json and
preprocessor_config.json. Weights are re-drawn with unit-scale statistics so logits are O(1) and a
wrong rotary or mask shows up far above the parity tolerance.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from core.geometry import DEFAULT_MAX_PIXELS, DEFAULT_MIN_PIXELS

# In the order of the real vocabulary (151643..151656).
SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
]
BPE_VOCAB = 560  # 256 byte symbols plus learned merges; the special tokens follow
VOCAB_SIZE = 608  # padded past the special tokens, as the real checkpoints pad 151657 -> 151936

# The Qwen2-VL-Instruct chat template (chat_template.json of the released checkpoints; that of
# Qwen2.5-VL-Instruct is the same text, with the same default system message).
CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}"
    "{{ message['content'] }}<|im_end|>\n{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}Picture "
    "{{ image_count.value }}: {% endif %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}{% if add_vision_id %}Video "
    "{{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

_CORPUS = """\
You are a helpful assistant. Tap the search button, then type the query and press enter.
*FUNCTION*: Tap *ARGS*: {"point": (348,291)} *RESULT*: done *RETURN*: The page is open.
<tool_call>{"name": "mobile_use", "arguments": {"action": "click", "coordinate": [935, 406]}}
Thought: I should open the settings app. Action: click(start_box='(120,455)') finished()
The quick brown fox jumps over the lazy dog. 0123456789 user assistant system screenshot
"""

DEFAULT_TEXT = dict(
    hidden_size=256,
    intermediate_size=320,
    num_hidden_layers=2,
    num_attention_heads=2,  # head_dim 128: the real mrope_section [16, 24, 24]
    num_key_value_heads=1,
    rms_norm_eps=1e-6,
    max_position_embeddings=4096,
    rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0, "mrope_section": [16, 24, 24]},
)
DEFAULT_VISION = dict(depth=2, embed_dim=32, num_heads=2, mlp_ratio=2)
# Qwen2.5-VL: 112-pixel windows (4x4 merged tokens); block 1 of 3 attends over whole images.
DEFAULT_VISION_25 = dict(
    depth=3, hidden_size=32, intermediate_size=48, num_heads=2, window_size=112,
    fullatt_block_indexes=[1],
)  # fmt: skip


def build_tokenizer():
    """A deterministic byte-level BPE with the Qwen2-VL special tokens at ids BPE_VOCAB.., which
    splits and normalizes text as the released tokenizer.json does: transformers' Qwen2Tokenizer
    applies that rule whatever the file says, so another one would count tokens otherwise."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX  # Qwen2's split

    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=BPE_VOCAB,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
        min_frequency=1,
    )
    tok.train_from_iterator([_CORPUS] * 4, trainer=trainer)
    n = tok.get_vocab_size()
    if n > BPE_VOCAB:
        raise RuntimeError(f"BPE grew to {n} tokens, more than {BPE_VOCAB}")
    # Pad the learned vocabulary with never-merged filler so the special ids are fixed.
    tok.add_tokens([f"<|filler_{i}|>" for i in range(BPE_VOCAB - n)])
    tok.add_special_tokens(SPECIAL_TOKENS)
    return tok


def _reinit_(model, seed: int) -> None:
    """Unit-scale random weights: O(1) activations and logits, norms near but not at 1."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=gen)
            if p.ndim == 1 and ("norm" in name or "ln_" in name):
                p.copy_(1.0 + 0.1 * noise if name.endswith("weight") else 0.1 * noise)
            elif p.ndim == 1:  # biases
                p.copy_(0.1 * noise)
            elif "embed_tokens" in name or "lm_head" in name:
                p.copy_(noise * (1.0 if "embed_tokens" in name else 1.0 / math.sqrt(p.shape[1])))
            else:
                fan_in = p[0].numel()
                p.copy_(noise / math.sqrt(fan_in))


def make_tiny_checkpoint(
    directory: str | Path,
    *,
    seed: int = 0,
    text_overrides: dict[str, Any] | None = None,
    vision_overrides: dict[str, Any] | None = None,
    tie_word_embeddings: bool = False,
    max_shard_size: str | int | None = None,
    preprocessor_overrides: dict[str, Any] | None = None,
    model_type: str = "qwen2_vl",
) -> Path:
    """Write a tiny random Qwen2-VL (or, with model_type="qwen2_5_vl", Qwen2.5-VL) checkpoint to
    ``directory`` and return its path."""
    import torch

    try:
        import transformers
    except ImportError:  # a test extra: the checkpoint is transformers' own model, saved
        raise RuntimeError("a tiny checkpoint is built with transformers: "
                           "pip install -e '.[test]'") from None
    transformers.utils.logging.disable_progress_bar()  # no "Writing model shards" bar

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tok = build_tokenizer()
    ids = {t: tok.token_to_id(t) for t in SPECIAL_TOKENS}

    text = {
        **DEFAULT_TEXT,
        "vocab_size": VOCAB_SIZE,
        "bos_token_id": ids["<|endoftext|>"],
        "eos_token_id": ids["<|im_end|>"],
        **(text_overrides or {}),
    }
    if model_type == "qwen2_5_vl":
        config_class = transformers.Qwen2_5_VLConfig
        model_class = transformers.Qwen2_5_VLForConditionalGeneration
        # Here hidden_size is the tower's width and out_hidden_size the language model's.
        vision = {**DEFAULT_VISION_25, "out_hidden_size": text["hidden_size"], **(vision_overrides or {})}
    else:
        config_class = transformers.Qwen2VLConfig
        model_class = transformers.Qwen2VLForConditionalGeneration
        vision = {**DEFAULT_VISION, "hidden_size": text["hidden_size"], **(vision_overrides or {})}
    config = config_class(
        text_config=text,
        vision_config=vision,
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=tie_word_embeddings,
    )
    torch.manual_seed(seed)
    model = model_class(config).eval()
    _reinit_(model, seed)
    if tie_word_embeddings:
        model.tie_weights()
    kwargs = {"max_shard_size": max_shard_size} if max_shard_size is not None else {}
    model.save_pretrained(directory, **kwargs)

    tok.save(str(directory / "tokenizer.json"))
    (directory / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "tokenizer_class": "Qwen2Tokenizer",
                "eos_token": "<|im_end|>",
                "pad_token": "<|endoftext|>",
                "chat_template": CHAT_TEMPLATE,
            },
            indent=2,
        )
    )
    (directory / "generation_config.json").write_text(
        json.dumps(
            {
                "bos_token_id": ids["<|endoftext|>"],
                "pad_token_id": ids["<|endoftext|>"],
                "eos_token_id": [ids["<|im_end|>"], ids["<|endoftext|>"]],
                "do_sample": False,
            },
            indent=2,
        )
    )
    preprocessor = {
        "min_pixels": DEFAULT_MIN_PIXELS,
        "max_pixels": DEFAULT_MAX_PIXELS,
        "patch_size": 14,
        "temporal_patch_size": 2,
        "merge_size": 2,
        "image_mean": [0.48145466, 0.4578275, 0.40821073],
        "image_std": [0.26862954, 0.26130258, 0.27577711],
        "image_processor_type": "Qwen2VLImageProcessor",
        "processor_class": "Qwen2_5_VLProcessor" if model_type == "qwen2_5_vl" else "Qwen2VLProcessor",
        **(preprocessor_overrides or {}),
    }
    (directory / "preprocessor_config.json").write_text(json.dumps(preprocessor, indent=2))
    return directory
