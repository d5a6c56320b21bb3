"""``local``: our Qwen2-VL in this process, on cpu or cuda, in bf16, fp16 or fp32.

Work is split in two so the server can batch: ``prepare`` renders and preprocesses one request (any
thread; bad input raises ValueError), and ``generate_batch`` runs prepared requests on the model,
on the process's one torch thread (``agent.backends.one_thread``). Requests with the same sampling
params (temperature, top_k, top_p, stop strings) run as one group, each to its own max_new_tokens;
a seeded sampled request runs alone, so its seed alone decides its tokens. Each request may have a
callback that gets its text pieces as they are decoded (``serve``'s ``stream``). Under a server
that batches continuously, requests that arrive while a group decodes join it (``arrivals``), and
each is answered when its row ends.

Requests go through ``GenerationSession``s unless ``reuse_prefix=False``: a session keeps the KV
cache of its previous call and prefills only where the new prompt differs from it, so an agent's
step costs its new screenshot and text, not the whole history again. An agent in this process
needs one (``sessions=1``); a server keeps several (``serve --sessions``), one per conversation.
A request continues the session whose last prompt it repeats whole (an agent's next step), else
takes an empty session, else the one that shares most of it (the least recently used of equals);
whatever prefix another session holds (the same system prompt and goal, an episode's history
before a dropped screenshot) is copied from there instead of computed. Requests that arrive
together each take a session of their own, prefill there, and decode as one batch
(``generate_together``): agents' next steps, or several episodes of a bench served by one model.
A group larger than the sessions is split by max_new_tokens: a part that fits the sessions runs
in them, a larger one as a left-padded batch through ``model.generate``, leaving the sessions'
caches alone. ``prepare`` makes patches only for the screenshots no session
holds; the session asks for the others only if it lacks their vision features by then.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from agent.backends.base import (
    Arrivals,
    Backend,
    Completion,
    Messages,
    OnText,
    Params,
    check_context,
)
from agent.backends.one_thread import torch_thread

if TYPE_CHECKING:
    import torch
    from PIL import Image

    from model.generate import Generation, GenerationOptions
    from model.image_processing import ImagePatches
    from model.session import GenerationSession, SessionRequest


@dataclass
class Prepared:
    """One request, rendered and preprocessed, waiting for the model."""

    inputs: dict[str, "torch.Tensor"]  # the processor's, but ``pixel_values``
    params: Params
    render_ms: float  # ``prepare``'s time but the patches'
    #: The images' patch rows, made in ``prepare`` for images no session holds, else on demand.
    pixels: "ImagePatches"

    @property
    def preprocess_ms(self) -> float:
        """Rendering and every patch made for the request, in ``prepare`` or later."""
        return self.render_ms + self.pixels.seconds * 1000

    @property
    def prompt_tokens(self) -> int:
        return int(self.inputs["input_ids"].shape[1])


class LocalBackend(Backend):
    #: ``generate_batch`` takes a server's ``arrivals`` (continuous batching).
    joins = True

    def __init__(
        self, path: str | Path, *, device: str | None = None, dtype: str | None = None,
        compile: bool = False, reuse_prefix: bool = True, sessions: int = 1,
    ):  # fmt: skip
        from model import Qwen2VL, Qwen2VLProcessor
        from model.linear import calibrate
        from model.session import GenerationSession

        if sessions < 1:
            raise ValueError(f"sessions must be at least 1, got {sessions}")
        self.name = str(path)
        self.compile = compile  # torch.compile the decode step (CUDA graphs on cuda)
        self.processor = Qwen2VLProcessor.from_pretrained(path)
        # Every torch op of the model on the process's torch thread (agent.backends.one_thread).
        self._torch = torch_thread()

        def load() -> Qwen2VL:
            model = Qwen2VL.from_pretrained(path, device=device, dtype=dtype)
            # The decode steps of up to ``sessions`` rows (model/linear.py), before any request.
            calibrate(model, sessions)
            return model

        self.model = self._torch.run(load)
        #: Most recently used first.
        self.sessions = [GenerationSession(self.model) for _ in range(sessions if reuse_prefix
                                                                      else 0)]

    def describe(self) -> str:
        dtype = str(self.model.dtype).removeprefix("torch.")
        return f"{self.name} on {self.model.device} ({dtype})"

    @property
    def context_length(self) -> int:
        """Prompt plus new tokens may not exceed this."""
        return self.processor.config.text.max_position_embeddings

    def _text(self, messages: Messages, params: Params) -> str:
        """The prompt's text; one that cannot fit is refused before tokenizing it, which takes
        seconds for MBs."""
        text = self.processor.apply_chat_template(
            messages,
            add_generation_prompt=not params.continue_final_message,
            continue_final_message=params.continue_final_message,
        )
        check_context(self.processor.fewest_tokens(text), params.max_new_tokens,
                      self.context_length, at_least=True)
        return text

    def count_prompt(self, messages: Messages, sizes: list[tuple[int, int]], params: Params
                     ) -> int:
        return self.processor.count_tokens(self._text(messages, params), image_sizes=sizes,
                                           min_pixels=params.min_pixels,
                                           max_pixels=params.max_pixels)

    def prepare(self, messages: Messages, images: list["Image.Image"], params: Params) -> Prepared:
        start = time.perf_counter()
        processor = self.processor
        text = self._text(messages, params)
        from model.image_processing import ImagePatches
        from model.session import image_key

        entries = processor.describe_images(images or [], params.min_pixels, params.max_pixels)
        inputs = processor.token_inputs(text, entries)
        # Before any patches: a request that does not fit costs no resizing (a server's client
        # may ask for a huge pixel budget).
        check_context(int(inputs["input_ids"].shape[1]), params.max_new_tokens,
                      self.context_length)
        # A screenshot a session already holds (an agent's history) needs no patches; the
        # others are made here, off the model's thread.
        held = frozenset().union(*(s.held_images() for s in self.sessions))
        pixels = ImagePatches(processor.images, entries)
        for i, entry in enumerate(entries):
            if image_key(entry.digest, entry.grid) not in held:
                pixels(i)
        render_ms = (time.perf_counter() - start - pixels.seconds) * 1000
        return Prepared(inputs, params, render_ms, pixels)

    def generate_batch(self, batch: list[Prepared], on_text: Sequence[OnText] | None = None,
                       gone: Sequence[Callable[[], bool]] | None = None,
                       arrivals: Arrivals | None = None) -> list[Completion | Exception]:
        """Completions in the order of ``batch``; ``on_text[i]`` streams request i's text.
        Once ``gone[i]()`` is True, request i stops decoding (its completion is "dropped").
        Requests run in groups of equal params; a group that fails has its error in its
        requests' places, and the other groups are answered. With a server's ``arrivals``,
        requests submitted meanwhile join a group decoding in sessions when their params match
        and a session is free, and each request is answered as soon as it is done. Runs on
        the process's torch thread, whichever thread calls it (callbacks are called there).
        Only the batch's last group takes arrivals, so no group waits behind a stream of them."""
        return self._torch.run(self._generate_batch, batch, on_text, gone, arrivals)

    def _generate_batch(self, batch: list[Prepared], on_text: Sequence[OnText] | None,
                        gone: Sequence[Callable[[], bool]] | None, arrivals: Arrivals | None
                        ) -> list[Completion | Exception]:
        sinks = list(on_text or [None] * len(batch))
        gones = list(gone or [_never] * len(batch))
        groups: dict[object, list[int]] = {}
        for i, item in enumerate(batch):
            groups.setdefault(_group_key(item.params) or i, []).append(i)
        parts: list[list[int]] = []
        for rows in groups.values():
            if len(rows) <= len(self.sessions):  # in sessions, each to its own max_new_tokens
                parts.append(rows)
            else:  # a plain batch decodes its rows to one budget
                budgets: dict[int, list[int]] = {}
                for i in rows:
                    budgets.setdefault(batch[i].params.max_new_tokens, []).append(i)
                parts += budgets.values()
        out: dict[int, Completion | Exception] = {}
        for number, part in enumerate(parts, start=1):
            # Requests that left while earlier groups ran get nothing computed for them.
            departed = {i for i in part if gones[i]()}
            out.update((i, _dropped(batch[i])) for i in departed)
            part = [i for i in part if i not in departed]
            if not part:
                continue
            group = [batch[i] for i in part], [sinks[i] for i in part], [gones[i] for i in part]
            # Only the last group takes requests that arrive: one that kept taking them while
            # a later group waited could keep that group waiting for ever.
            joiners = arrivals if number == len(parts) else None
            try:
                done = (self._generate_in_sessions(*group, part, joiners)
                        if len(part) <= len(self.sessions) else self._generate_group(*group))
            except Exception as exc:  # noqa: BLE001 - its requests get it, not the rest
                done = [exc] * len(part)
            out.update(zip(part, done))
        return [out[i] for i in range(len(batch))]

    def generate(
        self, messages: Messages, images: list["Image.Image"], **params: Any
    ) -> Completion:
        (done,) = self.generate_batch([self.prepare(messages, images, Params(**params))])
        if isinstance(done, Exception):
            raise done
        return done

    def _generate_in_sessions(self, group: list[Prepared], sinks: Sequence[OnText],
                              gones: Sequence[Callable[[], bool]], places: Sequence[int],
                              arrivals: Arrivals | None = None) -> list[Completion | Exception]:
        """Requests with equal sampling params, each through a session of its own, decoded
        together (``places``: their indices in the server's batch; others may join from
        ``arrivals``)."""
        from model.session import generate_together

        rows = _GroupRows(self, arrivals, group[0].params)
        sessions = self._sessions_for(group)
        for item, session, sink, gone, place in zip(group, sessions, sinks, gones, places):
            rows.add(item, session, sink, gone, place)
        try:
            generate_together(sessions, [_session_request(item) for item in group],
                              self._options(group[0].params, rows.sinks, rows.gones,
                                            joins=arrivals is not None),
                              donors=self.sessions, joining=rows)
        except Exception as exc:
            rows.fail_joined(len(group), exc)
            raise
        return [rows.completions[row] for row in range(len(group))]

    def _sessions_for(self, group: list[Prepared], busy: Sequence["GenerationSession"] = ()
                      ) -> list["GenerationSession"]:
        """A distinct session per request, none of ``busy`` (decoding other requests); the
        chosen ones become the most recently used.

        Requests that go on with a session's conversation (``resumed_from``) claim it first,
        those that share more before those that share less, so a new conversation listed
        before them cannot take it; the others take an empty session, else the one that shares
        most of their prompt (the least recently used of equals).
        """
        sessions = [s for s in self.sessions if s not in busy]
        if len(self.sessions) == 1:
            return list(sessions)
        requests = [_session_request(item) for item in group]
        shared = [[s.shared_prefix(request) for s in sessions] for request in requests]
        taken: dict[int, int] = {}  # request -> session
        going_on = [(i, j) for i in range(len(group)) for j, s in enumerate(sessions)
                    if s.tokens and shared[i][j] >= s.resumed_from]
        for i, j in sorted(going_on, key=lambda pair: -shared[pair[0]][pair[1]]):
            if i not in taken and j not in taken.values():
                taken[i] = j
        for i in range(len(group)):
            if i not in taken:
                unclaimed = [j for j in range(len(sessions)) if j not in taken.values()]
                empty = [j for j in unclaimed if not sessions[j].tokens]
                taken[i] = empty[0] if empty else max(reversed(unclaimed),
                                                      key=shared[i].__getitem__)
        chosen = [sessions[taken[i]] for i in range(len(group))]
        self.sessions = chosen + [s for s in self.sessions if s not in chosen]
        return chosen

    def _options(self, params: Params, sinks: Sequence[OnText],
                 gones: Sequence[Callable[[], bool]], joins: bool = False
                 ) -> "GenerationOptions":
        """``sinks`` and ``gones`` by row; with ``joins`` they grow as requests join."""
        from model.generate import GenerationOptions, Sampling

        def on_text(row: int, piece: str) -> None:
            if sink := sinks[row]:
                sink(piece)

        return GenerationOptions(
            max_new_tokens=params.max_new_tokens,
            sampling=Sampling(params.temperature, params.top_k, params.top_p, params.seed,
                              params.repetition_penalty),
            stop=params.stop,
            tokenizer=self.processor.tokenizer,
            compile=self.compile,
            on_text=on_text if any(sinks) or joins else None,
            dropped=lambda row: gones[row](),
        )

    @staticmethod
    def _completion(item: Prepared, g: "Generation", generate_ms: float) -> Completion:
        return Completion(
            text=g.text,
            prompt_tokens=item.prompt_tokens,
            completion_tokens=len(g.tokens),
            finish_reason=g.finish_reason,
            stop=g.stop,
            timings={"preprocess_ms": item.preprocess_ms, "generate_ms": generate_ms},
        )

    def _generate_group(self, group: list[Prepared], sinks: Sequence[OnText],
                        gones: Sequence[Callable[[], bool]]) -> list[Completion]:
        """Requests with equal params as one left-padded batch; ``sinks[i]`` streams row i."""
        import torch

        from model.generate import generate

        ids = [item.inputs["input_ids"][0] for item in group]
        length = max(len(row) for row in ids)
        input_ids = torch.full((len(group), length), self.processor.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(group), length), dtype=torch.long)
        for i, row in enumerate(ids):
            input_ids[i, length - len(row) :] = row
            attention_mask[i, length - len(row) :] = 1
        # Held screenshots get their patches here, on the model's thread (a group larger than
        # the sessions; serve's defaults keep --max-batch within --sessions).
        rows = [item.pixels(i) for item in group for i in range(len(item.pixels))]
        pixel_values = torch.cat(rows) if rows else None
        grids = [item.inputs["image_grid_thw"] for item in group if len(item.pixels)]
        grid = torch.cat(grids) if grids else None
        options = self._options(group[0].params, sinks, gones)
        start = time.perf_counter()
        generations = generate(self.model, input_ids, pixel_values, grid, attention_mask, options)
        generate_ms = (time.perf_counter() - start) * 1000  # the patches were made before it
        return [self._completion(item, g, generate_ms) for item, g in zip(group, generations)]

    def close(self) -> None:
        self.model, self.sessions = None, []


