"""Prefix reuse across calls: a session keeps its KV cache and prefills only what is new.

An agent's prompt grows step by step (the qwen2vl format only ever extends one sequence), so the
next call usually repeats the previous call's tokens, screenshots included. The session compares
the new prompt with the tokens its cache holds (the previous prompt and what was generated after
it), keeps the longest common prefix, and runs the decoder over the rest only, at that offset.

- Image pad tokens look alike for every picture, so the prefix also ends where the images differ:
  each image is known by its grid and the processor's digest of what decides its pixels
  (``return_image_digests``), or else a hash of the pixels (several times the image's bytes:
  at 1080x2400, 63 MB an image, step after step).
- M-RoPE positions are computed for the whole sequence (cheap, no model) and the tail's are
  sliced off, so an image arriving in the extension shifts the later positions exactly as a full
  forward would; the rope delta for decoding comes from the same pass.
- Vision features are kept for the images of the last sequence: an image that has to be
  prefilled again (the prefix broke before it) is not encoded again.
- The cache is the session's own; it is installed on the model for a call only, so a plain
  ``Qwen2VL.generate`` in between (the server's batch path) cannot clobber it.
- ``generate_together`` serves several conversations at once (a server's agents): each session
  prefills its own new tokens, then their decode steps run as one batch.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

import torch

from model.generate import (
    Generation,
    GenerationOptions,
    Prefilled,
    Row,
    check_prompt_length,
    decode_rows,
    ensure_cache,
    keeps_cache,
    kept_cache,
    new_cache,
    seeded_generator,
    text_stream,
)
from model.modeling import Qwen2VL
from model.text import KVCache

MIN_CAPACITY = 4096
#: How much of a joining request's prompt is prefilled between two decode steps of the batch.
JOIN_CHUNK_TOKENS = 512


@dataclass(frozen=True)
class ImageSpan:
    """One image of a sequence: its pad tokens ``[start, end)`` and its place among the
    request's images."""

    key: bytes
    start: int
    end: int
    index: int
    grid: tuple[int, int, int]


#: The images' patch rows: the processor's ``pixel_values``, or a function that gives image i's
#: (``model.image_processing.ImagePatches``), asked only for images whose features are not held
#: when the images come with digests (else each image's rows are hashed for its key).
Pixels = torch.Tensor | Callable[[int], torch.Tensor]


def image_key(digest: bytes, grid: Sequence[int]) -> bytes:
    """How a session knows an image: what decides its patches, and its grid."""
    t, h, w = grid
    return digest + bytes(f"{t},{h},{w}", "ascii")


def _rows_of(pixel_values: Pixels, image_grid_thw: torch.Tensor) -> Callable[[int], torch.Tensor]:
    if callable(pixel_values):
        return pixel_values
    ends = image_grid_thw.prod(-1).cumsum(0).tolist()
    return lambda i: pixel_values[(ends[i - 1] if i else 0) : ends[i]]


@dataclass
class Prefill:
    """What one extension did, and the logits it produced."""

    logits: torch.Tensor  # (vocab,) for the last position, or (new tokens, vocab) with all_logits
    reused: int  # tokens whose cache entries were kept
    prefilled: int  # tokens run through the decoder
    encoded_images: int  # images run through the vision tower
    rope_delta: int


def image_spans(
    input_ids: torch.Tensor,
    pixel_values: Pixels | None,
    image_grid_thw: torch.Tensor | None,
    image_token_id: int,
    merge: int,
    digests: torch.Tensor | None = None,
) -> list[ImageSpan]:
    """Where each image's pad tokens sit in ``input_ids`` (1, L), keyed by its pixels (or the
    given digest of them) and grid."""
    if image_grid_thw is None:
        return []
    if pixel_values is None:
        raise ValueError("image_grid_thw needs pixel_values")
    where = (input_ids[0] == image_token_id).nonzero().flatten().tolist()
    spans, token, rows = [], 0, _rows_of(pixel_values, image_grid_thw)
    if digests is not None and len(digests) != len(image_grid_thw):
        raise ValueError(f"{len(digests)} image digests for {len(image_grid_thw)} images")
    for i, grid in enumerate(image_grid_thw.tolist()):
        tokens = math.prod(grid) // merge**2
        if digests is None:
            # SHA-256: hardware-accelerated on current CPUs, about twice blake2b's speed here.
            # As bytes: numpy has no bf16, and the rows may be on the GPU.
            digest = hashlib.sha256(rows(i).contiguous().cpu().view(torch.uint8).numpy()).digest()
        else:
            digest = digests[i].cpu().numpy().tobytes()
        if token + tokens > len(where):
            raise ValueError("more images in image_grid_thw than image tokens in input_ids")
        spans.append(ImageSpan(image_key(digest, grid), where[token],
                               where[token + tokens - 1] + 1, i, tuple(grid)))
        token += tokens
    return spans


