"""``serve``'s HTTP API on a stand-in engine: request checks (each limit, and a fuzz of malformed
requests that must all get a 4xx), the key, streaming (pieces as the engine writes them, batched,
a client leaving mid-stream, errors), and 64 concurrent clients."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import threading

import httpx
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from runtime.server.app import ServerSettings, create_app, running_server
from tests.probes import wait_until
from tests.serve_fakes import EchoEngine

MODEL = "tiny"
LIMITS = ServerSettings(model_id=MODEL, max_body_bytes=256 * 1024, max_images=3,
                        max_image_pixels=64 * 64, max_tokens=100)


def png_url(width: int = 8, height: int = 8) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def request(*parts, **fields) -> dict:
    content = list(parts) or "hello there"
    return {"model": MODEL, "messages": [{"role": "user", "content": content}],
            "max_tokens": 5, **fields}


def image_part(url: str) -> dict:
    return {"type": "image_url", "image_url": {"url": url}}


GOOD = request({"type": "text", "text": "what is this"}, image_part(png_url()))


@pytest.fixture(scope="module")
def client():
    with TestClient(create_app(EchoEngine(), LIMITS)) as client:
        yield client


def post(client, body, headers: dict | None = None):
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return client.post("/v1/chat/completions", content=content,
                       headers={"content-type": "application/json", **(headers or {})})


def test_a_good_request_gets_an_openai_shaped_answer(client):
    answer = post(client, GOOD)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["object"] == "chat.completion" and body["model"] == MODEL
    assert body["choices"][0]["message"] == {"role": "assistant",
                                             "content": "echo: what is this (1 images)"}
    assert body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"] + 3
    models = client.get("/v1/models").json()
    assert [m["id"] for m in models["data"]] == [MODEL]


@pytest.mark.parametrize("served", ["Qwen/Qwen2-VL-7B-Instruct", "tiny"])
def test_the_model_served_is_found_by_its_name(served):
    """``GET /v1/models/NAME``, as OpenAI's SDK asks it (``models.retrieve``), and a name the
    server does not serve is a 404 that names the one it does."""
    app = create_app(EchoEngine(), ServerSettings(model_id=served, api_key="k"))
    with TestClient(app) as client:
        key = {"authorization": "Bearer k"}
        found = client.get(f"/v1/models/{served}", headers=key)
        assert found.status_code == 200
        assert found.json() == client.get("/v1/models", headers=key).json()["data"][0]
        missing = client.get("/v1/models/other", headers=key)
        assert missing.status_code == 404
        assert missing.json()["error"]["message"] == \
            f"model 'other' is not served here; this server serves {served!r}"
        assert client.get(f"/v1/models/{served}").status_code == 401


def wrapped_png_url() -> str:
    """The PNG's data URL with an upper-case scheme and its base64 in MIME's 76-column lines."""
    data = png_url().split(",", 1)[1]
    return "DATA:image/png;BASE64," + "\r\n".join(data[i : i + 76]
                                                   for i in range(0, len(data), 76))


@pytest.mark.parametrize("body", [
    {**GOOD, "temperature": None, "top_p": None, "n": None, "stream": None, "stop": None,
     "seed": None, "max_tokens": None, "repetition_penalty": None},
    request({"type": "text", "text": "what is this"}, image_part(wrapped_png_url())),
    # What some clients send every time: features asked for with the values that ask nothing.
    {**GOOD, "logprobs": False, "top_logprobs": 0, "tools": [], "frequency_penalty": 0,
     "presence_penalty": 0.0, "response_format": {"type": "text"}, "logit_bias": {},
     "top_k": -1, "tool_choice": "auto", "function_call": "none", "modalities": ["text"]},
], ids=["nulls", "wrapped-base64", "features-unasked"])
def test_what_openai_clients_also_send_is_accepted(client, body):
    answer = post(client, body)
    assert answer.status_code == 200, answer.text
    assert answer.json()["choices"][0]["message"]["content"] == "echo: what is this (1 images)"


BAD = [
    (b"{not json", 400, "json"),
    ({**GOOD, "model": "gpt-4"}, 404, "not served"),
    ({**GOOD, "messages": []}, 400, "messages"),
    ({**GOOD, "max_tokens": 0}, 400, "max_tokens"),
    ({**GOOD, "max_tokens": 101}, 400, "at most 100"),
    ({**GOOD, "max_tokens": "5"}, 400, "max_tokens"),
    ({**GOOD, "temperature": 3}, 400, "temperature"),
    ({**GOOD, "n": 2}, 400, "n"),
    (request(image_part("http://example.invalid/cat.png")), 400, "data:image"),
    (request(image_part("data:image/png;base64,@@@")), 400, "base64"),
    (request(image_part("data:image/png;base64," + base64.b64encode(b"plain text").decode())),
     400, "not a"),
    (request(image_part(png_url(65, 65))), 400, "pixels"),
    (request(*[image_part(png_url())] * 4), 400, "4 images"),
    (request({"type": "audio", "audio": "x"}), 400, "type"),
    (request({"type": "text", "text": "<|image_pad|>"}), 400, "<|image_pad|>"),
    (request({"type": "text", "text": "a <|vision_"}, {"type": "text", "text": "start|> b"}),
     400, "<|vision_start|>"),
    (request({"type": "text", "text": "<|vision_pad|>"}), 400, "<|vision_pad|>"),
    ({**GOOD, "messages": [{"role": "user", "content": []}]}, 400,
     "messages.0.content: list should have at least 1 item"),
    ({**GOOD, "stop": ["x"] * 9}, 400, "stop: list should have at most 8 items"),
    (request({"type": "text", "text": 5}), 400, "messages.0.content.0.text: input should be"),
    ({**GOOD, "mm_processor_kwargs": {"max_pixels": 64 * 64 + 1}}, 400, "at most 4,096 pixels"),
    ({**GOOD, "continue_final_message": True}, 400, "add_generation_prompt"),
    ({**GOOD, "stop": [""]}, 400, "stop"),
    ({**GOOD, "logprobs": True}, 400, "logprobs is not supported by this server (only false)"),
    ({**GOOD, "tools": [{"type": "function", "function": {"name": "tap"}}]}, 400, "tools is not"),
    ({**GOOD, "response_format": {"type": "json_object"}}, 400, "response_format is not"),
    ({**GOOD, "frequency_penalty": 0.5}, 400, "frequency_penalty is not"),
    # A tool call, audio or a web search asked for, each of which the answer would lack.
    ({**GOOD, "tool_choice": "required"}, 400,
     'tool_choice is not supported by this server (only "none" or "auto")'),
    ({**GOOD, "tool_choice": {"type": "function", "function": {"name": "tap"}}}, 400,
     "tool_choice is not"),
    ({**GOOD, "function_call": {"name": "tap"}}, 400, "function_call is not"),
    ({**GOOD, "modalities": ["text", "audio"]}, 400, "modalities is not"),
    ({**GOOD, "audio": {"voice": "alloy", "format": "wav"}}, 400,
     "audio is not supported by this server"),
    ({**GOOD, "web_search_options": {}}, 400, "web_search_options is not supported by this server"),
    # The limit's error names the field the client sent (the newer name wins over the older).
    ({**GOOD, "max_completion_tokens": 101}, 400, "max_completion_tokens is 101; this server "
                                                  "allows at most 100"),
    ({**GOOD, "max_tokens": 10, "max_completion_tokens": 101}, 400, "max_completion_tokens is"),
    ({**GOOD, "top_k": -2}, 400, "top_k"),
    ({**GOOD, "top_k": 1.5}, 400, "top_k"),
    ({**GOOD, "repetition_penalty": 0}, 400, "repetition_penalty"),
    (b" " * (LIMITS.max_body_bytes + 1), 413, "limit"),
]


@pytest.mark.parametrize("body,status,words", BAD, ids=[f"{i}-{s}" for i, (_, s, _) in
                                                         enumerate(BAD)])
def test_each_bad_request_gets_its_4xx_and_a_message(client, body, status, words):
    answer = post(client, body)
    assert answer.status_code == status, answer.text
    message = answer.json()["error"]["message"]
    assert words.lower() in message.lower(), message


def test_an_image_pil_calls_a_decompression_bomb_is_a_400(client, monkeypatch):
    """PIL refuses to open an image over twice its MAX_IMAGE_PIXELS (179 million pixels by
    default, a PNG of a few hundred KB): lowered here, so a 50x50 image is one."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    answer = post(client, request(image_part(png_url(50, 50))))
    assert answer.status_code == 400, answer.text
    assert "too large to decode" in answer.json()["error"]["message"]


