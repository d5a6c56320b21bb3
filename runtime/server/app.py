"""The FastAPI app: ``/v1/chat/completions`` (plain or streamed as server-sent events),
``/v1/models`` and ``/v1/models/NAME``, in front of an engine that prepares requests and
generates for a batch of them.

Every request is checked before it reaches the model: body size, JSON and field types, the model
name, images (data URLs, count, pixels), the token budget. A bad one gets a 4xx whose message says
what is wrong; a 500 means a bug here or the model failing (out of memory), never bad input. A
streamed request has its 200 sent before the model runs, so an error after that arrives as an
error event in the stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import secrets
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from typing import (
    TYPE_CHECKING,
    Any,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterator,
    Protocol,
    Sequence,
)
from urllib.parse import urlsplit

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import ValidationError
from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from agent.backends.base import Completion, OnText, Params, check_context
from core.special_tokens import VISION_TOKENS
from runtime.server.images import BadImage, decoded, open_data_url
from runtime.server.scheduler import BatchScheduler
from runtime.server.schemas import PART_TYPES, ChatRequest, ImageContent, error_body

if TYPE_CHECKING:
    from PIL import Image


log = logging.getLogger(__name__)


class Prepared(Protocol):
    """A request ready for the model (a dataclass); the engine knows what else it holds."""

    params: Params

    @property
    def prompt_tokens(self) -> int: ...


class Engine(Protocol):
    """What the server needs of a model (``agent.backends.local.LocalBackend`` is one)."""

    context_length: int
    #: ``generate_batch`` takes a fourth argument, the batch's arrivals (continuous batching).
    joins: bool

    def count_prompt(self, messages: list[dict], sizes: list[tuple[int, int]], params: Params
                     ) -> int:
        """The prompt's tokens from the images' sizes alone (no pixel is read); bad input
        raises ValueError."""

    def prepare(self, messages: list[dict], images: list["Image.Image"], params: Params
                ) -> Prepared:
        """Render and preprocess one request; bad input raises ValueError."""

    def generate_batch(self, batch: list[Prepared], on_text: Sequence[OnText] | None = None,
                       gone: Sequence[Callable[[], bool]] | None = None
                       ) -> list[Completion | Exception]:
        """Run a batch on the model (one thread at a time). ``on_text[i]``, where not None,
        gets request i's text pieces as they are decoded; they join to its ``text``.
        ``gone[i]()`` turns True once nobody waits for request i any more. A request that
        failed has its exception in its place (the others are still answered). With
        ``joins`` it also gets the batch's arrivals (``agent.backends.base.Arrivals``): it may
        take in requests submitted while it runs and answer requests before it returns."""


@dataclass(frozen=True)
class ServerSettings:
    model_id: str
    api_key: str | None = None
    #: The names a request's Host may give this server; None: any. A server on loopback answers
    #: only its loopback names, so a web page whose name was pointed at 127.0.0.1 (DNS
    #: rebinding) cannot read it; one reachable from other machines is named as clients reach it.
    hosts: tuple[str, ...] | None = None
    max_body_bytes: int = 32 * 1024 * 1024
    max_images: int = 16
    max_image_pixels: int = 4096 * 4096
    max_tokens: int = 4096
    max_batch: int = 8
    batch_wait_s: float = 0.005
    batch_gather_s: float = 0.2  # how long a batch waits for requests still being prepared


class ApiError(Exception):
    def __init__(self, status: int, message: str, kind: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.status, self.message, self.kind = status, message, kind


def create_app(engine: Engine, settings: ServerSettings) -> FastAPI:
    scheduler: BatchScheduler = BatchScheduler(
        engine.generate_batch, max_batch=settings.max_batch, wait_s=settings.batch_wait_s,
        gather_s=settings.batch_gather_s, joins=engine.joins)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await scheduler.start()
        try:
            yield
        finally:
            await scheduler.stop()

    app = FastAPI(title="vlagent serve", lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.state.scheduler = scheduler
    preparing = asyncio.Semaphore(os.cpu_count() or 1)
    # A prepared request holds its image patches (the big allocations) until it is answered:
    # at most two batches of them at once, so a burst past that waits as request bodies.
    app.state.admitted = admitted = asyncio.Semaphore(2 * settings.max_batch)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(error_body(exc.message, exc.kind), status_code=exc.status)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(error_body(str(exc.detail)), status_code=exc.status_code,
                            headers=exc.headers)  # a 405's Allow

    @app.exception_handler(Exception)
    async def server_error(request: Request, exc: Exception) -> JSONResponse:
        # A bug, not bad input (that is a 4xx); the client still gets OpenAI's error shape.
        # Starlette logs the traceback after this answer is sent.
        return JSONResponse(error_body(f"the server failed: {exc}", "server_error"),
                            status_code=500)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(error_body(str(exc)), status_code=400)

    def authorize(request: Request) -> None:
        host = request.headers.get("host", "")
        if settings.hosts is not None and urlsplit(f"//{host}").hostname not in settings.hosts:
            raise ApiError(403, f"this server answers requests to {' or '.join(settings.hosts)}, "
                                f"not to Host {host!r}", "permission_error")
        if settings.api_key is None:
            return
        # The key as sent, as vLLM compares it: one with a space at its start is a key too.
        scheme, _, key = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not secrets.compare_digest(
                key.encode(), settings.api_key.encode()):
            raise ApiError(401, "a valid API key is required: Authorization: Bearer KEY",
                           "authentication_error")

    def not_served(model: str) -> ApiError:
        return ApiError(404, f"model {model!r} is not served here; this server serves "
                             f"{settings.model_id!r}", "not_found_error")

    listed = {"id": settings.model_id, "object": "model", "created": 0, "owned_by": "vlagent"}

    @app.get("/v1/models")
    async def models(request: Request) -> dict:
        authorize(request)
        return {"object": "list", "data": [listed]}

    # A path, not a str: a served name may hold "/" ("Qwen/Qwen2-VL-7B-Instruct").
    @app.get("/v1/models/{model:path}")
    async def model(request: Request, model: str) -> dict:
        authorize(request)
        if model != settings.model_id:
            raise not_served(model)
        return listed

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Any:
        authorize(request)
        # A web page of another origin may post a form or text/plain to any address without
        # asking first (a JSON post it must ask for, and is not allowed): as FastAPI does, only
        # JSON is read, so no page the user (or the agent's browser) opens can use the model.
        media = request.headers.get("content-type", "").partition(";")[0].strip().lower()
        if media != "application/json":
            raise ApiError(415, "the body must be sent as Content-Type: application/json, not "
                                f"{media or 'without one'}")
        body = await read_body(request, settings.max_body_bytes)
        await admitted.acquire()
        release = _once(admitted.release)
        streaming = False
        try:
            # Counted from here, not while the body arrives: a client that stalls its upload
            # would hold every batch for the gather time.
            with scheduler.incoming():
                prepared, stream, usage_chunk = await prepare(body)
            del body  # the patches are made; the base64 text need not wait with them
            reply = Reply(settings.model_id, usage_chunk)
            if stream:
                streaming = True
                # The slot goes back when the stream ends, and in any case once the response
                # is over (Starlette runs the background task after a client that left, too).
                return StreamingResponse(_releasing(reply.chunks(scheduler.stream(prepared)),
                                                    release),
                                         media_type="text/event-stream",
                                         background=BackgroundTask(release))
            completion = await unless_gone(request, scheduler.submit(prepared))
            return reply.body(completion)
        finally:
            if not streaming:
                release()

    async def prepare(body: bytes) -> tuple[Prepared, bool, bool]:
        chat = await run_in_threadpool(parse_request, body)  # a big body takes seconds
        if chat.model != settings.model_id:
            raise not_served(chat.model)
        params = sampling_params(chat, settings)
        # A limit the client set must fit beside the prompt; the default one (256) gives way to
        # the room the context leaves, as vLLM's default fills the context, so at least one
        # token must fit.
        fitted = chat.token_limit is None
        needed = dataclasses.replace(params, max_new_tokens=1) if fitted else params
        # Decoded images and their patches are the big allocations: as many requests at once
        # as there are cores (no faster with more), so a burst cannot hold all of them at once.
        async with preparing:
            messages, opened = await run_in_threadpool(read_messages, chat, settings)
            try:
                if opened:  # a text alone is counted once, by prepare
                    # From the images' sizes first: a prompt that cannot fit costs no decoding
                    # (16 large images in a small body took gigabytes to refuse).
                    tokens = await run_in_threadpool(engine.count_prompt, messages,
                                                     [image.size for image in opened], needed)
                    check_context(tokens, needed.max_new_tokens, engine.context_length)
                images = await run_in_threadpool(lambda: [decoded(image) for image in opened])
                prepared = await run_in_threadpool(engine.prepare, messages, images, needed)
                check_context(prepared.prompt_tokens, needed.max_new_tokens,
                              engine.context_length)
            except ValueError as exc:
                raise ApiError(400, str(exc)) from None
        if fitted:
            room = engine.context_length - prepared.prompt_tokens
            prepared = dataclasses.replace(prepared, params=dataclasses.replace(
                params, max_new_tokens=min(params.max_new_tokens, room)))
        options = chat.stream_options
        return prepared, chat.stream, options is not None and options.include_usage

    return app


def _once(release: Callable[[], None]) -> Callable[[], None]:
    """``release``, which a second call leaves alone (a stream's end and its response's end both
    call it)."""
    done = False

    def once() -> None:
        nonlocal done
        if not done:
            done = True
            release()

    return once


async def _releasing(chunks: AsyncIterator[str], release: Callable[[], None]
                     ) -> AsyncIterator[str]:
    try:
        async for chunk in chunks:
            yield chunk
    finally:
        release()


async def unless_gone(request: Request, answer: Awaitable[Completion]) -> Completion:
    """``answer``'s result, unless the client disconnects first: then the request is cancelled,
    which tells the engine to stop decoding it (a streamed request learns it from its stream).
    With the body read, the next ASGI message is the disconnect, so it is awaited, not polled."""
    task = asyncio.ensure_future(answer)
    while not task.done():
        gone = asyncio.ensure_future(request.receive())
        try:
            await asyncio.wait({task, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
        if not task.done() and gone.result()["type"] == "http.disconnect":
            task.cancel()
            raise ApiError(400, "the client disconnected before its answer was ready")
    return task.result()


async def read_body(request: Request, limit: int) -> bytes:
    too_large = ApiError(413, f"the request body is over the limit of {limit:,} bytes")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdecimal() and int(declared) > limit:
        raise too_large
    body = bytearray()
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise too_large
    except ClientDisconnect:  # nobody reads the answer; no traceback in the log for it
        raise ApiError(400, "the client disconnected before sending its whole request") from None
    return bytes(body)


def parse_request(body: bytes) -> ChatRequest:
    try:
        return ChatRequest.model_validate_json(body)
    except ValidationError as exc:
        # Of a union's failed branches, the deepest error says most about what was meant, and
        # of equally deep ones, a branch of the right type that broke a rule (``stop`` with too
        # many strings) more than one of the wrong type.
        error = max(exc.errors(include_url=False),
                    key=lambda e: (len(e["loc"]), not e["type"].endswith("_type")))
        where = ".".join(str(p) for p in _field_path(error["loc"])) or "body"
        raise ApiError(400, f"{where}: {error['msg']}") from None


def _field_path(loc: tuple[int | str, ...]) -> list[int | str]:
    """An error's location without pydantic's names for union branches (``str``,
    ``list[...]``) and a content part's type tag (``content.0.text.text``)."""
    path: list[int | str] = []
    for before, part in zip((None, *loc), loc):
        if isinstance(part, str) and (part in ("str", "int", "float", "bool") or "[" in part):
            continue
        if isinstance(before, int) and part in PART_TYPES:  # the tag right after the index
            continue
        path.append(part)
    return path


