"""Generation in gpt-fast's shape: a prefill fills a static KV cache, then ``decode`` samples.

Entry points (all under ``torch.inference_mode``):

- ``generate(model, input_ids, pixel_values, image_grid_thw, attention_mask, options)``: a batch of
  left-padded prompts (the processor's layout) -> one ``Generation`` per row.
- ``prefill(model, input_ids, pixel_values, image_grid_thw, attention_mask, max_new_tokens)``
  -> ``Prefilled``: allocates the caches (``ensure_cache``; ``kept=True``: ``kept_cache``, what a
  compiled decode on CUDA uses), runs the prompt, keeps the last logits.
- ``decode(model, state, options, prompts)``: starts from a filled cache; ``prompts`` are
  each row's prompt ids without padding (a repetition penalty counts them). ``state`` is a
  ``Prefilled``: ``logits`` (B, vocab) of the last cached position, ``pos`` (the cache
  position the next token is written to, i.e. the cached length), ``rope_delta`` (B, 1) (a
  decoded token's M-RoPE position is its cache position + delta) and ``key_valid`` ((B, pos)
  bool, False on left padding; None when nothing is padded). A caller with its own prefill (a
  prefix-reusing session) calls ``ensure_cache(model, batch, pos + max_new_tokens)`` before
  filling the cache, then ``decode`` (a cache that is already big enough is kept with its
  contents; a new one starts empty).
- ``decode_rows(model, state, options, rows, pause, ended, generator)``: ``decode`` for ``Row``s
  that each have their own budget and may have written tokens before; it can stop after any
  read-back (``pause``) with the logits to go on from, which is how requests join a running
  batch (``model.session.generate_together``).

A decode step attends to a prefix of the cache through a mask, with positions as tensors. Eager
steps attend to the filled part only; compiled ones (``options.compile``, CUDA graphs on cuda) to
a power of two of at least 256 slots that holds it, so the step compiles once per such length
(and batch size), a handful of shapes, without reading a long empty cache every step.

Host syncs: tokens stay on the device; the loop reads them back every ``sync_every`` steps to
check EOS ids and stop strings and to stream text. On cpu reading a tensor costs nothing, so the
default is every step; on cuda it is every 8 steps, at the price of up to 7 steps computed past
the end (their tokens are dropped). Stop strings are checked incrementally: each new token
decodes only a short window of ids, and only the tail of the text that could hold a stop string
that just completed is searched.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import torch

from core.stops import stop_strings
from model.config import check_repetition_penalty
from model.linear import mark_constants
from model.modeling import padding_mask
from model.rope import mrope_cos_sin
from model.tokens import framing_ids

if TYPE_CHECKING:
    from model.modeling import Qwen2VL


@dataclass(frozen=True)
class Sampling:
    temperature: float = 0.0  # 0: greedy
    top_k: int = 0  # 0: no limit
    top_p: float = 1.0
    seed: int | None = None
    #: Above 1, a token the row's prompt or reply holds is less likely (transformers' and
    #: vLLM's repetition_penalty); 1: none; None: the model's (generation_config.json's).
    repetition_penalty: float | None = None

    def __post_init__(self) -> None:
        # Refused here: a NaN temperature would surface in ``sample`` as multinomial's
        # "probability tensor contains inf, nan"; other values out of range would pass
        # silently as something else (a negative temperature as greedy).
        if not self.temperature >= 0:  # NaN too
            raise ValueError(f"temperature must be at least 0, got {self.temperature}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be at least 0 (0: no limit), got {self.top_k}")
        if not 0 <= self.top_p <= 1:  # 0 keeps the likeliest token only (``sample``)
            raise ValueError(f"top_p must be in [0, 1], got {self.top_p}")
        # The backends' and serve's range; torch's generator overflows past 2**64.
        if self.seed is not None and not 0 <= self.seed < 2**63:
            raise ValueError(f"seed must be in [0, 2^63), got {self.seed}")
        check_repetition_penalty(self.repetition_penalty)


@dataclass(frozen=True)
class GenerationOptions:
    max_new_tokens: int = 64
    sampling: Sampling = field(default_factory=Sampling)
    stop: tuple[str, ...] = ()
    #: None: the model's (generation_config.json's).
    eos_token_ids: tuple[int, ...] | None = None
    #: For stop strings, streaming and ``Generation.text``: a processor or a tokenizers.Tokenizer.
    tokenizer: Any = None
    #: Called with (row, piece) as text becomes final; the pieces of a row join to its ``text``.
    on_text: Callable[[int, str], None] | None = None
    compile: bool = False
    #: Read tokens back every this many steps; None: 1 on cpu, 8 on cuda (see the docstring).
    sync_every: int | None = None
    #: Called with a row at each read-back: True once nobody waits for that row (a server's
    #: client that left). The row stops there ("dropped"); the loop ends when all rows have.
    dropped: Callable[[int], bool] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "stop", stop_strings(self.stop))


@dataclass
class Generation:
    #: New tokens, the EOS or stop-completing token that ended it included.
    tokens: list[int]
    #: The decoded reply without EOS tokens and ``core.special_tokens.FRAMING_TOKENS``, cut before a
    #: stop string ("" without a tokenizer).
    text: str
    finish_reason: Literal["stop", "length", "dropped"]
    #: The stop string that ended it (not in ``text``); None when an EOS token or the budget did.
    stop: str | None = None


@dataclass
class Prefilled:
    logits: torch.Tensor  # (B, vocab) at the last cached position
    pos: int  # cached length: where the next token goes
    rope_delta: torch.Tensor  # (B, 1)
    key_valid: torch.Tensor | None  # (B, pos) bool, False on padding; None: all valid


# --- sampling -------------------------------------------------------------------------------
def penalized(logits: torch.Tensor, seen: torch.Tensor, penalty: float) -> torch.Tensor:
    """``logits`` (B, vocab) with each token ``seen`` (B, vocab) made less likely, as
    transformers' RepetitionPenaltyLogitsProcessor does: a positive logit divided by
    ``penalty``, a negative one multiplied (in float32, as transformers' scores are)."""
    logits = logits.float()
    return torch.where(seen, torch.where(logits < 0, logits * penalty, logits / penalty), logits)


def sampling_probs(logits: torch.Tensor, sampling: Sampling) -> torch.Tensor:
    """(B, vocab) logits -> the probabilities a sampled token is drawn from: temperature, then
    top-k and top-p (nucleus) filtering, as transformers' warpers do."""
    # Scaled from the row's maximum (0 after scaling), so a tiny temperature sends the others
    # to -inf instead of everything to inf (NaN probabilities); one that float32 rounds to 0
    # would make the maximum 0 / 0, so it is held at float32's smallest normal number.
    logits = logits.float()
    temperature = max(sampling.temperature, torch.finfo(torch.float32).tiny)
    logits = (logits - logits.amax(-1, keepdim=True)) / temperature
    if 0 < sampling.top_k < logits.shape[-1]:
        kth = logits.topk(sampling.top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    if sampling.top_p < 1.0:
        # As transformers' TopPLogitsWarper: the least likely tokens go while together they
        # hold at most 1 - top_p, counted up from the least likely through the same sort, so
        # that exact ties fall as they do there; the likeliest always stays (a top_p that is 0
        # in float32 too).
        sorted_logits, order = logits.sort(dim=-1)
        drop = sorted_logits.softmax(-1).cumsum(-1) <= 1 - sampling.top_p
        drop[:, -1] = False
        probs = probs.masked_fill(drop.scatter(-1, order, drop), 0.0)
    return probs


def sample(
    logits: torch.Tensor, sampling: Sampling, generator: torch.Generator | None
) -> torch.Tensor:
    """(B, vocab) -> (B,) token ids on the logits' device: greedy, or drawn from
    ``sampling_probs``."""
    if sampling.temperature <= 0:
        return logits.argmax(-1)
    return torch.multinomial(sampling_probs(logits, sampling), 1,
                             generator=generator).squeeze(-1)


# --- text: incremental detokenization and stop strings ----------------------------------------
class TextStream:
    """One row's text, decoded a few ids at a time (as transformers' TextStreamer and vLLM do).

    A byte-level token may end in the middle of a character; its text waits for the next token.
    Text that could still be the start of a stop string is held back from ``on_text``.
    """

    def __init__(
        self,
        decode: Callable[[list[int]], str],
        stop: Sequence[str],
        emit: Callable[[str], None] | None,
    ):
        self.decode, self.stop, self.emit = decode, [s for s in stop if s], emit
        self.hold = max((len(s) for s in self.stop), default=1) - 1
        self.ids: list[int] = []
        self.prefix = self.read = (
            0  # ids[prefix:read] is the context the next piece is decoded with
        )
        self.text = ""
        self.emitted = 0
        self.cut: int | None = None  # where a stop string starts, once one is found
        self.matched: str | None = None  # which stop string starts there

    def push(self, token: int) -> bool:
        """Add a token; True once the text contains a stop string."""
        self.ids.append(token)
        piece = self._new_text()
        if piece.endswith("\ufffd"):  # an unfinished character waits for the next token,
            whole = piece.rstrip("\ufffd")
            if self._stop_at(whole) is None:  # unless a stop string completed before it
                return False
            piece = whole
        self._append(piece)
        self.prefix, self.read = self.read, len(self.ids)
        return self.cut is not None

    def _new_text(self) -> str:
        """The text of ids[read:], decoded with ids[prefix:read] before it as context."""
        before = self.decode(self.ids[self.prefix : self.read])
        return self.decode(self.ids[self.prefix :])[len(before) :]

    def _stop_at(self, piece: str) -> tuple[int, str] | None:
        """Where the first stop string that ``piece`` completes starts in the text with it, and
        which one it is (the first given, of two that start there)."""
        if not self.stop:
            return None
        text, tail_start = self.text + piece, max(0, len(self.text) - self.hold)
        found = [(i, n) for n, s in enumerate(self.stop) if (i := text.find(s, tail_start)) >= 0]
        if not found:
            return None
        at, n = min(found)
        return at, self.stop[n]

    def _append(self, piece: str) -> None:
        found = self._stop_at(piece)
        self.text += piece
        if found is not None:
            self.cut, self.matched = found
            self.text = self.text[: self.cut]
        elif self.emit is not None and len(self.text) - self.hold > self.emitted:
            self.emit(self.text[self.emitted : len(self.text) - self.hold])
            self.emitted = len(self.text) - self.hold

    def finish(self) -> str:
        """The final text; flushes what was held back."""
        if self.cut is None and self.read < len(self.ids):  # ended inside a character
            self._append(self._new_text())
        if self.emit is not None and len(self.text) > self.emitted:
            self.emit(self.text[self.emitted :])
            self.emitted = len(self.text)
        return self.text


# --- caches and the decode step --------------------------------------------------------------
def ensure_cache(model: Qwen2VL, batch: int, length: int) -> int:
    """KV caches for ``batch`` rows of at least ``length`` tokens, and the decode rope tables.

    Kept between calls and reused while big enough; a new one is sized to the next power of two
    (at least 256), so a compiled step sees few distinct shapes. Returns the cache length.
    """
    text = model.model
    shape = text.cache_shape
    if shape is not None and shape[0] == batch and shape[1] >= length:
        return shape[1]
    capacity = _bucket(length)
    text.setup_cache(batch, capacity)
    # A decoded token's three M-RoPE rows are equal, so its rotation is plain 1D rope at its
    # position, which is below its cache position: one table row per cache slot.
    cfg = text.cfg
    slots = torch.arange(capacity, device=model.device).expand(3, 1, -1)
    cos, sin = mrope_cos_sin(slots, cfg.head_dim, cfg.rope_theta, cfg.mrope_section, model.dtype)
    text.rope_cos, text.rope_sin = cos[0, 0], sin[0, 0]
    text.cache_slots = torch.arange(capacity, device=model.device)
    return capacity


def new_cache(model: Qwen2VL, batch: int, length: int
              ) -> tuple[list[Any], tuple[torch.Tensor, ...]]:
    """Fresh caches for ``batch`` rows of at least ``length`` tokens and their decode tables
    (``ensure_cache``'s), left off the model's layers for their owner to put on."""
    text = model.model
    text.clear_cache()  # so ensure_cache allocates afresh
    ensure_cache(model, batch, length)
    made = [layer.self_attn.cache for layer in text.layers]
    text.clear_cache()
    return made, (text.rope_cos, text.rope_sin, text.cache_slots)


#: Per model, the cache a compiled decode on CUDA keeps between calls, with its rope tables.
_KEPT: weakref.WeakKeyDictionary[Any, tuple[list[Any], tuple[torch.Tensor, ...]]] = (
    weakref.WeakKeyDictionary())
#: Devices whose compiled decode keeps its cache (CUDA graphs there; see ``kept_cache``).
KEEPING_DEVICES = {"cuda"}


def keeps_cache(model: Qwen2VL, options: GenerationOptions) -> bool:
    return options.compile and model.device.type in KEEPING_DEVICES


def kept_cache(model: Qwen2VL, batch: int, length: int) -> None:
    """Put on the model's layers the first ``batch`` rows of the cache it keeps for compiled
    decoding, grown first if it has fewer rows or fewer than ``length`` positions.

    CUDA graphs are recorded on their inputs' addresses, caches and rope tables included, and
    torch records again whenever one changes: a cache made per call, or a session's own, would
    do that every call. The kept one grows to the most rows and the most positions asked for so
    far (their product: one batch of 8 and one long conversation make 8 long rows), so each
    batch size finds its cache at the same address call after call. Its contents are
    overwritten where a call fills it and masked elsewhere.
    """
    text = model.model
    kept = _KEPT.get(model)
    rows, slots = (kept[0][0].k.shape[0], kept[0][0].k.shape[2]) if kept else (0, 0)
    if rows < batch or slots < length:
        # Every reference to the old cache goes before the new one is made.
        _KEPT.pop(model, None)
        del kept
        kept = _KEPT[model] = new_cache(model, max(rows, batch), max(slots, length))
    for layer, cache in zip(text.layers, kept[0]):
        layer.self_attn.cache = cache.rows(batch)
    text.rope_cos, text.rope_sin, text.cache_slots = kept[1]


def decode_step(
    model: Qwen2VL,
    token: torch.Tensor,
    pos: torch.Tensor,
    rope_pos: torch.Tensor,
    key_valid: torch.Tensor,
) -> torch.Tensor:
    """One token per row at cache position ``pos`` (1,): logits (B, vocab). token (B, 1),
    rope_pos (B,) and key_valid (B, keys) bool: the step attends to the first ``keys`` cache
    slots (``attended_slots``)."""
    text = model.model
    mask = (key_valid & (text.cache_slots[: key_valid.shape[1]] <= pos))[:, None, None, :]
    cos, sin = text.rope_cos[rope_pos][:, None, None, :], text.rope_sin[rope_pos][:, None, None, :]
    hidden = text(text.embed_tokens(token), cos, sin, pos, mask)
    return model.lm_head(hidden[:, -1])


def attended_slots(filled: int, capacity: int, compiled: bool) -> int:
    """Cache slots a decode step attends to: the filled ones in eager; for a compiled step, a
    power of two (at least 256) that holds them, so it sees few distinct shapes."""
    return filled if not compiled else min(capacity, _bucket(filled))


def _bucket(n: int) -> int:
    """The power of two (at least 256) that holds ``n``: cache and attended lengths."""
    return max(256, 1 << (n - 1).bit_length())


_COMPILED: weakref.WeakKeyDictionary[Any, Callable[..., torch.Tensor]] = weakref.WeakKeyDictionary()


def step_function(model: Qwen2VL, compile: bool) -> Callable[..., torch.Tensor]:
    """The decode step, compiled once per model when asked (CUDA graphs on cuda)."""
    if not compile:
        return lambda *args: decode_step(model, *args)
    if model not in _COMPILED:
        cuda = model.device.type == "cuda"
        # Each batch size and attended length is a graph of its own; torch's default limit (8)
        # would send a server's later shapes back to eager.
        torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)
        mark_constants()
        compiled = torch.compile(
            decode_step, mode="reduce-overhead" if cuda else None, dynamic=False
        )

        owner = weakref.ref(model)  # a strong one would keep the model (and its caches) alive

        def step(*args: torch.Tensor) -> torch.Tensor:
            if cuda:  # a CUDA graph reuses its output buffer: the last logits are consumed by now
                torch.compiler.cudagraph_mark_step_begin()
            return compiled(owner(), *args).clone()

        _COMPILED[model] = step
    return _COMPILED[model]


# --- prefill, decode, generate ---------------------------------------------------------------
@torch.inference_mode()
def check_prompt_length(length: int) -> None:
    """A ValueError for a prompt of no tokens (an empty text without a chat template), which
    the decoder has no last position to answer from."""
    if length < 1:
        raise ValueError("the prompt has no tokens: generation answers at least one (render "
                         "the conversation with the chat template)")


def prefill(
    model: Qwen2VL,
    input_ids: torch.Tensor,
    pixel_values: torch.Tensor | None = None,
    image_grid_thw: torch.Tensor | None = None,
    attention_mask: torch.Tensor | None = None,
    max_new_tokens: int = 64,
    kept: bool = False,
) -> Prefilled:
    """Run left-padded prompts into caches with room for ``max_new_tokens``: the model's
    (``ensure_cache``), or with ``kept`` the one kept for compiled decoding (``kept_cache``)."""
    batch, length = input_ids.shape
    check_prompt_length(length)
    empty = [] if attention_mask is None else (attention_mask.sum(dim=1) == 0).nonzero()
    if len(empty):  # padding alone: the row would be answered from a pad token it masks out
        raise ValueError(f"the prompt of row {int(empty[0])} has no tokens (its attention "
                         "mask is all zeros): generation answers at least one")
    if kept:
        kept_cache(model, batch, length + max_new_tokens)
    else:
        ensure_cache(model, batch, length + max_new_tokens)
    input_ids = input_ids.to(model.device)
    embeds = model.embed(input_ids, pixel_values, image_grid_thw)
    positions, delta = model.positions(input_ids, image_grid_thw, attention_mask)
    mask = padding_mask(attention_mask, model.device)
    logits = model.decode_step(embeds, positions.to(model.device), 0, mask, last_only=True)[:, -1]
    delta, key_valid = delta.to(model.device), None
    if mask is not None:
        key_valid = attention_mask.to(model.device).bool()
        # The delta counts a row's own tokens; its cache positions also count its left padding.
        delta = delta - (~key_valid).sum(-1, keepdim=True)
    return Prefilled(logits, length, delta, key_valid)


@dataclass
class Row:
    """One sequence's decoding so far: what it wrote, and why it ended. Carried across ``decode``
    calls when the batch it decodes in changes (``model.session.generate_together``)."""

    #: New tokens it may write in all.
    budget: int
    stream: TextStream | None
    #: Its prompt's token ids, which a repetition penalty counts as seen (padding left out).
    prompt: Sequence[int] = ()
    tokens: list[int] = field(default_factory=list)
    reason: Literal["stop", "length", "dropped"] | None = None  # once it ended
    _result: Generation | None = field(default=None, repr=False)

    def generation(self) -> Generation:
        """The final result, once it ended (its stream is flushed the first time)."""
        if self._result is None:
            text = self.stream.finish() if self.stream else ""
            self._result = Generation(self.tokens, text, self.reason or "length",
                                      self.stream.matched if self.stream else None)
        return self._result

    def take(self, block: list[int], eos: set[int]) -> None:
        """Read a block of its new tokens, up to where it ends."""
        for token in block:
            if self.reason is not None:
                return
            self.tokens.append(token)
            if token in eos or (self.stream and self.stream.push(token)):
                self.reason = "stop"
            elif len(self.tokens) == self.budget:
                self.reason = "length"


@torch.inference_mode()
def decode(model: Qwen2VL, state: Prefilled, options: GenerationOptions,
           prompts: Sequence[Sequence[int]]) -> list[Generation]:
    """Sample up to ``options.max_new_tokens`` per row from a filled cache (module docstring);
    ``prompts``: each row's prompt ids without padding, which a repetition penalty counts."""
    if len(prompts) != state.logits.shape[0]:
        raise ValueError(f"decode needs the prompt ids of each of its {state.logits.shape[0]} "
                         f"rows, got {len(prompts)}")
    rows = [Row(options.max_new_tokens, text_stream(options, b), prompts[b])
            for b in range(state.logits.shape[0])]
    decode_rows(model, state, options, rows)
    return [row.generation() for row in rows]


def decode_rows(
    model: Qwen2VL, state: Prefilled, options: GenerationOptions, rows: list[Row],
    pause: Callable[[], bool] | None = None, ended: Callable[[int], None] | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor | None:
    """``decode`` for rows that may have written tokens before (each up to its own budget).

    ``ended(b)`` is called at the read-back where row b ends. ``pause()`` is asked at each
    read-back while some row goes on; once it says True, the loop feeds the last tokens and
    returns the logits after them (B, vocab): the cache then holds every token the rows that
    go on have written. Returns None when every row ended. A caller that goes on after a pause
    passes the same ``generator`` (``seeded_generator``) so a seed's stream goes on too.
    """
    batch, device = len(rows), model.device
    steps = max(row.budget - len(row.tokens) for row in rows if row.reason is None)
    cache = model.model.cache_shape
    if cache is None or cache[0] != batch or cache[1] < state.pos + steps - 1:
        raise ValueError(f"decode needs caches for {batch} rows of {state.pos + steps - 1} "
                         f"tokens (ensure_cache), found {cache}")  # fmt: skip
    eos = set(model.eos_token_ids if options.eos_token_ids is None else options.eos_token_ids)
    generator = generator or seeded_generator(options, device)
    sync_every = options.sync_every or (8 if device.type == "cuda" else 1)
    step = step_function(model, options.compile)

    key_valid = torch.ones(batch, cache[1], dtype=torch.bool, device=device)
    if state.key_valid is not None:
        key_valid[:, : state.pos] = state.key_valid
    pos = torch.tensor([state.pos], device=device)
    delta = state.rope_delta.view(batch)
    tokens = torch.empty(batch, steps, dtype=torch.long, device=device)
    logits, checked, pausing = state.logits, 0, False
    penalty = options.sampling.repetition_penalty
    penalty = model.repetition_penalty if penalty is None else penalty
    seen = _seen(rows, logits.shape[-1], device) if penalty != 1 else None
    every_row = torch.arange(batch, device=device)
    for i in range(steps):
        if seen is not None:
            logits = penalized(logits, seen, penalty)
        token = sample(logits, options.sampling, generator)
        if seen is not None:
            seen[every_row, token] = True
        tokens[:, i] = token
        if i + 1 == steps or (i + 1) % sync_every == 0:
            block = tokens[:, checked : i + 1].tolist()
            checked = i + 1
            for b, row in enumerate(rows):
                if row.reason is None:
                    row.take(block[b], eos)
                    if row.reason is None and options.dropped is not None and options.dropped(b):
                        row.reason = "dropped"
                    if row.reason is not None and ended is not None:
                        ended(b)
            if all(row.reason is not None for row in rows):
                return None
            pausing = pause is not None and pause()
        if i + 1 < steps or pausing:
            # A tensor of its own (not a slice of ``tokens``): the same layout every step, so
            # a compiled step never sees a new storage offset.
            keys = key_valid[:, : attended_slots(state.pos + i + 1, cache[1], options.compile)]
            logits = step(token[:, None], pos, pos + delta, keys)
            pos += 1
            if pausing:
                return logits
    return None


def _seen(rows: list[Row], vocab: int, device: torch.device) -> torch.Tensor:
    """(B, vocab) bool: the tokens of each row's prompt and of what it wrote so far."""
    seen = torch.zeros(len(rows), vocab, dtype=torch.bool, device=device)
    for b, row in enumerate(rows):
        ids = [*row.prompt, *row.tokens]
        if ids:
            seen[b, torch.tensor(ids, dtype=torch.long, device=device)] = True
    return seen


def seeded_generator(options: GenerationOptions, device: torch.device
                     ) -> torch.Generator | None:
    """The random stream of a seeded sampling (None: torch's global one)."""
    if options.sampling.seed is None:
        return None
    return torch.Generator(device=device).manual_seed(options.sampling.seed)


def text_stream(options: GenerationOptions, row: int) -> TextStream | None:
    """Row ``row``'s text stream (its pieces go to ``options.on_text`` with that row), or None
    without a tokenizer."""
    if options.tokenizer is None:
        if options.stop or options.on_text:
            raise ValueError(
                "stop strings and on_text need tokenizer= (the processor or its tokenizer)"
            )
        return None
    tok, on_text = options.tokenizer, options.on_text
    framing = framing_ids(tok)

    def decode(ids: list[int]) -> str:
        return tok.decode([i for i in ids if i not in framing], skip_special_tokens=False)

    return TextStream(decode, options.stop,
                      None if on_text is None else lambda piece: on_text(row, piece))


@torch.inference_mode()
def generate(
    model: Qwen2VL,
    input_ids: torch.Tensor,
    pixel_values: torch.Tensor | None = None,
    image_grid_thw: torch.Tensor | None = None,
    attention_mask: torch.Tensor | None = None,
    options: GenerationOptions | None = None,
) -> list[Generation]:
    """Prefill, then decode: one ``Generation`` per row of ``input_ids``."""
    options = options or GenerationOptions()
    if options.max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be at least 1, got {options.max_new_tokens}")
    kept = keeps_cache(model, options)
    state = prefill(model, input_ids, pixel_values, image_grid_thw, attention_mask,
                    options.max_new_tokens, kept=kept)
    unpadded = input_ids if attention_mask is None else [
        ids[mask.bool()] for ids, mask in zip(input_ids, attention_mask)]
    prompts = [ids.tolist() for ids in unpadded]
    try:
        return decode(model, state, options, prompts)
    finally:
        if kept:  # the kept cache stays with ``kept_cache``, not on the layers
            model.model.clear_cache()