def test_the_api_key_is_required_when_set():
    app = create_app(EchoEngine(), ServerSettings(model_id=MODEL, api_key="s3cret"))
    with TestClient(app) as client:
        assert post(client, GOOD).status_code == 401
        assert post(client, GOOD, headers={"authorization": "Bearer wrong"}).status_code == 401
        assert client.get("/v1/models").status_code == 401
        good = {"authorization": "Bearer s3cret", "content-type": "application/json"}
        assert client.post("/v1/chat/completions", json=GOOD, headers=good).status_code == 200
        assert client.get("/v1/models", headers=good).status_code == 200


def test_a_key_with_a_space_at_its_start_is_compared_as_sent():
    """The openai backend sends it ("Bearer  s3cret"); it was stripped, then refused (401)."""
    app = create_app(EchoEngine(), ServerSettings(model_id=MODEL, api_key=" s3cret"))
    with TestClient(app) as client:
        assert client.get("/v1/models", headers={"authorization": "Bearer  s3cret"}).status_code \
            == 200
        assert client.get("/v1/models", headers={"authorization": "Bearer s3cret"}).status_code \
            == 401


def events_of(lines) -> list:
    """The data of server-sent events: parsed chunks, and "[DONE]"."""
    return [e if e == "[DONE]" else json.loads(e)
            for e in (line.removeprefix("data: ") for line in lines if line)]