def sampling_params(chat: ChatRequest, settings: ServerSettings) -> Params:
    if chat.continue_final_message and chat.add_generation_prompt:
        raise ApiError(400, "continue_final_message needs add_generation_prompt false")
    if not chat.continue_final_message and not chat.add_generation_prompt:
        raise ApiError(400, "add_generation_prompt false is only supported with "
                            "continue_final_message true")
    field, max_tokens = chat.token_limit or ("max_tokens", min(256, settings.max_tokens))
    if max_tokens > settings.max_tokens:
        raise ApiError(400, f"{field} is {max_tokens}; this server allows at most "
                            f"{settings.max_tokens}")
    if any(not s for s in chat.stop_strings):
        raise ApiError(400, "stop strings may not be empty")
    budget = chat.mm_processor_kwargs
    for name in ("min_pixels", "max_pixels"):
        if budget and (asked := getattr(budget, name)) and asked > settings.max_image_pixels:
            raise ApiError(400, f"mm_processor_kwargs.{name} is {asked:,}; this server resizes "
                                f"images to at most {settings.max_image_pixels:,} pixels")
    try:
        return Params(max_new_tokens=max_tokens, temperature=chat.temperature,
                      top_k=max(chat.top_k, 0), top_p=chat.top_p,
                      seed=chat.seed, repetition_penalty=chat.repetition_penalty,
                      stop=chat.stop_strings,
                      continue_final_message=chat.continue_final_message,
                      min_pixels=budget.min_pixels if budget else None,
                      max_pixels=budget.max_pixels if budget else None)
    except ValueError as exc:  # what the schema cannot say alone (a minimum above the maximum)
        raise ApiError(400, str(exc)) from None