def common_prefix(
    old_ids: Sequence[int], old_images: list[ImageSpan], new_ids: Sequence[int],
    new_images: list[ImageSpan],
) -> int:
    """Length of the longest common prefix of two sequences, where images must match by key."""
    common = 0
    for a, b in zip(old_ids, new_ids):
        if a != b:
            break
        common += 1
    old_keys = {span.start: span.key for span in old_images}
    for span in new_images:
        if span.start >= common:
            break
        if old_keys.get(span.start) != span.key:
            return span.start
    return common


class GenerationSession:
    """One conversation's KV cache on ``model``, reused across ``generate`` calls (batch 1)."""

    def __init__(self, model: Qwen2VL, capacity: int = MIN_CAPACITY) -> None:
        self.model = model
        self.capacity = capacity
        self.caches: list[KVCache] = []
        #: The decode step's tables that go with the caches (``ensure_cache`` makes both).
        self.tables: tuple[torch.Tensor, ...] = ()
        self.tokens: list[int] = []  # what the cache holds, position by position
        self.prompt_length = 0  # of the last prefill: ``tokens`` beyond it were generated
        self.images: list[ImageSpan] = []
        self.features: dict[bytes, torch.Tensor] = {}
        #: Positions computed over the session's calls (what its prefills did not find cached).
        self.prefilled_tokens = 0

    def shared_prefix(self, request: SessionRequest) -> int:
        """How many leading tokens of the request's sequence the cache already holds."""
        spans = self._spans(request.input_ids.cpu(), request.pixel_values,
                            request.image_grid_thw, request.image_digests)
        return common_prefix(self.tokens, self.images, request.input_ids[0].tolist(), spans)

    @property
    def resumed_from(self) -> int:
        """The leading tokens a request shares with the cache when it goes on with this
        conversation: the last prompt through its last image, or all of a prompt without
        images. An agent's next step rewrites what follows the current screenshot (qwen25vl
        labels the step there, qwen2vl's reply is tokenized anew with the prompt's last space)."""
        return self.images[-1].end if self.images else self.prompt_length

    def _spans(self, ids: torch.Tensor, pixel_values: Pixels | None,
               image_grid_thw: torch.Tensor | None, image_digests: torch.Tensor | None
               ) -> list[ImageSpan]:
        config = self.model.config
        return image_spans(ids, pixel_values, image_grid_thw, config.image_token_id,
                           config.vision.spatial_merge_size, image_digests)

    def held_images(self) -> frozenset[bytes]:
        """The keys (``image_key``) of the images whose vision features the session holds. Safe
        to call from another thread than the model's: the set is copied in one step under the
        GIL (the keys are bytes, so no Python code runs while it is copied)."""
        return frozenset(self.features)

    def reset(self) -> None:
        """Forget the cache (the memory goes too)."""
        self.caches, self.tables, self.tokens, self.images, self.features = [], (), [], [], {}
        self.prompt_length = 0

    # --- cache ------------------------------------------------------------------------------
    def _reserve(self, needed: int, keep: int) -> None:
        """Make room for ``needed`` positions, keeping the first ``keep``: grow, doubling."""
        if self.caches and needed <= self.caches[0].k.shape[2]:
            return
        old = self.caches
        size = max(needed, self.capacity, 2 * old[0].k.shape[2] if old else 0)
        self.caches, self.tables = new_cache(self.model, 1, size)
        for new, previous in zip(self.caches, old):
            new.k[:, :, :keep] = previous.k[:, :, :keep]
            new.v[:, :, :keep] = previous.v[:, :, :keep]

    def _attach(self) -> None:
        text = self.model.model
        for layer, cache in zip(text.layers, self.caches):
            layer.self_attn.cache = cache
        text.rope_cos, text.rope_sin, text.cache_slots = self.tables

    # --- prefixes held by other sessions ---------------------------------------------------
    def _best_donor(
        self, donors: Sequence[GenerationSession], ids: list[int], spans: list[ImageSpan],
        start: int,
    ) -> tuple[GenerationSession | None, int]:
        """The donor holding the longest prefix of ``ids`` beyond ``start``, and its length
        (at most all but the last token, which runs for its logits)."""
        best, shared = None, start
        for donor in donors:
            if donor is self or donor.model is not self.model or not donor.tokens:
                continue
            held = min(common_prefix(donor.tokens, donor.images, ids, spans), len(ids) - 1)
            if held > shared:
                best, shared = donor, held
        return best, shared

    def _adopt(self, donor: GenerationSession, start: int, end: int,
               spans: list[ImageSpan]) -> None:
        """Copy ``donor``'s cache entries ``[start, end)`` and the features of the images there."""
        for own, theirs in zip(self.caches, donor.caches):
            own.k[:, :, start:end] = theirs.k[:, :, start:end]
            own.v[:, :, start:end] = theirs.v[:, :, start:end]
        for span in spans:
            if span.start < end and span.key in donor.features:
                self.features.setdefault(span.key, donor.features[span.key])

    # --- prefill ----------------------------------------------------------------------------
    def _embed_tail(
        self, ids: torch.Tensor, start: int, spans: list[ImageSpan], pixel_values: Pixels | None,
        image_grid_thw: torch.Tensor | None, keep: frozenset[bytes] = frozenset(),
    ) -> tuple[torch.Tensor, int]:
        """Embeddings of ``ids[start:]``, image features from the session's store where known;
        the store then keeps the features of ``spans``' images and of ``keep``."""
        model = self.model
        embeds = model.model.embed_tokens(ids[:, start:].to(model.device))
        needed = [s for s in spans if s.end > start]
        missing = list({s.key: s for s in needed if s.key not in self.features}.values())
        if missing:
            rows = _rows_of(pixel_values, image_grid_thw)
            pixels = torch.cat([rows(s.index) for s in missing]).to(model.device)
            grids = torch.tensor([s.grid for s in missing], dtype=torch.long)
            features = model.image_features(pixels, grids)
            sizes = [s.end - s.start for s in missing]
            self.features.update(zip([s.key for s in missing], features.split(sizes)))
        for span in needed:
            lo = max(span.start, start)
            features = self.features[span.key][lo - span.start :]
            embeds[0, lo - start : span.end - start] = features.to(embeds.dtype)
        wanted = keep | {s.key for s in spans}
        self.features = {key: f for key, f in self.features.items() if key in wanted}
        return embeds, len(missing)

    @torch.inference_mode()
    def prefill(
        self,
        input_ids: torch.Tensor,
        pixel_values: Pixels | None = None,
        image_grid_thw: torch.Tensor | None = None,
        reserve: int = 0,
        all_logits: bool = False,
        image_digests: torch.Tensor | None = None,
        donors: Sequence[GenerationSession] = (),
        keep_images: frozenset[bytes] = frozenset(),
    ) -> Prefill:
        """Bring the cache to ``input_ids`` (1, L), running only the part not cached already.

        ``reserve`` positions after the prompt are made room for (the tokens to decode).
        ``pixel_values`` may be a function giving image i's patch rows: with ``image_digests``
        (the processor's, one row per image), which key the images instead of a hash of their
        pixels, it is asked only for the images whose vision features the session lacks after
        taking a donor's prefix (without them, every image is hashed, so every one is asked
        for). ``donors`` are other sessions on the model: where one holds a longer prefix of the
        sequence (another conversation with the same system prompt and goal), its cache entries
        are copied instead of computed again. The vision features of images not in this
        sequence are let go, but those keyed in ``keep_images`` (the rest of a prompt that is
        prefilled a chunk at a time).
        """
        if input_ids.dim() != 2 or input_ids.shape[0] != 1:
            raise ValueError(f"a session takes one sequence (1, L), got {tuple(input_ids.shape)}")
        check_prompt_length(input_ids.shape[1])
        model, config = self.model, self.model.config
        ids = input_ids.cpu()
        spans = self._spans(ids, pixel_values, image_grid_thw, image_digests)
        n_image_tokens = int((ids == config.image_token_id).sum())
        spanned = sum(s.end - s.start for s in spans)
        if spanned != n_image_tokens:
            raise ValueError(f"input_ids has {n_image_tokens} image tokens, the images {spanned}")
        new_ids, length = ids[0].tolist(), ids.shape[1]
        # At least the last token runs, for its logits.
        start = min(common_prefix(self.tokens, self.images, new_ids, spans), length - 1)
        self._reserve(length + reserve, start)
        self.tokens = self.tokens[:start]  # what follows is about to be overwritten
        donor, shared = self._best_donor(donors, new_ids, spans, start)
        if donor is not None:
            self._adopt(donor, start, shared, spans)
            # What the cache holds now, should the rest of the prefill fail.
            start, self.tokens = shared, new_ids[:shared]
            self.images = [span for span in spans if span.start < shared]

        positions, delta = model.positions(ids, image_grid_thw)
        embeds, encoded = self._embed_tail(ids, start, spans, pixel_values, image_grid_thw,
                                           keep_images)
        self._attach()
        try:
            # The head over the last position only: over a 3,000-token screenshot it would cost
            # more than the decoder layers of a small model.
            logits = model.decode_step(embeds, positions[:, :, start:].to(model.device), start,
                                       last_only=not all_logits)[0]
        finally:
            model.model.clear_cache()
        if not all_logits:
            logits = logits[-1]
        self.tokens, self.images, self.prompt_length = new_ids, spans, length
        self.prefilled_tokens += length - start
        return Prefill(logits, start, length - start, encoded, int(delta))

    # --- generation -------------------------------------------------------------------------
    def generate(
        self,
        input_ids: torch.Tensor,
        pixel_values: Pixels | None = None,
        image_grid_thw: torch.Tensor | None = None,
        options: GenerationOptions | None = None,
        image_digests: torch.Tensor | None = None,
    ) -> Generation:
        """``model.generate.generate`` for one sequence, with the session's cache."""
        request = SessionRequest(input_ids, pixel_values, image_grid_thw, image_digests)
        return generate_together([self], [request], options)[0]