def content(chunks: list[dict]) -> str:
    return "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)


def test_stream_sends_server_sent_event_chunks(client):
    with client.stream("POST", "/v1/chat/completions", json={**GOOD, "stream": True}) as answer:
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/event-stream")
        *chunks, done = events_of(answer.iter_lines())
    assert done == "[DONE]"
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert len(chunks) > 3  # role, a chunk per piece, the end
    plain = post(client, GOOD).json()
    assert content(chunks) == plain["choices"][0]["message"]["content"]
    assert chunks[-1]["choices"][0] == {"index": 0, "delta": {}, "finish_reason": "stop",
                                        "stop_reason": None}
    assert chunks[-1]["usage"] == plain["usage"]


def test_a_stream_that_asks_for_usage_gets_it_in_a_chunk_of_its_own(client):
    """As OpenAI's API sends it with stream_options.include_usage: a last chunk with no
    choices holds the usage, and every other chunk says "usage": null."""
    asked = {**GOOD, "stream": True, "stream_options": {"include_usage": True}}
    with client.stream("POST", "/v1/chat/completions", json=asked) as answer:
        *chunks, last, done = events_of(answer.iter_lines())
    assert done == "[DONE]" and last["choices"] == []
    assert last["usage"] == post(client, GOOD).json()["usage"]
    assert all("usage" in c and c["usage"] is None for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert content(chunks) == post(client, GOOD).json()["choices"][0]["message"]["content"]
    refused = post(client, {**asked, "stream_options": "x"})
    assert refused.status_code == 400 and "stream_options" in refused.text
    unstreamed = post(client, {**asked, "stream": False})
    assert unstreamed.status_code == 400
    assert 'stream_options is only allowed with \\"stream\\": true' in unstreamed.text


def test_stream_chunks_arrive_while_the_model_is_still_writing():
    hold = threading.Event()
    engine = EchoEngine(hold=hold)  # waits after its first piece until let go
    with running_server(create_app(engine, ServerSettings(model_id=MODEL))) as url, \
            httpx.Client(timeout=30) as http, \
            http.stream("POST", f"{url}/chat/completions", json={**GOOD, "stream": True}) as answer:
        events = (json.loads(line.removeprefix("data: ")) for line in answer.iter_lines()
                  if line and line != "data: [DONE]")
        role, first = next(events), next(events)
        assert engine.finished == []  # the first piece came while the engine was still writing
        hold.set()
        rest = list(events)
    assert engine.finished == [1]
    assert role["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert first["choices"][0]["delta"] == {"content": "echo: "}
    assert content([first, *rest]) == "echo: what is this (1 images)"


async def read_stream(client: httpx.AsyncClient, url: str, text: str, on_first_piece,
                      leave_after_first: bool = False) -> list[dict]:
    """A streamed request's chunks; ``on_first_piece()`` runs when its first content arrives."""
    body = {**request({"type": "text", "text": text}), "stream": True}
    chunks: list[dict] = []
    async with client.stream("POST", f"{url}/chat/completions", json=body) as answer:
        assert answer.status_code == 200
        async for line in answer.aiter_lines():
            if not line or line == "data: [DONE]":
                continue
            chunks.append(json.loads(line.removeprefix("data: ")))
            if chunks[-1]["choices"][0]["delta"].get("content"):
                if content(chunks) == content(chunks[-1:]):
                    on_first_piece()
                    if leave_after_first:
                        break  # leaving the block closes the connection mid-stream
    return chunks


def streamed_pair(engine: EchoEngine, hold: threading.Event, leave_first: bool) -> list:
    """Two clients streaming at once in one batch of two; the engine is let go once both saw
    their first piece. Returns each client's chunks and whether the engine was still writing
    when its first piece came."""
    settings = ServerSettings(model_id=MODEL, max_batch=2, batch_wait_s=10)
    firsts: list[bool] = []

    def first_piece() -> None:
        firsts.append(engine.finished == [])
        if len(firsts) == 2:
            hold.set()

    async def both(url: str):
        async with httpx.AsyncClient(timeout=30) as client:
            return await asyncio.gather(
                read_stream(client, url, "client zero", first_piece, leave_after_first=leave_first),
                read_stream(client, url, "client one", first_piece))

    async def next_pair(url: str):  # a plain request and a streamed one, batched together
        async with httpx.AsyncClient(timeout=30) as client:
            return await asyncio.gather(
                client.post(f"{url}/chat/completions", json=request()),
                read_stream(client, url, "client two", lambda: None))

    with running_server(create_app(engine, settings)) as url:
        chunks = asyncio.run(both(url))
        plain, streamed = asyncio.run(next_pair(url))  # the server serves on
    assert plain.status_code == 200
    assert plain.json()["choices"][0]["message"]["content"] == "echo: hello there (0 images)"
    assert content(streamed) == "echo: client two (0 images)"
    return [chunks, firsts]


def test_two_streamed_requests_run_as_one_batch_and_each_gets_its_own_pieces():
    hold = threading.Event()
    engine = EchoEngine(hold=hold)
    (zero, one), firsts = streamed_pair(engine, hold, leave_first=False)
    assert engine.batches[0] == 2 and engine.finished[0] == 2
    assert firsts == [True, True]  # both streamed while the batch was still running
    assert content(zero) == "echo: client zero (0 images)"
    assert content(one) == "echo: client one (0 images)"
    assert len(zero) > 3 and zero[-1]["choices"][0]["finish_reason"] == "stop"


def test_a_client_leaving_mid_stream_breaks_neither_its_batch_nor_the_server():
    hold = threading.Event()
    engine = EchoEngine(hold=hold, piece_delay_s=0.2)  # still writing when the client leaves
    (zero, one), firsts = streamed_pair(engine, hold, leave_first=True)
    assert content(zero) == "echo: "  # it left after the first piece
    assert content(one) == "echo: client one (0 images)"  # its batch mate got everything
    assert engine.batches == engine.finished == [2, 2]
    # The engine was told, while the batch still ran, that the first client had left.
    assert engine.gone[0] == {"client zero": True, "client one": False}


class FailingEngine(EchoEngine):
    """Writes a piece, then fails, as a model running out of memory would."""

    def generate_batch(self, batch, on_text=None, gone=None):
        for sink in on_text or []:
            if sink is not None:
                sink("echo: ")
        raise RuntimeError("CUDA out of memory")


class SilentEngine(EchoEngine):
    """Streams nothing: its text comes with the result."""

    def generate_batch(self, batch, on_text=None, gone=None):
        return super().generate_batch(batch)


def test_an_error_after_the_stream_began_is_an_error_event_not_a_500():
    with TestClient(create_app(FailingEngine(), LIMITS)) as client:
        with client.stream("POST", "/v1/chat/completions", json={**GOOD, "stream": True}) as answer:
            assert answer.status_code == 200
            *chunks, error, done = events_of(answer.iter_lines())
    assert content(chunks) == "echo: " and done == "[DONE]"
    assert error["error"]["type"] == "server_error"
    assert "CUDA out of memory" in error["error"]["message"]


def test_a_plain_request_whose_client_left_is_dropped_while_its_batch_runs():
    engine = EchoEngine(delay_s=1.5)
    with running_server(create_app(engine, LIMITS)) as url:
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(f"{url}/chat/completions", timeout=0.3,
                       json=request({"type": "text", "text": "impatient"}))
        # The engine checks who left after its 1.5 s: by then the server has noticed.
        answer = httpx.post(f"{url}/chat/completions", json=GOOD, timeout=30)
    assert answer.status_code == 200
    assert engine.gone[0] == {"impatient": True}


class OneFailsEngine(EchoEngine):
    """Fails the requests whose text says so, in their places, and answers the others."""

    def generate_batch(self, batch, on_text=None, gone=None):
        done = super().generate_batch(batch)
        return [RuntimeError("this one broke") if "break" in job.text else c
                for job, c in zip(batch, done)]


def test_a_failed_request_gets_a_json_500_and_its_batch_mates_their_answers():
    engine = OneFailsEngine(delay_s=0.3)
    texts = ["fine one", "please break", "fine two"]

    async def together(url):
        async with httpx.AsyncClient(timeout=30) as client:
            return await asyncio.gather(*(client.post(
                f"{url}/chat/completions", json=request({"type": "text", "text": text}))
                for text in texts))

    with running_server(create_app(engine, LIMITS)) as url:
        answers = asyncio.run(together(url))
    assert engine.batches == [3]
    assert [a.status_code for a in answers] == [200, 500, 200]
    assert answers[0].json()["choices"][0]["message"]["content"] == "echo: fine one (0 images)"
    assert answers[1].json()["error"] == {"message": "the server failed: this one broke",
                                          "type": "server_error", "code": None}


def test_a_wrong_method_is_a_405_that_names_the_allowed_one(client):
    answer = client.get("/v1/chat/completions")
    assert answer.status_code == 405 and answer.headers["allow"] == "POST"
    assert "error" in answer.json()


def test_an_engine_that_streams_nothing_still_streams_its_whole_text():
    with TestClient(create_app(SilentEngine(), LIMITS)) as client:
        with client.stream("POST", "/v1/chat/completions", json={**GOOD, "stream": True}) as answer:
            *chunks, done = events_of(answer.iter_lines())
    assert content(chunks) == "echo: what is this (1 images)" and done == "[DONE]"
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


# --- fuzz ---------------------------------------------------------------------------------------
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=12,
)
NOT_STR = JSON.filter(lambda v: not isinstance(v, str))
NOT_BOOL = JSON.filter(lambda v: not isinstance(v, bool))
NOT_NUMBER = JSON.filter(lambda v: isinstance(v, bool) or not isinstance(v, (int, float)))


def wrong_field():
    """(field, value) pairs that no valid request has (null is the default but for the two
    required fields)."""
    optional = st.one_of(
        st.tuples(st.just("max_tokens"), st.integers(max_value=0) | st.integers(min_value=101) |
                  NOT_NUMBER.filter(lambda v: v is not None) | st.floats()),
        st.tuples(st.just("temperature"), st.floats(max_value=-0.001) | st.floats(min_value=2.01)
                  | NOT_NUMBER),
        st.tuples(st.just("top_p"), st.floats(max_value=0) | st.floats(min_value=1.01)
                  | NOT_NUMBER),
        st.tuples(st.just("seed"), st.integers(max_value=-1) | st.integers(min_value=2**63) |
                  st.floats() | st.text()),
        st.tuples(st.just("stream"), NOT_BOOL),
        st.tuples(st.just("n"), st.integers().filter(lambda n: n != 1) | st.text()),
        st.tuples(st.just("stop"), st.lists(st.text(min_size=1), min_size=9, max_size=12) |
                  st.lists(NOT_STR, min_size=1, max_size=3) | st.integers() | st.just([""])),
    ).filter(lambda pair: pair[1] is not None)
    return st.one_of(
        st.tuples(st.just("model"), NOT_STR | st.text(max_size=20).filter(lambda s: s != MODEL)),
        st.tuples(st.just("messages"), JSON.filter(lambda v: not isinstance(v, list)) |
                  st.just([])),
        optional,
    )


def bad_message():
    role = st.text(max_size=10).filter(lambda r: r not in ("system", "user", "assistant"))
    part = st.one_of(
        st.fixed_dictionaries({"type": st.text(max_size=10).filter(
            lambda t: t not in ("text", "image_url")), "text": st.text(max_size=10)}),
        st.fixed_dictionaries({"type": st.just("text"), "text": NOT_STR}),
        st.fixed_dictionaries({"type": st.just("image_url"), "image_url": NOT_STR}),
        st.fixed_dictionaries({"type": st.just("image_url"), "image_url": st.fixed_dictionaries(
            {"url": st.text(max_size=60)})}),  # not a data URL
        st.builds(lambda data: {"type": "image_url", "image_url": {
            "url": "data:image/png;base64," + base64.b64encode(data).decode()}},
            st.binary(max_size=200)),  # base64 of bytes that are no image
    )
    return st.one_of(
        JSON.filter(lambda v: not isinstance(v, dict)),
        st.fixed_dictionaries({"role": role, "content": st.text(max_size=10)}),
        st.fixed_dictionaries({"content": st.text(max_size=10)}),
        st.fixed_dictionaries({"role": st.just("user"),
                               "content": NOT_STR.filter(lambda v: v != [] and
                                                         not isinstance(v, list)) | st.just([])}),
        st.fixed_dictionaries({"role": st.just("user"),
                               "content": st.lists(part, min_size=1, max_size=3)}),
    )


MALFORMED = st.one_of(
    st.binary(max_size=300).filter(lambda b: not _is_json_object(b)),
    JSON.filter(lambda v: not isinstance(v, dict)).map(lambda v: json.dumps(v).encode()),
    st.builds(lambda f: json.dumps({**GOOD, f[0]: f[1]}).encode(), wrong_field()),
    st.builds(lambda m: json.dumps({**GOOD, "messages": GOOD["messages"] + [m]}).encode(),
              bad_message()),
    st.builds(lambda k: json.dumps({key: v for key, v in GOOD.items() if key != k}).encode(),
              st.sampled_from(["model", "messages"])),  # a required field left out
)


def _is_json_object(raw: bytes) -> bool:
    try:
        return isinstance(json.loads(raw), dict)
    except ValueError:
        return False


def test_fuzz_malformed_requests_get_4xx_never_500_and_the_server_lives_on(client):
    statuses = []

    @settings(max_examples=600, deadline=None, suppress_health_check=list(HealthCheck))
    @given(body=MALFORMED)
    def fuzz(body):
        answer = post(client, body)
        assert 400 <= answer.status_code < 500, (body[:300], answer.status_code, answer.text)
        assert answer.json()["error"]["message"]
        statuses.append(answer.status_code)

    fuzz()
    assert len(statuses) >= 500
    assert post(client, GOOD).status_code == 200


# --- load ---------------------------------------------------------------------------------------
def test_64_concurrent_clients_all_get_their_own_answer_and_requests_are_batched():
    engine = EchoEngine(delay_s=0.02)
    with running_server(create_app(engine, ServerSettings(model_id=MODEL))) as url:
        async def one(client: httpx.AsyncClient, i: int) -> tuple[int, dict]:
            answer = await client.post(f"{url}/chat/completions",
                                       json=request({"type": "text", "text": f"client {i}"}))
            return answer.status_code, answer.json()

        async def all_clients():
            limits = httpx.Limits(max_connections=64)
            async with httpx.AsyncClient(timeout=60, limits=limits) as client:
                return await asyncio.gather(*(one(client, i) for i in range(64)))

        results = asyncio.run(all_clients())
    assert [status for status, _ in results] == [200] * 64
    for i, (_, body) in enumerate(results):
        assert body["choices"][0]["message"]["content"] == f"echo: client {i} (0 images)"
    assert sum(engine.batches) == 64
    assert max(engine.batches) > 1, engine.batches  # requests arriving together ran together
    assert max(engine.batches) <= 8


class CountingEngine(EchoEngine):
    def __init__(self, hold: threading.Event) -> None:
        super().__init__(hold=hold)
        self.prepared = 0

    def prepare(self, messages, images, params):
        self.prepared += 1
        return super().prepare(messages, images, params)


def test_requests_past_two_batches_wait_before_their_images_are_prepared():
    """A prepared request holds its image patches until it is answered: a burst larger than two
    batches waits as request bodies, and every slot comes back, however the request ended."""
    hold = threading.Event()
    engine = CountingEngine(hold)
    app = create_app(engine, ServerSettings(model_id=MODEL, max_batch=1, batch_wait_s=0.01))

    async def burst(url: str):
        async with httpx.AsyncClient(timeout=30) as client:
            sends = [asyncio.create_task(client.post(f"{url}/chat/completions", json=request()))
                     for _ in range(5)]
            for _ in range(200):
                if engine.prepared >= 2:
                    break
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.3)
            waiting = engine.prepared
            hold.set()
            return waiting, await asyncio.gather(*sends)

    async def others(url: str):
        async with httpx.AsyncClient(timeout=30) as client:
            bad = await client.post(f"{url}/chat/completions", json={**request(), "model": "x"})
            async with client.stream("POST", f"{url}/chat/completions",
                                     json={**request(), "stream": True}) as answer:
                async for _ in answer.aiter_lines():
                    break  # the client leaves after the first line
            whole = await client.post(f"{url}/chat/completions",
                                      json={**request(), "stream": True})
            return bad, whole

    with running_server(app) as url:
        waiting, answers = asyncio.run(burst(url))
        bad, whole = asyncio.run(others(url))
        # The left stream's slot comes back once its response is over.
        wait_until(lambda: app.state.admitted._value == 2, what="every slot back")
    assert waiting == 2  # one decoding, one queued; the other three not yet prepared
    assert [a.status_code for a in answers] == [200] * 5 and engine.prepared >= 5
    assert bad.status_code == 404 and whole.status_code == 200
    assert app.state.admitted._value == 2


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=x", None])
def test_a_body_a_web_page_could_post_unasked_is_refused(content_type):
    """A page of another origin may post text/plain or a form to any address without asking
    the server first; a JSON post it must ask for (and is not allowed). Only JSON is read, so a
    page the user or the agent's browser opens cannot run the model."""
    engine = EchoEngine()
    headers = {} if content_type is None else {"content-type": content_type}
    with TestClient(create_app(engine, LIMITS)) as client:
        refused = client.post("/v1/chat/completions", content=json.dumps(GOOD).encode(),
                              headers=headers)
        assert refused.status_code == 415, refused.text
        assert "application/json" in refused.json()["error"]["message"]
        answered = post(client, GOOD, {"content-type": "application/json; charset=utf-8"})
        assert answered.status_code == 200, answered.text
    assert sum(engine.batches) == 1  # the model ran for the JSON request alone