class _GroupRows:
    """The rows of a group decoding in sessions: its requests, then those that join it from a
    server's ``arrivals`` (``model.session.Joining``). Each is answered when its row ends."""

    def __init__(self, backend: LocalBackend, arrivals: Arrivals | None, params: Params):
        self.backend, self.arrivals, self.key = backend, arrivals, _group_key(params)
        self.items: list[Prepared] = []
        self.sinks: list[OnText] = []
        self.gones: list[Callable[[], bool]] = []
        self.places: list[int] = []  # in the server's batch
        #: Per row: when it started, its session, the session's prefilled tokens and the
        #: request's patch seconds then.
        self.starts: list[tuple[float, "GenerationSession", int, float]] = []
        self.completions: dict[int, Completion | Exception] = {}

    def add(self, item: Prepared, session: "GenerationSession", sink: OnText,
            gone: Callable[[], bool], place: int) -> None:
        self.items.append(item)
        self.sinks.append(sink)
        self.gones.append(gone)
        self.places.append(place)
        self.starts.append((time.perf_counter(), session, session.prefilled_tokens,
                            item.pixels.seconds))

    def _accepts(self, item: Prepared) -> bool:
        return self.key is not None and _group_key(item.params) == self.key

    def _free(self, busy: Sequence["GenerationSession"], decoding: int) -> int:
        """Rows that may join: each needs a session, and the server caps the rows decoding."""
        return min(len(self.backend.sessions) - len(busy), self.arrivals.max_rows - decoding)

    def waiting(self, busy: Sequence["GenerationSession"], decoding: int) -> bool:
        # Counted as if the rows that ended had handed back their sessions: for a newcomer
        # that needs one of them, the batch stops to let them go.
        free = min(len(self.backend.sessions), self.arrivals.max_rows) - decoding \
            if self.arrivals is not None else 0
        return free > 0 and self.arrivals.any(self._accepts)

    def admit(self, busy: Sequence["GenerationSession"], decoding: int
              ) -> list[tuple["GenerationSession", "SessionRequest"]]:
        if self.arrivals is None or self._free(busy, decoding) < 1:
            return []
        joined = self.arrivals.take(self._accepts, self._free(busy, decoding))
        sessions = self.backend._sessions_for([j.job for j in joined], busy) if joined else []
        for j, session in zip(joined, sessions):
            self.add(j.job, session, j.on_text, j.gone, j.index)
        return [(session, _session_request(j.job)) for j, session in zip(joined, sessions)]

    def done(self, row: int, generation: "Generation") -> None:
        start, session, prefilled, patched = self.starts[row]
        item = self.items[row]
        # Patches made meanwhile (images the session let go) count as preprocessing.
        ms = (time.perf_counter() - start - (item.pixels.seconds - patched)) * 1000
        completion = self.backend._completion(item, generation, ms)
        # What the request's prefills (a chunk at a time, when it joined) did not compute.
        completion.cached_tokens = item.prompt_tokens - (session.prefilled_tokens - prefilled)
        self.completions[row] = completion
        if self.arrivals is not None:
            self.arrivals.deliver(self.places[row], completion)

    def failed(self, row: int, error: Exception) -> None:
        self.completions[row] = error
        if self.arrivals is not None:
            self.arrivals.deliver(self.places[row], error)

    def fail_joined(self, first: int, exc: Exception) -> None:
        """The group failed: the requests that joined it and were not answered get ``exc``."""
        for row in range(first, len(self.items)):
            if row not in self.completions:
                self.failed(row, exc)


def _group_key(params: Params) -> tuple | None:
    """Requests with equal keys decode as one batch (each to its own max_new_tokens in
    sessions); None: a seeded sampled request, which runs alone (its seed alone decides its
    tokens)."""
    if params.seed is not None and params.temperature > 0:
        return None
    return (params.temperature, params.top_k, params.top_p, params.repetition_penalty,
            params.stop)


def _never() -> bool:
    return False


def _dropped(item: Prepared) -> Completion:
    """The completion of a request nobody waits for any more: nothing generated."""
    return Completion("", item.prompt_tokens, 0, "dropped")


def _session_request(item: Prepared) -> "SessionRequest":
    from model.session import SessionRequest

    inputs = item.inputs
    return SessionRequest(inputs["input_ids"], item.pixels, inputs.get("image_grid_thw"),
                          inputs.get("image_digests"), item.params.max_new_tokens)