@dataclass(frozen=True)
class SessionRequest:
    """One sequence for a session: ``GenerationSession.prefill``'s tensors."""

    input_ids: torch.Tensor  # (1, L)
    pixel_values: Pixels | None = None
    image_grid_thw: torch.Tensor | None = None
    image_digests: torch.Tensor | None = None
    #: Its own budget of new tokens; None: ``GenerationOptions.max_new_tokens``.
    max_new_tokens: int | None = None


class Joining(Protocol):
    """Requests that join a running ``generate_together`` (a server's continuous batching)."""

    def waiting(self, busy: Sequence[GenerationSession], decoding: int) -> bool:
        """Asked at each read-back: is a request waiting that could join, now or once the rows
        that ended hand back their sessions? ``busy``: the sessions of the batch's rows, those
        that ended since it last stopped included (what they wrote reaches their sessions only
        then); ``decoding``: the rows not ended."""

    def admit(self, busy: Sequence[GenerationSession], decoding: int
              ) -> list[tuple[GenerationSession, SessionRequest]]:
        """The requests that join now, each with a session not in ``busy`` (none when no such
        session is free: the batch then stops to hand back the sessions of the rows that
        ended). Their rows are numbered on from the last row so far (for ``options``'
        callbacks and ``done``)."""

    def done(self, row: int, generation: Generation) -> None:
        """Row ``row``'s result, at the read-back where it ended."""

    def failed(self, row: int, error: Exception) -> None:
        """Row ``row``'s request could not join: its prefill raised ``error``. The batch goes
        on without it."""