def read_messages(chat: ChatRequest, settings: ServerSettings
                  ) -> tuple[list[dict], list["Image.Image"]]:
    """Hugging Face messages (image parts without data) and the images, in order: opened and
    their sizes checked, not decoded yet (``images.decoded``)."""
    image_parts = [p for m in chat.messages if not isinstance(m.content, str) for p in m.content
                   if isinstance(p, ImageContent)]
    if len(image_parts) > settings.max_images:
        raise ApiError(400, f"the request has {len(image_parts)} images; the limit is "
                            f"{settings.max_images}")
    # A message's text parts are rendered back to back: a token split across two is one there.
    texts = [m.content if isinstance(m.content, str)
             else "".join(p.text for p in m.content if not isinstance(p, ImageContent))
             for m in chat.messages]
    for text in texts:
        for token in VISION_TOKENS:  # they would not match the images sent
            if token in text:
                raise ApiError(400, f"text may not contain {token}; send images as image_url "
                                    "parts")
    images = []
    for part in image_parts:
        try:
            images.append(open_data_url(part.image_url.url, settings.max_image_pixels))
        except BadImage as exc:
            raise ApiError(400, str(exc)) from None
    messages = [
        {"role": m.role, "content": m.content if isinstance(m.content, str) else [
            {"type": "image"} if isinstance(p, ImageContent) else {"type": "text", "text": p.text}
            for p in m.content]}
        for m in chat.messages
    ]
    return messages, images


