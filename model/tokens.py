"""The ids of the special tokens that frame a prompt (``core.special_tokens`` names them).

Kept apart from ``model.processor`` so that it imports without torch.
"""

from core.special_tokens import FRAMING_TOKENS


def framing_ids(tokenizer) -> frozenset[int]:
    """The ids of ``FRAMING_TOKENS`` in ``tokenizer`` (a processor or a tokenizers.Tokenizer)."""
    return frozenset(i for t in FRAMING_TOKENS if (i := tokenizer.token_to_id(t)) is not None)