@dataclass
class _Running:
    """A row of ``generate_together``: its session, what it wrote, and what it samples next
    from (the logits after its last cached token)."""

    index: int
    session: GenerationSession
    row: Row
    rope_delta: int
    logits: torch.Tensor


@torch.inference_mode()
def generate_together(
    sessions: Sequence[GenerationSession],
    requests: Sequence[SessionRequest],
    options: GenerationOptions | None = None,
    donors: Sequence[GenerationSession] = (),
    joining: Joining | None = None,
    chunk_tokens: int = JOIN_CHUNK_TOKENS,
) -> list[Generation]:
    """Each session prefills its own request (only what neither its cache nor another session
    holds: the batch's sessions and ``donors``), then their decode steps run as one batch: row b
    of ``options``' callbacks is request b.

    The sessions' caches have their own lengths, so the batch decodes in a cache of its own:
    each row's cached sequence is copied in right-aligned (the positions before it masked, as
    left padding is), and what the batch decoded is copied back after its sequence. The copies
    cost a memory pass over the caches, next to steps that each read all the weights. On a CPU,
    once half the rows have ended, the others go on in a batch cache of their own.

    With ``joining``, requests join while the batch decodes. Once some wait, each read-back
    prefills about ``chunk_tokens`` more of their prompts in their own sessions (never part of
    an image), so the rows decoding wait for a chunk at a time, not for whole prompts; when the
    newcomers have less than a chunk left, the batch stops after its next step, copies its rows
    back, lets the rows that ended go, prefills the newcomers' rest and decodes on with all of
    them in a new batch cache. Each row ends at its own budget (its request's
    ``max_new_tokens``, else the options'), and ``joining.done`` gets its result as soon as it
    ended. A newcomer whose prefill fails goes to ``joining.failed`` and the others decode on.
    Returns the results of ``requests``.
    """
    options = options or GenerationOptions()
    if options.max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be at least 1, got {options.max_new_tokens}")
    if len(sessions) != len(requests) or len({id(s) for s in sessions}) != len(sessions):
        raise ValueError("generate_together takes one distinct session per request")
    model = sessions[0].model
    everyone = [*sessions, *(d for d in donors if d not in sessions)]
    rows: list[_Running] = []
    generator = seeded_generator(options, model.device)  # one stream across the pauses

    def budget_of(r: SessionRequest) -> int:
        return options.max_new_tokens if r.max_new_tokens is None else r.max_new_tokens

    def donors_now() -> list[GenerationSession]:
        return [*everyone, *(x.session for x in rows)]

    def start(newcomers: Sequence[_Newcomer], joined: bool) -> list[_Running]:
        new = []
        for n in newcomers:
            if n.index in failed:
                continue
            r, budget = n.request, budget_of(n.request)
            try:
                if n.session.model is not model:
                    raise ValueError("the sessions of one batch must share their model")
                if budget < 1:
                    raise ValueError(f"max_new_tokens must be at least 1, got {budget}")
                done = n.session.prefill(r.input_ids, r.pixel_values, r.image_grid_thw, budget,
                                         image_digests=r.image_digests, donors=donors_now())
            except Exception as exc:
                if not joined:
                    raise
                # A newcomer that cannot start (out of memory on its image) fails alone.
                joining.failed(n.index, exc)
                continue
            row = Row(budget, text_stream(options, n.index), r.input_ids[0].tolist())
            new.append(_Running(n.index, n.session, row, done.rope_delta, done.logits))
        rows.extend(new)
        return new

    numbers = itertools.count()  # rows, newcomers that fail included
    failed: set[int] = set()
    waiting: list[_Newcomer] = []  # admitted, prefilled a chunk at a time

    def admit(busy: list[GenerationSession], decoding: int) -> None:
        for session, r in joining.admit(busy, decoding):
            newcomer = _Newcomer(next(numbers), session, r)
            try:
                spans = session._spans(r.input_ids.cpu(), r.pixel_values, r.image_grid_thw,
                                       r.image_digests)
                newcomer.held = common_prefix(session.tokens, session.images,
                                              r.input_ids[0].tolist(), spans)
                newcomer.images = frozenset(span.key for span in spans)
            except Exception as exc:  # a request the session cannot read fails alone
                failed.add(newcomer.index)
                joining.failed(newcomer.index, exc)
            waiting.append(newcomer)

    def prefill_chunk() -> None:
        """The next chunk of the first newcomer with more than a chunk left."""
        for n in waiting:
            end = None if n.index in failed else _chunk_end(n, chunk_tokens, image_token)
            if end is None:
                continue
            r = n.request
            try:
                with _cache_set_aside(model):
                    n.session.prefill(**_head(r, end, image_token, merge),
                                      reserve=r.input_ids.shape[1] - end + budget_of(r),
                                      donors=donors_now(), keep_images=n.images)
                n.held = end
            except Exception as exc:
                failed.add(n.index)
                joining.failed(n.index, exc)
            return

    image_token = model.config.image_token_id
    merge = model.config.vision.spatial_merge_size
    shrinks = model.device.type == "cpu"
    active = start([_Newcomer(next(numbers), s, r) for s, r in zip(sessions, requests)],
                   joined=False)
    while active:
        going = [r for r in active if r.row.reason is None]
        # Every row of the segment, those that ended too: their sessions get what they wrote
        # only when it ends, so a newcomer may not take one before.
        busy = [r.session for r in going]

        def pause() -> bool:
            decoding = sum(r.row.reason is None for r in going)
            if joining is not None and not waiting and joining.waiting(busy, decoding):
                admit(busy, decoding)
                if not waiting and decoding < len(busy):
                    # The sessions it needs are held by rows that ended: stop, so that they
                    # go back (and the next stretch admits it).
                    return True
            if waiting:
                prefill_chunk()
                # Stop once what is left of each newcomer is at most a chunk.
                return all(n.index in failed or _chunk_end(n, chunk_tokens, image_token) is None
                           for n in waiting)
            # Rows that ended still run in the batch (its shape is fixed). On a CPU each row
            # costs its share of a step, so once they are half of it the rows that go on
            # decode in a batch of their own; on a GPU a step costs about the same at any
            # batch size, and each new size would record its CUDA graphs again.
            return shrinks and 2 * decoding <= len(going)
        ended = None if joining is None else (
            lambda b: joining.done(going[b].index, going[b].row.generation()))
        paused = _decode_segment(model, going, options, pause, ended, generator)
        active = [r for r in going if r.row.reason is None]
        for r, logits in zip(going, paused if paused is not None else []):
            r.logits = logits
        if joining is not None:
            if not waiting and not active:  # rows decoding admit newcomers in their pauses
                admit([], 0)
            active += start(waiting, joined=True)
            waiting.clear()
    return [r.row.generation() for r in rows[: len(requests)]]