class Reply:
    """A completion in OpenAI's shapes: one JSON body, or server-sent event chunks. A stream
    asked for ``stream_options.include_usage`` (``usage_chunk``) gets the usage as OpenAI sends
    it then: in a chunk of its own with no choices, and ``"usage": null`` on every other one;
    without it, on the final chunk."""

    def __init__(self, model_id: str, usage_chunk: bool = False) -> None:
        self.id = f"chatcmpl-{uuid.uuid4().hex}"
        self.created = int(time.time())
        self.model_id = model_id
        self.usage_chunk = usage_chunk

    def _base(self, kind: str) -> dict:
        return {"id": self.id, "object": kind, "created": self.created, "model": self.model_id}

    def body(self, completion: Completion) -> dict:
        return {
            **self._base("chat.completion"),
            "choices": [{"index": 0, **ending(completion),
                         "message": {"role": "assistant", "content": completion.text}}],
            "usage": usage(completion),
        }

    def chunk(self, delta: dict, end: Completion | None = None) -> str:
        """A piece of the reply, or with ``end`` the last chunk: why it ended, and the usage."""
        choice: dict[str, Any] = {"index": 0, "delta": delta, "finish_reason": None}
        data: dict[str, Any] = {**self._base("chat.completion.chunk"), "choices": [choice]}
        if self.usage_chunk:
            data["usage"] = None
        if end is not None:
            choice |= ending(end)
            if not self.usage_chunk:
                data["usage"] = usage(end)
        return f"data: {json.dumps(data)}\n\n"

    async def chunks(self, events: AsyncIterator[str | Completion]) -> AsyncIterator[str]:
        """The role chunk at once, a content chunk per piece as the model writes it, the final
        chunk (finish_reason, usage), then ``[DONE]``; ``events`` is ``BatchScheduler.stream``.
        Closing this (the client went away) closes ``events``, which drops the request."""
        yield self.chunk({"role": "assistant", "content": ""})
        streamed = 0
        try:
            async with contextlib.aclosing(events):
                async for event in events:
                    if isinstance(event, str):
                        streamed += len(event)
                        yield self.chunk({"content": event})
                    else:
                        completion = event
        except Exception as exc:  # noqa: BLE001 - the 200 is sent: the client gets an event
            log.exception("generation failed for %s", self.id)
            yield f"data: {json.dumps(error_body(f'generation failed: {exc}', 'server_error'))}\n\n"
        else:
            # An engine that streams nothing (or not all) still answers with all of its text.
            if rest := completion.text[streamed:]:
                yield self.chunk({"content": rest})
            yield self.chunk({}, completion)
            if self.usage_chunk:
                data = {**self._base("chat.completion.chunk"), "choices": [],
                        "usage": usage(completion)}
                yield f"data: {json.dumps(data)}\n\n"
        yield "data: [DONE]\n\n"


