"""The special tokens of Qwen2-VL's tokenizer that frame a prompt: its turns and its images.

A leaf, so that the model, the server and the SFT exports share one list.
"""

import re

#: Each image is ``<|vision_start|>`` + its ``<|image_pad|>`` tokens + ``<|vision_end|>``.
VISION_TOKENS = ("<|vision_start|>", "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>",
                 "<|video_pad|>")
#: ChatML's turns, and the end of a document.
CHAT_TOKENS = ("<|im_start|>", "<|im_end|>", "<|endoftext|>")
#: A reply's text leaves these out: sent back in a conversation (an agent's history, a client
#: of ``serve``), they would be read as its structure, a turn or an image that is not there.
#: The grounding tokens (``<|box_start|>`` and the like) stay: the dialects parse them.
FRAMING_TOKENS = CHAT_TOKENS + VISION_TOKENS

_FRAMING = re.compile("|".join(map(re.escape, FRAMING_TOKENS)))


def unframed(text: str) -> str:
    """``text`` without the spelled-out ``FRAMING_TOKENS`` (again until none is left, since
    taking one out can join the pieces of another): how a prompt's text reaches the model."""
    while (cut := _FRAMING.sub("", text)) != text:
        text = cut
    return text