@dataclass
class _Newcomer:
    """A request on its way into ``generate_together``: its row number, its session, its
    sequence, and how much of it the session holds (prefilled a chunk at a time)."""

    index: int
    session: GenerationSession
    request: SessionRequest
    held: int = 0
    #: Its images' keys: their features stay in the session while its head is prefilled.
    images: frozenset[bytes] = frozenset()


def _chunk_end(newcomer: _Newcomer, chunk: int, image_token_id: int) -> int | None:
    """Where the next chunk of the newcomer's prompt ends (past the end of an image it would
    cut), or None when at most a chunk is left: that runs while the batch stops for it."""
    ids = newcomer.request.input_ids[0]
    length = ids.shape[0]
    if length - newcomer.held <= chunk:
        return None
    end = newcomer.held + chunk
    while end < length and ids[end - 1] == ids[end] == image_token_id:
        end += 1
    return end if end < length else None


def _head(request: SessionRequest, end: int, image_token_id: int, merge: int) -> dict:
    """``GenerationSession.prefill``'s sequence arguments for the first ``end`` tokens, with
    the images wholly in there (a chunk never ends inside one)."""
    ids = request.input_ids[:, :end]
    if request.image_grid_thw is None:
        return {"input_ids": ids}
    tokens = int((ids == image_token_id).sum())
    per_image = (request.image_grid_thw.prod(-1) // merge**2).cumsum(0)
    images = int((per_image <= tokens).sum())
    if images == 0:
        return {"input_ids": ids}
    grid = request.image_grid_thw[:images]
    pixels = request.pixel_values
    if not callable(pixels):
        pixels = pixels[: int(grid.prod(-1).sum())]
    digests = request.image_digests
    return {"input_ids": ids, "pixel_values": pixels, "image_grid_thw": grid,
            "image_digests": None if digests is None else digests[:images]}


@contextlib.contextmanager
def _cache_set_aside(model: Qwen2VL) -> Iterator[None]:
    """Run a session's prefill in the middle of a batch's decode: the batch's caches and
    decode tables go back on the model's layers afterwards."""
    text = model.model
    caches = [layer.self_attn.cache for layer in text.layers]
    tables = text.rope_cos, text.rope_sin, text.cache_slots
    try:
        yield
    finally:
        for layer, cache in zip(text.layers, caches):
            layer.self_attn.cache = cache
        text.rope_cos, text.rope_sin, text.cache_slots = tables


def _decode_segment(model: Qwen2VL, going: list[_Running], options: GenerationOptions,
                    pause: Callable[[], bool] | None, ended: Callable[[int], None] | None,
                    generator: torch.Generator | None) -> torch.Tensor | None:
    """Decode ``going``'s rows as one batch until they all ended or ``pause`` says stop (then
    the logits after each row's last token); what each wrote goes back to its session."""
    sessions = [r.session for r in going]
    lengths = [len(s.tokens) for s in sessions]
    longest, text = max(lengths), model.model
    budget = max(r.row.budget - len(r.row.tokens) for r in going)
    logits = torch.stack([r.logits for r in going])
    # Cache position + delta is a decoded token's M-RoPE position; padding shifts the former.
    delta = torch.tensor([[r.rope_delta - (longest - n)] for r, n in zip(going, lengths)],
                         device=model.device)
    # A compiled step's CUDA graphs are recorded on their inputs' addresses, caches included:
    # there it always decodes in the model's kept batch cache, so another session's cache (or a
    # new one per call) does not make it record again.
    kept = keeps_cache(model, options)
    own_cache = len(sessions) == 1 and not kept
    written = [len(r.row.tokens) for r in going]
    segment = options if options.dropped is None else replace(
        options, dropped=lambda b: options.dropped(going[b].index))
    try:
        if own_cache:
            sessions[0]._attach()
            key_valid = None
        else:
            make_cache = kept_cache if kept else ensure_cache
            make_cache(model, len(sessions), longest + budget)
            key_valid = torch.zeros(len(sessions), longest, dtype=torch.bool, device=model.device)
            for b, n in enumerate(lengths):
                key_valid[b, longest - n :] = True
            _into_batch(text.layers, sessions, lengths, longest)
        paused = decode_rows(model, Prefilled(logits, longest, delta, key_valid), segment,
                             [r.row for r in going], pause, ended, generator)
        # What went through the decoder: all a paused row wrote; else all but its last token.
        fed = [len(r.row.tokens) - before - (paused is None or r.row.reason is not None)
               for r, before in zip(going, written)]
        fed = [max(n, 0) for n in fed]
        if not own_cache:
            _back_from_batch(text.layers, sessions, lengths, longest, fed)
    finally:
        text.clear_cache()
    for r, before, n in zip(going, written, fed):
        r.session.tokens = r.session.tokens + r.row.tokens[before : before + n]
    return paused


def _into_batch(layers, sessions: Sequence[GenerationSession], lengths: list[int],
                longest: int) -> None:
    """Each session's cached sequence into its row of the batch cache, right-aligned at
    ``longest``."""
    for i, layer in enumerate(layers):
        batch = layer.self_attn.cache
        for b, (session, n) in enumerate(zip(sessions, lengths)):
            batch.k[b, :, longest - n : longest] = session.caches[i].k[0, :, :n]
            batch.v[b, :, longest - n : longest] = session.caches[i].v[0, :, :n]


def _back_from_batch(layers, sessions: Sequence[GenerationSession], lengths: list[int],
                     longest: int, fed: list[int]) -> None:
    """The ``fed[b]`` positions row b decoded after ``longest``, to the end of session b's
    sequence."""
    for i, layer in enumerate(layers):
        batch = layer.self_attn.cache
        for b, (session, n) in enumerate(zip(sessions, lengths)):
            own = session.caches[i]
            own.k[0, :, n : n + fed[b]] = batch.k[b, :, longest : longest + fed[b]]
            own.v[0, :, n : n + fed[b]] = batch.v[b, :, longest : longest + fed[b]]