def ending(completion: Completion) -> dict:
    """Why a reply ended. ``stop_reason`` is vLLM's field: the stop string that ended it, or
    null (an EOS token or the token limit), so a client can tell the two stops apart."""
    return {"finish_reason": completion.finish_reason, "stop_reason": completion.stop}


def usage(completion: Completion) -> dict:
    # prompt_tokens_details.cached_tokens: OpenAI's name for prompt tokens served from a cache.
    return {"prompt_tokens": completion.prompt_tokens,
            "completion_tokens": completion.completion_tokens,
            "total_tokens": completion.prompt_tokens + completion.completion_tokens,
            "prompt_tokens_details": {"cached_tokens": completion.cached_tokens}}


@contextlib.contextmanager
def running_server(app: FastAPI, host: str = "127.0.0.1", port: int = 0,
                   log_level: str = "warning") -> Iterator[str]:
    """Serve ``app`` with uvicorn on a thread; yield its base URL (``http://HOST:PORT/v1``).
    ``log_level`` "info" logs each request, as ``serve`` does."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    server = uvicorn.Server(uvicorn.Config(app, log_level=log_level, backlog=2048))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError("the server stopped while starting")
            time.sleep(0.01)
        yield f"http://{host}:{sock.getsockname()[1]}/v1"
    finally:
        server.should_exit = True
        thread.join()
        sock.close()