def test_a_server_on_loopback_answers_only_its_loopback_names():
    """A web page whose name an attacker pointed at 127.0.0.1 (DNS rebinding) is of the same
    origin as the server to the browser, which then lets it read the answers: its requests
    name the page's host, which is not one of the server's."""
    settings = ServerSettings(model_id=MODEL, hosts=("127.0.0.1", "localhost", "::1"))
    with TestClient(create_app(EchoEngine(), settings), base_url="http://127.0.0.1:8000") as c:
        for host in ("127.0.0.1:8000", "localhost", "[::1]:8000", "LOCALHOST:1"):
            assert c.get("/v1/models", headers={"host": host}).status_code == 200, host
            assert post(c, GOOD, {"host": host}).status_code == 200, host
        for host in ("evil.example:8000", "127.0.0.1.evil.example", ""):
            refused = c.get("/v1/models", headers={"host": host})
            assert refused.status_code == 403, host
            assert post(c, GOOD, {"host": host}).status_code == 403, host


class SmallContext(EchoEngine):
    """An echo engine with room for 64 tokens, which keeps each batch's generation limits."""

    context_length = 64

    def __init__(self) -> None:
        super().__init__()
        self.limits: list[int] = []

    def generate_batch(self, batch, on_text=None, gone=None):
        self.limits += [job.params.max_new_tokens for job in batch]
        return super().generate_batch(batch, on_text, gone)


def test_without_max_tokens_an_answer_may_take_the_room_the_context_leaves():
    """As vLLM's default: a prompt that leaves less room than the default limit is answered
    within that room, not refused; a limit the client set must still fit."""
    engine = SmallContext()
    words = lambda n: " ".join(["w"] * n)  # noqa: E731 - the echo engine counts words
    unset = {"model": MODEL, "max_tokens": None}
    with TestClient(create_app(engine, LIMITS)) as client:
        for prompt, limit in ((50, 14), (5, 59)):
            answer = post(client, {**unset, "messages": [{"role": "user",
                                                           "content": words(prompt)}]})
            assert answer.status_code == 200, answer.text
            assert engine.limits[-1] == limit
        full = post(client, {**unset, "messages": [{"role": "user", "content": words(64)}]})
        assert full.status_code == 400
        assert full.json()["error"]["message"].endswith(
            "64 tokens: with even one new token after it, it exceeds the context of 64")
        asked = post(client, {"model": MODEL, "max_tokens": 20,
                              "messages": [{"role": "user", "content": words(50)}]})
        assert asked.status_code == 400
        assert "with 20 new tokens to write it exceeds the context of 64" in \
            asked.json()["error"]["message"]
