"""The backends: the openai backend against our real ``serve`` gives the local backend's greedy
tokens; it retries 429s, 5xx, timeouts and refused connections with backoff and otherwise fails
with one clear line; ``--model URL --served-model`` selects it."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import re
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from fastapi import FastAPI, Request
from PIL import Image
from rich.console import Console

from actions.dialects import get_dialect
from actions.dialects.base import ImagePart, Message, Prompt, TextPart
from agent.backends.base import Params
from agent.backends.local import LocalBackend
from agent.backends.openai import OpenAIBackend, png_data_url
from agent.policies.backend import BackendPolicy
from agent.policies.base import PolicyError
from agent.policies.base import Request as PolicyRequest
from agent.policies.local import LocalPolicy
from core.geometry import Screen, smart_resize
from core.kinds import KINDS
from runtime.build import make_policy
from runtime.server.app import ServerSettings, create_app, running_server
from runtime.settings import RunError, RunSpec
from tests.probes import noise_image
from tests.test_agent_cli import cli

MODEL = "tiny"
SCREEN = Screen(150, 230, max_pixels=200 * 28 * 28)  # a size no other test uses


def chat(text: str) -> list[dict]:
    return [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]}]


@pytest.fixture(scope="module")
def local(tiny_checkpoint):
    return LocalBackend(tiny_checkpoint, device="cpu")


@pytest.fixture(scope="module")
def served(local):
    """Our ``serve`` on a free port, in front of the same tiny model."""
    with running_server(create_app(local, ServerSettings(model_id=MODEL, api_key="k3y"))) as url:
        yield url


def test_greedy_through_serve_equals_the_local_backend(local, served):
    remote = OpenAIBackend(served, MODEL, api_key="k3y")
    image = noise_image(150, 230, seed=1)
    for params in (dict(max_new_tokens=12),
                   dict(max_new_tokens=20, stop=("e",), min_pixels=3136, max_pixels=50_000)):
        want = local.generate(chat("what is on screen?"), [image], **params)
        got = remote.generate(chat("what is on screen?"), [image], **params)
        assert (got.text, got.prompt_tokens, got.completion_tokens, got.finish_reason,
                got.stop, got.stop_known) == \
            (want.text, want.prompt_tokens, want.completion_tokens, want.finish_reason,
             want.stop, want.stop_known)
        assert got.completion_tokens >= 1
    remote.close()


def test_which_stop_string_ended_a_reply_reaches_the_client(local, served):
    """The stop string that ended a reply is known locally, sent as vLLM's ``stop_reason``
    (plain and streamed), and read back by the openai backend; an EOS token or the token
    limit is no stop string."""
    remote = OpenAIBackend(served, MODEL, api_key="k3y")
    image = noise_image(143, 201, seed=5)
    free = local.generate(chat("and now?"), [image], max_new_tokens=24)
    assert len(free.text) >= 6 and free.stop is None and free.stop_known
    stop = free.text[3:5]  # the reply is cut where this first appears
    cut = free.text[: free.text.find(stop)]
    params = dict(max_new_tokens=24, stop=("\u2603 never", stop))
    for backend in (local, remote):
        got = backend.generate(chat("and now?"), [image], **params)
        assert (got.text, got.finish_reason, got.stop, got.stop_known) == (cut, "stop", stop, True)
    body = remote.request_body(chat("and now?"), [image], Params(**params)) | {"stream": True}
    with httpx.stream("POST", f"{served}/chat/completions", json=body,
                      headers={"Authorization": "Bearer k3y"}) as answer:
        events = [json.loads(line.removeprefix("data: ")) for line in answer.iter_lines()
                  if line and line != "data: [DONE]"]
    assert "".join(e["choices"][0]["delta"].get("content", "") for e in events) == cut
    assert events[-1]["choices"][0]["stop_reason"] == stop
    assert remote.generate(chat("and now?"), [image], max_new_tokens=24).stop is None
    remote.close()


@pytest.mark.parametrize("choice, want", [
    ({"finish_reason": "stop", "stop_reason": "*RESULT*"}, ("*RESULT*", True)),  # vLLM
    ({"finish_reason": "stop", "stop_reason": None}, (None, True)),  # vLLM, an EOS token
    ({"finish_reason": "stop", "stop_reason": 151645}, (None, True)),  # vLLM, a stop token id
    ({"finish_reason": "stop", "matched_stop": "✿RESULT✿"}, ("✿RESULT✿", True)),  # SGLang
    ({"finish_reason": "stop"}, (None, False)),  # OpenAI's API says neither
    ({"finish_reason": "stop", "stop_reason": "other"}, (None, False)),  # not one we asked for
    ({"finish_reason": "length", "stop_reason": None}, (None, True)),
])
def test_the_openai_backend_reads_which_stop_ended_the_text(choice, want):
    from agent.backends.openai import matched_stop

    params = Params(stop=("*RESULT*", "✿RESULT✿"))
    finish = "length" if choice["finish_reason"] == "length" else "stop"
    assert matched_stop(choice, finish, params) == want


def test_top_k_reaches_the_sampler_locally_and_through_serve(local, served):
    """At top_k=1 a sampled request decodes greedily whatever its temperature and seed (and
    without top_k those seeds do not); with a seed, top_k=4 samples the same text both ways.
    A top_k of 0 (no limit) is not sent: OpenAI's own API has no such field."""
    remote = OpenAIBackend(served, MODEL, api_key="k3y")
    image = noise_image(97, 161, seed=31)
    ask = dict(max_new_tokens=10, temperature=1.5)
    greedy = local.generate(chat("where next?"), [image], max_new_tokens=10).text
    assert any(local.generate(chat("where next?"), [image], **ask, seed=seed).text != greedy
               for seed in (1, 2))
    for backend in (local, remote):
        for seed in (1, 2):
            got = backend.generate(chat("where next?"), [image], **ask, top_k=1, seed=seed)
            assert got.text == greedy
    texts = {b.generate(chat("where next?"), [image], **ask, top_k=4, seed=7).text
             for b in (local, remote)}
    assert len(texts) == 1
    assert "top_k" not in remote.request_body(chat("x"), [image], Params())
    assert remote.request_body(chat("x"), [image], Params(top_k=5))["top_k"] == 5
    remote.close()


def test_a_repetition_penalty_reaches_the_decoder_locally_and_through_serve(local, served):
    """Unset, each side decodes with its model's default (this checkpoint has none); set, it
    is sent as vLLM's extension and applied by serve as by the local backend."""
    remote = OpenAIBackend(served, MODEL, api_key="k3y")
    image = noise_image(97, 161, seed=31)
    ask = dict(max_new_tokens=16)
    plain = local.generate(chat("say it twice"), [image], **ask).text
    penalized = {b.generate(chat("say it twice"), [image], **ask, repetition_penalty=2.5).text
                 for b in (local, remote)}
    assert len(penalized) == 1 and penalized != {plain}
    assert remote.generate(chat("say it twice"), [image], **ask).text == plain
    assert "repetition_penalty" not in remote.request_body(chat("x"), [image], Params())
    assert remote.request_body(chat("x"), [image], Params(repetition_penalty=1.05)
                               )["repetition_penalty"] == 1.05
    remote.close()


def test_the_endpoint_policy_writes_what_the_local_policy_writes(tiny_checkpoint, served,
                                                                 monkeypatch, tmp_path):
    """A qwen2vl step (which writes on in the assistant turn) through ``run``'s policy factory."""
    monkeypatch.setenv("VLAGENT_API_KEY", "k3y")
    endpoint = make_policy(RunSpec(goal="g", model=served, served_model=MODEL,
                                   max_new_tokens=16), tmp_path)
    local = LocalPolicy(tiny_checkpoint, device="cpu", max_new_tokens=16)
    dialect = get_dialect("qwen2vl", "phone")
    frames = [noise_image(150, 230, seed=2)]
    prompt = Prompt([Message("system", [TextPart(dialect.system_prompt(KINDS["phone"], SCREEN))]),
                     Message("user", [TextPart("open the settings"), ImagePart(0)]),
                     Message("assistant", [TextPart("I will tap")])],
                    continue_final_message=True)
    request = PolicyRequest(prompt, frames, SCREEN, step=0, stop=dialect.stop)
    want, got = local.respond(request), endpoint.respond(request)
    assert isinstance(endpoint, BackendPolicy) and endpoint.describe().startswith(MODEL)
    assert got.text == want.text
    assert got.usage["prompt_tokens"] == want.usage["prompt_tokens"]
    assert got.usage["new_tokens"] == want.usage["new_tokens"]


def test_eight_concurrent_requests_through_serve_all_succeed(local, served):
    remote = OpenAIBackend(served, MODEL, api_key="k3y")
    questions = [f"question {i}" for i in range(8)]
    images = [noise_image(60 + 7 * i, 90, seed=i) for i in range(8)]
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda q, im: remote.generate(chat(q), [im], max_new_tokens=6),
                            questions, images))
    for question, image, completion in zip(questions, images, got):
        assert completion.text == local.generate(chat(question), [image], max_new_tokens=6).text
    remote.close()


def test_streamed_pieces_through_serve_join_to_the_plain_greedy_text(served):
    """The tiny model's real decode loop streams through ``serve``: several content chunks, which
    join to the text, finish reason and usage of the same request not streamed."""
    body = {"model": MODEL, "temperature": 0, "max_tokens": 16, "messages": [
        {"role": "user", "content": "describe the screen"}]}
    with httpx.Client(timeout=60, headers={"authorization": "Bearer k3y"}) as http:
        plain = http.post(f"{served}/chat/completions", json=body).json()
        with http.stream("POST", f"{served}/chat/completions",
                         json={**body, "stream": True}) as answer:
            events = [line.removeprefix("data: ") for line in answer.iter_lines() if line]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    pieces = [c["choices"][0]["delta"]["content"] for c in chunks[1:-1]]
    assert len(pieces) > 1 and all(pieces)
    assert "".join(pieces) == plain["choices"][0]["message"]["content"]
    assert chunks[-1]["choices"][0]["finish_reason"] == plain["choices"][0]["finish_reason"]
    streamed_usage = chunks[-1]["usage"]
    cached = streamed_usage.pop("prompt_tokens_details")["cached_tokens"]
    assert streamed_usage == {k: v for k, v in plain["usage"].items()
                              if k != "prompt_tokens_details"}
    # The same prompt again: the server's session had it cached, all but the last token.
    assert cached == plain["usage"]["prompt_tokens"] - 1


def test_generate_batch_streams_each_request_its_own_pieces(local):
    """One batch, two generation groups (a stop string splits them), two of three rows streamed."""
    params = [Params(max_new_tokens=10), Params(max_new_tokens=10), Params(max_new_tokens=12,
                                                                           stop=("e",))]
    batch = [local.prepare(chat(f"question {i}"), [noise_image(60, 90, seed=i)], p)
             for i, p in enumerate(params)]
    plain = local.generate_batch(batch)
    pieces: dict[int, list[str]] = {0: [], 2: []}
    streamed = local.generate_batch(batch, [pieces[0].append, None, pieces[2].append])
    assert [c.text for c in streamed] == [c.text for c in plain]
    for row, got in pieces.items():
        assert "".join(got) == plain[row].text and len(got) > 1


def test_requests_whose_callers_left_are_cut_off_and_the_others_answered(local, monkeypatch):
    """Two generation groups; request 0 leaves once its group has started, the whole second
    group before it runs."""
    params = [Params(max_new_tokens=10), Params(max_new_tokens=10),
              Params(max_new_tokens=12, stop=("e",))]
    batch = [local.prepare(chat(f"question {i}"), [noise_image(60, 90, seed=i)], p)
             for i, p in enumerate(params)]
    plain = local.generate_batch(batch)
    groups: list[int] = []
    run_group = local._generate_group
    monkeypatch.setattr(local, "_generate_group",
                        lambda group, *rest: groups.append(len(group)) or run_group(group, *rest))
    # Request 0 is there when its group starts, and gone from its first read-back on.
    cut = local.generate_batch(batch, gone=[lambda: bool(groups), lambda: False, lambda: True])
    assert groups == [2]  # the second group was never prefilled
    assert cut[0].finish_reason == "dropped" and cut[0].completion_tokens == 1
    assert (cut[1].text, cut[1].finish_reason) == (plain[1].text, plain[1].finish_reason)
    assert (cut[2].text, cut[2].completion_tokens, cut[2].finish_reason) == ("", 0, "dropped")


def recording_backend(**options) -> tuple[OpenAIBackend, list[dict]]:
    """An openai backend whose server answers "ok" to everything, and the list its request bodies
    (as JSON) are appended to."""
    seen: list[dict] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.content))
        return httpx.Response(200, json={"choices": [{"message": {"content": "ok"}}]})

    return OpenAIBackend("http://model.test/v1", "m", transport=httpx.MockTransport(handler),
                         **options), seen


def test_the_reply_comes_back_as_the_model_wrote_it_grounding_tokens_and_all():
    """vLLM drops special tokens from a reply unless asked not to: UI-TARS's box tokens would be
    lost. A framing token a server then keeps (the turn's end) is left out, as locally."""
    seen: list[dict] = []
    written = "Action: click(start_box='<|box_start|>(12,34)<|box_end|>')"

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.content))
        return httpx.Response(200, json={"choices": [{"message": {
            "content": written + "<|im_end|>"}}]})

    backend = OpenAIBackend("http://model.test/v1", "m", transport=httpx.MockTransport(handler))
    assert backend.generate(chat("hi"), [noise_image(56, 56, 0)]).text == written
    assert seen[0]["skip_special_tokens"] is False


# send_pixel_budget: the server resizes the picture again, and at a size smart_resize keeps it
# must still travel at the model's size (test_openai_pixel_budget_resend.py: sizes it does not).
@pytest.mark.parametrize("send_pixel_budget", [False, True])
def test_images_travel_as_png_data_urls_at_the_size_the_model_sees(send_pixel_budget):
    backend, seen = recording_backend(send_pixel_budget=send_pixel_budget)
    assert backend.generate(chat("hi"), [noise_image(1080, 2400, 3)], max_pixels=200_000,
                            stop=("*RESULT*",), continue_final_message=True).text == "ok"
    body = seen[0]
    url = body["messages"][0]["content"][0]["image_url"]["url"]
    assert url.startswith("data:image/png;base64,")
    image = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    assert image.format == "PNG"
    assert image.size[::-1] == smart_resize(2400, 1080, max_pixels=200_000)
    assert body["stop"] == ["*RESULT*"] and body["continue_final_message"] is True
    assert body["add_generation_prompt"] is False and body["model"] == "m"
    # Adjacent text parts (a dialect's reply, then the runtime's text) travel as one.
    backend.generate([{"role": "assistant", "content": [
        {"type": "text", "text": "Tap it"}, {"type": "text", "text": "\n*RESULT*: ok\n"},
        {"type": "image"}, {"type": "text", "text": "\n*RETURN*: "},
        {"type": "text", "text": "next"}]}], [noise_image(40, 40, 3)])
    parts = seen[1]["messages"][0]["content"]
    assert [p["type"] for p in parts] == ["text", "image_url", "text"]
    assert (parts[0]["text"], parts[2]["text"]) == ("Tap it\n*RESULT*: ok\n", "\n*RETURN*: next")


def scripted(*answers):
    """A transport answering with ``answers`` in turn (a status, or an exception to raise)."""
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        answer = answers[len(calls)]
        calls.append(request)
        if isinstance(answer, Exception):
            raise answer
        if answer == 200:
            return httpx.Response(200, json={"choices": [{"message": {"content": "done"},
                                                          "finish_reason": "stop"}],
                                             "usage": {"prompt_tokens": 4,
                                                       "completion_tokens": 1}})
        headers = {"retry-after": "7"} if answer == 429 else {}
        return httpx.Response(answer, headers=headers,
                              json={"error": {"message": f"status {answer} here"}})

    return httpx.MockTransport(handler), calls


def backend_for(transport, sleeps, retries=4):
    return OpenAIBackend("http://model.test/v1", "m", transport=transport, retries=retries,
                         backoff_s=0.5, sleep=sleeps.append)


def test_5xx_429_and_dropped_connections_are_retried_with_exponential_backoff():
    transport, calls = scripted(500, httpx.ConnectError("refused"), 503, 429, 200)
    sleeps: list[float] = []
    completion = backend_for(transport, sleeps).generate([{"role": "user", "content": "hi"}], [])
    assert completion.text == "done" and completion.prompt_tokens == 4
    assert len(calls) == 5
    assert sleeps == [0.5, 1.0, 2.0, 7.0]  # the 429's Retry-After wins over the backoff
    # Any 5xx: a proxy's 520 to 529 and a 507 pass too, and so does a server's own timeout.
    transport, calls = scripted(529, 507, 408, 520, 200)
    assert backend_for(transport, []).generate([{"role": "user", "content": "hi"}], []).text \
        == "done"
    assert len(calls) == 5


@pytest.mark.parametrize("choice", [
    {"message": {"content": None, "tool_calls": [{"id": "c", "type": "function", "function": {
        "name": "click", "arguments": "{}"}}]}, "finish_reason": "tool_calls"},
    {"message": {"content": "click(1, 2)", "tool_calls": [{"id": "c", "type": "function"}]},
     "finish_reason": "stop"},
    {"message": {"content": None, "function_call": {"name": "click", "arguments": "{}"}},
     "finish_reason": "function_call"},
])
def test_a_tool_call_answer_is_not_taken_as_the_reply(choice):
    """No tools are offered: a server whose parser took a call out of the model's text left
    only the rest of it (none here), which was acted on as the reply."""
    backend = OpenAIBackend("http://model.test/v1", "m", transport=httpx.MockTransport(
        lambda request: httpx.Response(200, json={"choices": [choice]})))
    with pytest.raises(PolicyError, match="answered with a tool call"):
        backend.generate([{"role": "user", "content": "hi"}], [])


# h11 refuses a header value ending in a space: "abc " was retried, then quoted in the error.
@pytest.mark.parametrize("key", ["abc\r", "a\nb", "cl\u00e9-123", "tab\there", "s3cret "])
def test_an_api_key_no_header_can_carry_is_refused_without_quoting_it(key):
    transport, calls = scripted(200)
    with pytest.raises(PolicyError, match="API key") as refused:
        OpenAIBackend("http://model.test/v1", "m", api_key=key, transport=transport)
    assert key.strip() not in str(refused.value) and not calls


@pytest.mark.parametrize("answer, said", [
    ({"choices": [{"message": {"content": [{"type": "text", "text": "hi"}]}}]}, "not a string"),
    ({"choices": [{"message": {"content": []}}]}, "not a string"),
    ({"choices": [{"message": {"content": 0}}]}, "not a string"),
    ({"choices": []}, "without choices[0].message.content"),
    ([1, 2], "without choices[0].message.content"),
])
def test_an_answer_without_a_text_is_a_clear_error(answer, said):
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json=answer))
    with pytest.raises(PolicyError, match=re.escape(said)):
        backend_for(transport, []).generate([{"role": "user", "content": "hi"}], [])


@pytest.mark.parametrize("body", [b"not json", b"[" * 100_000 + b"]" * 100_000])
def test_a_body_that_is_no_json_it_can_read_is_a_clear_error(body):
    """JSON nested 100,000 deep raised Python's RecursionError past the client."""
    transport = httpx.MockTransport(lambda request: httpx.Response(200, content=body))
    with pytest.raises(PolicyError, match="answered 200 with a body that is not JSON"):
        backend_for(transport, []).generate([{"role": "user", "content": "hi"}], [])


def test_null_content_is_an_empty_reply():
    answer = {"choices": [{"message": {"content": None}, "finish_reason": "stop"}]}
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json=answer))
    assert backend_for(transport, []).generate([{"role": "user", "content": "hi"}], []).text == ""


@pytest.mark.parametrize("usage", ["n/a", None, {"prompt_tokens": None, "completion_tokens": None},
                                   {"prompt_tokens": "4", "prompt_tokens_details": "x"}])
def test_odd_usage_reports_count_as_zero(usage):
    answer = {"choices": [{"message": {"content": "done"}}], "usage": usage}
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json=answer))
    done = backend_for(transport, []).generate([{"role": "user", "content": "hi"}], [])
    assert (done.text, done.prompt_tokens, done.completion_tokens) == ("done", 0, 0)


def test_a_body_its_content_encoding_cannot_read_is_a_clear_error():
    transport = httpx.MockTransport(lambda request: httpx.Response(
        200, content=b"not gzip", headers={"content-encoding": "gzip"}))
    with pytest.raises(PolicyError, match="cannot be decoded"):
        backend_for(transport, []).generate([{"role": "user", "content": "hi"}], [])


@pytest.mark.parametrize("advice", ["-1", "nan", "inf", "soon"])
def test_a_retry_after_that_is_no_number_of_seconds_falls_back_to_the_backoff(advice):
    answers = iter([503, 503, 200])

    def handler(request: httpx.Request) -> httpx.Response:
        answer = next(answers)
        if answer == 200:
            return httpx.Response(200, json={"choices": [{"message": {"content": "done"}}]})
        return httpx.Response(answer, headers={"retry-after": advice}, json={"error": "busy"})

    sleeps: list[float] = []
    completion = backend_for(httpx.MockTransport(handler), sleeps).generate(
        [{"role": "user", "content": "hi"}], [])
    assert completion.text == "done" and sleeps == [0.5, 1.0]


def test_a_retry_after_http_date_is_waited_for():
    """RFC 9110's other form of Retry-After: the time to try again (it got the 0.5 s backoff)."""
    from datetime import datetime, timedelta, timezone
    from email.utils import format_datetime

    later = format_datetime(datetime.now(timezone.utc) + timedelta(seconds=30), usegmt=True)
    answers = iter([httpx.Response(503, headers={"retry-after": later}),
                    httpx.Response(200, json={"choices": [{"message": {"content": "done"}}]})])
    sleeps: list[float] = []
    backend_for(httpx.MockTransport(lambda request: next(answers)), sleeps).generate(
        [{"role": "user", "content": "hi"}], [])
    assert len(sleeps) == 1 and 27 < sleeps[0] <= 30  # the date is whole seconds


def half_transparent() -> Image.Image:
    """Left half opaque red, right half fully transparent (its colour says black)."""
    image = Image.new("RGBA", (56, 56), (0, 0, 0, 0))
    image.paste((255, 0, 0, 255), (0, 0, 28, 56))
    return image


def test_transparency_travels_on_white_as_the_processor_reads_it():
    from model.image_config import ImageProcessingConfig
    from model.image_processing import preprocess_image
    from runtime.server.images import decoded, open_data_url

    image = half_transparent()
    url = png_data_url(image, None, None)
    sent = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    assert sent.mode == "RGB" and sent.getpixel((50, 10)) == (255, 255, 255)
    # A client's own RGBA file, sent as it is, reaches the server's model as a local run's.
    raw = io.BytesIO()
    image.save(raw, format="PNG")
    served = decoded(open_data_url(
        "data:image/png;base64," + base64.b64encode(raw.getvalue()).decode(), max_pixels=10_000))
    config = ImageProcessingConfig()
    assert (preprocess_image(served, config)[0] == preprocess_image(image, config)[0]).all()


def test_it_gives_up_after_the_retries_with_the_servers_words():
    transport, calls = scripted(*[500] * 3)
    with pytest.raises(PolicyError, match=r"failed 3 time\(s\); last: HTTP 500: status 500 here"):
        backend_for(transport, [], retries=2).generate([{"role": "user", "content": "hi"}], [])
    assert len(calls) == 3


def test_a_client_error_is_not_retried():
    transport, calls = scripted(400, 200)
    with pytest.raises(PolicyError, match="refused the request: HTTP 400: status 400 here"):
        backend_for(transport, []).generate([{"role": "user", "content": "hi"}], [])
    assert len(calls) == 1


def test_an_api_key_the_server_quotes_back_is_masked_in_its_words():
    """A proxy may echo the request's headers in its error: the reason is printed and recorded,
    so the key is masked before the words are cut short, leaving no piece of it."""
    key = "sk-" + "s3cretKEY" * 40  # longer than the words kept: cut after masking, not before

    def echo(request: httpx.Request) -> httpx.Response:
        said = {"error": {"message": f"bad request; auth was {request.headers['Authorization']}"}}
        return httpx.Response(401 if request.method == "GET" else 400, json=said)

    backend = OpenAIBackend("http://model.test/v1", "m", api_key=key,
                            transport=httpx.MockTransport(echo))
    for call in (backend.served_models,
                 lambda: backend.generate([{"role": "user", "content": "hi"}], [])):
        with pytest.raises(PolicyError, match="auth was Bearer <API key>") as refused:
            call()
        assert "s3cretKEY" not in str(refused.value) and "sk-s3c" not in str(refused.value)


def test_a_slow_server_times_out_and_is_retried():
    app = FastAPI()
    answered = []

    @app.post("/v1/chat/completions")
    async def slow(request: Request) -> dict:
        answered.append(1)
        if len(answered) == 1:
            await asyncio.sleep(3)
        return {"choices": [{"message": {"content": "late but here"}}]}

    with running_server(app) as url:
        backend = OpenAIBackend(url, "m", timeout_s=0.5, backoff_s=0.01)
        assert backend.generate([{"role": "user", "content": "hi"}], []).text == "late but here"
        assert len(answered) == 2
        never = OpenAIBackend(url, "m", timeout_s=0.2, retries=0)
        answered.clear()
        with pytest.raises(PolicyError, match="ReadTimeout"):
            never.generate([{"role": "user", "content": "hi"}], [])


# httpx raised InvalidURL (a traceback from `run`) for the first; the others failed only after
# every retry and backoff, as a ConnectError or UnsupportedProtocol.
@pytest.mark.parametrize("url, says", [
    ("http://[::1/v1", "Invalid port"),
    ("http:///v1", "it names no host"),
    ("http://127.0.0.1:99999/v1", "port 99999 is not in 1-65535"),
    ("http://127.0.0.1:0/v1", "port 0 is not in 1-65535"),
    ("ftp://127.0.0.1/v1", "not http:// or https://"),
])
def test_an_endpoint_url_that_cannot_be_used_is_refused_before_any_request(url, says):
    transport, calls = scripted(200)
    with pytest.raises(PolicyError, match=re.escape(says)) as refused:
        OpenAIBackend(url, "m", transport=transport)
    assert repr(url) in str(refused.value) and "\n" not in str(refused.value) and not calls


@pytest.mark.parametrize("url", ["http://alice:pw123@127.0.0.1:8000/v1",
                                 "https://pw123@model.test/v1",
                                 # Wrong in other ways too, and "@" in the password itself.
                                 "http://alice:pw123@127.0.0.1:99999/v1",
                                 "https://alice:p@pw123@model.test:0/v1"])
def test_an_endpoint_url_with_a_password_is_refused_without_quoting_it(url, tmp_path):
    """Every message naming the endpoint, and the trajectory, would show it."""
    transport, calls = scripted(200)
    with pytest.raises(PolicyError, match="user name or password") as refused:
        OpenAIBackend(url, "m", transport=transport)
    assert "pw123" not in str(refused.value) and not calls
    done = cli("run", "x", "--model", url, "--served-model", "m", "--env", "browser",
               "--out", str(tmp_path / "runs"), cwd=tmp_path)
    assert done.returncode == 2 and "user name or password" in done.stderr, done.stderr
    assert "pw123" not in done.stdout + done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "runs").exists()


def test_text_that_is_not_valid_unicode_is_sent_with_replacement_characters():
    """A goal's bytes that are not UTF-8 (argv's surrogateescape) and a page title cut inside an
    emoji are lone surrogates, which no JSON body can carry (a UnicodeEncodeError ended the run).
    """
    backend, seen = recording_backend()
    messages = [{"role": "user", "content": "Order a caf\udce9"},
                {"role": "assistant", "content": [  # 😀's halves in two parts, then a lone one
                    {"type": "text", "text": "Smile \ud83d"}, {"type": "text", "text": "\ude00"},
                    {"type": "image"}, {"type": "text", "text": "Deal \ud83d"}]}]
    assert backend.generate(messages, [noise_image(30, 30, 5)]).text == "ok"
    first, second = seen[0]["messages"]
    assert first["content"] == "Order a caf\ufffd"
    texts = [p["text"] for p in second["content"] if p["type"] == "text"]
    assert texts == ["Smile 😀", "Deal \ufffd"]


def test_the_local_backend_reads_text_that_is_not_valid_unicode_as_the_openai_one_sends_it(
        local):
    """The tokenizer refuses a lone surrogate (a TypeError ended a local run whose goal's bytes
    were not UTF-8); the local backend reads it as U+FFFD, the text the openai backend sends."""
    broken = [{"role": "user", "content": "Order a caf\udce9 \ud83d"}]
    clean = [{"role": "user", "content": "Order a caf\ufffd \ufffd"}]
    first, second = (local.generate(m, [], max_new_tokens=4) for m in (broken, clean))
    assert (first.text, first.prompt_tokens) == (second.text, second.prompt_tokens)


def test_a_closed_port_fails_with_one_line():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again when the block ends: nothing listens
    backend = OpenAIBackend(f"http://127.0.0.1:{port}/v1", "m", retries=1, backoff_s=0.01)
    with pytest.raises(PolicyError, match=r"failed 2 time\(s\); last: ConnectError") as info:
        backend.generate([{"role": "user", "content": "hi"}], [])
    assert "\n" not in str(info.value)


def test_a_wrong_api_key_is_a_clear_error(served):
    backend = OpenAIBackend(served, MODEL, api_key="wrong")
    with pytest.raises(PolicyError, match="HTTP 401: a valid API key is required"):
        backend.generate([{"role": "user", "content": "hi"}], [], max_new_tokens=2)


def test_requests_the_model_cannot_take_are_refused_before_it_runs(served):
    backend = OpenAIBackend(served, MODEL, api_key="k3y", retries=0)
    with pytest.raises(PolicyError, match="HTTP 400: .*aspect ratio"):
        backend.generate(chat("hi"), [noise_image(10, 2500, seed=4)], max_new_tokens=2)
    with pytest.raises(PolicyError, match="HTTP 400: .*exceeds the context of 4096"):
        backend.generate(chat("hi"), [noise_image(40, 40, seed=4)], max_new_tokens=4096)


def test_a_prompt_the_image_sizes_make_too_long_is_refused_before_any_pixel_is_decoded(
        served, monkeypatch):
    """Four large one-colour PNGs make a small body whose prompt cannot fit: every image was
    decoded first (16 such in 1.25 MB took gigabytes of the server's memory to refuse)."""
    import runtime.server.app

    decoded = []
    monkeypatch.setattr(runtime.server.app, "decoded",
                        lambda image: decoded.append(image.size) or image.convert("RGB"))
    raw = io.BytesIO()
    Image.new("RGB", (2000, 2000), "white").save(raw, format="PNG")
    url = "data:image/png;base64," + base64.b64encode(raw.getvalue()).decode()
    content = [{"type": "image_url", "image_url": {"url": url}}] * 4 + [
        {"type": "text", "text": "hi"}]
    answer = httpx.post(served + "/chat/completions", headers={"Authorization": "Bearer k3y"},
                        json={"model": MODEL, "max_tokens": 2,
                              "messages": [{"role": "user", "content": content}]}, timeout=60)
    assert answer.status_code == 400 and "exceeds the context" in answer.text, answer.text
    assert decoded == []
    # One that fits is decoded and answered.
    fits = httpx.post(served + "/chat/completions", headers={"Authorization": "Bearer k3y"},
                      json={"model": MODEL, "max_tokens": 2, "messages": [{"role": "user",
                            "content": [content[0], content[-1]]}],
                            "mm_processor_kwargs": {"max_pixels": 200_704}}, timeout=60)
    assert fits.status_code == 200 and decoded == [(2000, 2000)], fits.text


def test_model_generate_prints_the_reply_the_backend_and_serve_give(local, tiny_checkpoint):
    """It decoded without the special tokens an agent reads (<|object_ref_start|> and the
    other grounding tokens), and kept a stop string that serve cuts off."""
    from typer.testing import CliRunner

    from cli.app import app
    from core.terminal import printable

    def printed(*extra: str) -> str:
        done = CliRunner().invoke(app, ["model", "generate", str(tiny_checkpoint), "-p", "hello",
                                        "--max-new-tokens", "24", "--temperature", "0.9",
                                        "--seed", "7", "--device", "cpu", *extra])
        assert done.exit_code == 0, done.output
        return done.stdout.removesuffix("\n")

    def backend(*stop: str) -> str:
        return local.generate([{"role": "user", "content": "hello"}], [], max_new_tokens=24,
                              temperature=0.9, seed=7, stop=stop).text

    whole = backend()
    assert printed() == printable(whole)
    stop = whole[len(whole) // 2:len(whole) // 2 + 2]
    assert printed("--stop", stop) == printable(backend(stop)) == printable(
        whole[:whole.index(stop)])


def test_an_endpoint_needs_the_served_model_name(tmp_path):
    with pytest.raises(RunError, match="--served-model"):
        make_policy(RunSpec(goal="g", model="http://127.0.0.1:9/v1"), tmp_path)


def test_a_name_or_key_the_endpoint_refuses_ends_the_run_before_the_env_opens(served, tmp_path,
                                                                                monkeypatch):
    from runtime.episode import run as run_episode

    opened = []

    @contextlib.contextmanager
    def env(spec, console):
        opened.append(spec)
        raise AssertionError("the env was opened")
        yield

    def start(served_model: str, key: str) -> None:
        monkeypatch.setenv("VLAGENT_API_KEY", key)
        spec = RunSpec(goal="g", model=served, served_model=served_model, out=tmp_path / "runs")
        run_episode(spec, Console(file=io.StringIO()), env_factory=env)

    with pytest.raises(RunError, match=r"does not serve --served-model 'tyni'; it serves 'tiny'"):
        start("tyni", "k3y")
    with pytest.raises(RunError, match="refused the API key: HTTP 401") as refused:
        start(MODEL, "wrong-key")
    assert "wrong-key" not in str(refused.value)
    assert opened == [] and not (tmp_path / "runs").exists()


@pytest.mark.parametrize("chosen,prompted,noted", [
    ({}, "qwen2vl", True),
    ({"dialect": "qwen25vl"}, "qwen25vl", False),
    ({"processor": "qwen25"}, "qwen25vl", False),
], ids=["nothing", "--dialect", "--processor"])
def test_a_served_model_of_unknown_family_is_run_with_a_note_on_its_dialect(
        served, tmp_path, monkeypatch, tiny_qwen25_checkpoint, chosen, prompted, noted):
    """A Qwen2.5-VL model prompted in Qwen2-VL's format taps elsewhere: the run says which
    dialect it prompts in, and how to choose another where it could only take the default."""
    from runtime.episode import run as run_episode

    class Opened(Exception):
        pass

    @contextlib.contextmanager
    def env(spec, console):
        raise Opened
        yield

    monkeypatch.setenv("VLAGENT_API_KEY", "k3y")
    if "processor" in chosen:
        chosen = {"processor": str(tiny_qwen25_checkpoint)}
    shown = io.StringIO()
    with pytest.raises(Opened):
        run_episode(RunSpec(goal="g", model=served, served_model=MODEL, out=tmp_path / "runs",
                            **chosen), Console(file=shown, width=400), env_factory=env)
    text = shown.getvalue()
    assert f"prompted in the {prompted} dialect" in text
    assert ("give --dialect qwen25vl for a Qwen2.5-VL model" in text) is noted


@pytest.mark.parametrize("answer", [
    httpx.Response(404, json={"error": {"message": "no such route"}}),
    httpx.Response(200, json={"object": "list"}),
    httpx.Response(200, text="<html>a proxy</html>"),
    httpx.ConnectError("refused"),
])
def test_an_endpoint_that_lists_no_models_is_asked_at_the_first_step(tmp_path, answer):
    def handler(request: httpx.Request) -> httpx.Response:
        if isinstance(answer, Exception):
            raise answer
        return answer

    backend = OpenAIBackend("http://model.test/v1", "m", transport=httpx.MockTransport(handler))
    assert backend.served_models() is None


@pytest.mark.parametrize("dtype,name", [("bf16", "bfloat16"), ("fp16", "float16")])
def test_the_local_backend_runs_in_half_precision_too(tiny_checkpoint, dtype, name):
    backend = LocalBackend(tiny_checkpoint, device="cpu", dtype=dtype)
    completion = backend.generate(chat("hi"), [noise_image(56, 56, seed=5)], max_new_tokens=4)
    assert backend.describe().endswith(f"on cpu ({name})")
    assert 1 <= completion.completion_tokens <= 4 and completion.prompt_tokens > 4
    assert completion.timings["generate_ms"] > 0


@pytest.mark.parametrize("dtype,name", [("bf16", "bfloat16"), ("FP16", "float16"), ("fp32", "float32")])
def test_run_dtype_reaches_the_local_model(tiny_checkpoint, tmp_path, dtype, name):
    policy = make_policy(RunSpec(goal="g", model=str(tiny_checkpoint), dtype=dtype), tmp_path)
    assert policy.backend.describe().endswith(f"({name})")


def test_the_pixel_budget_travels_as_mm_processor_kwargs(local, served):
    """Opted in, the client sends its pixel budget as vLLM's ``mm_processor_kwargs``, and serve
    resizes with it (a raw 200x300 picture: fewer tokens at a smaller budget); a budget whose
    minimum is above its maximum is a 400."""
    quiet = OpenAIBackend(served, MODEL, api_key="k3y")
    told = OpenAIBackend(served, MODEL, api_key="k3y", send_pixel_budget=True)
    params = Params(max_new_tokens=2, max_pixels=56 * 56 * 2)
    assert "mm_processor_kwargs" not in quiet.request_body(chat("hi"), [noise_image(20, 20, 1)],
                                                           params)
    assert told.request_body(chat("hi"), [noise_image(20, 20, 1)], params)[
        "mm_processor_kwargs"] == {"max_pixels": 56 * 56 * 2}
    buffer = io.BytesIO()
    noise_image(200, 300, seed=5).save(buffer, format="PNG")
    url = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
    messages = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}},
                                             {"type": "text", "text": "what is it?"}]}]
    headers = {"Authorization": "Bearer k3y"}

    def ask(**extra) -> httpx.Response:
        return httpx.post(f"{served}/chat/completions", headers=headers, timeout=60, json={
            "model": MODEL, "messages": messages, "max_tokens": 1, **extra})

    plain = ask().json()["usage"]["prompt_tokens"]
    budget = {"max_pixels": 56 * 56 * 2}
    small = ask(mm_processor_kwargs=budget).json()["usage"]["prompt_tokens"]
    expected = local.prepare(messages=[{"role": "user", "content": [
        {"type": "image"}, {"type": "text", "text": "what is it?"}]}],
        images=[noise_image(200, 300, seed=5)], params=Params(max_new_tokens=1, **budget))
    assert small == expected.prompt_tokens < plain
    refused = ask(mm_processor_kwargs={"min_pixels": 9000, "max_pixels": 4000})
    assert refused.status_code == 400 and "min_pixels is above max_pixels" in refused.text


def test_requests_sent_while_another_decodes_join_it_and_are_answered_first(tiny_checkpoint):
    """Continuous batching through ``serve``: A (2,000 tokens, not streamed) decodes; then B1
    (streamed, with an image) and B2 are sent together, then C (a stop string of its own).
    B1 and B2 join A's running batch and are answered while A still writes, B1 streamed piece
    by piece; C cannot join and opens the next batch. Each text is what the model gives it alone."""
    import threading
    import time

    backend = LocalBackend(tiny_checkpoint, device="cpu", sessions=4)
    alone = LocalBackend(tiny_checkpoint, device="cpu", reuse_prefix=False)
    for b in (backend, alone):
        b.model.eos_token_ids = []  # the random model could end at an EOS any time
    batches: list[int] = []
    running = threading.Event()
    run_batch = backend.generate_batch
    backend.generate_batch = lambda batch, *args: (batches.append(len(batch)), running.set(),
                                                   run_batch(batch, *args))[-1]
    image = noise_image(58, 94, seed=21)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    url_b = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
    asks = {"A": ([{"role": "user", "content": "write a long story"}], [], {"max_tokens": 2000}),
            "B1": ([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url_b}},
                                                 {"type": "text", "text": "what is it"}]}],
                   [image], {"max_tokens": 30}),
            "B2": ([{"role": "user", "content": "say more"}], [], {"max_tokens": 5}),
            "C": ([{"role": "user", "content": "count"}], [], {"max_tokens": 5, "stop": ["zz"]})}
    expected = {}
    for name, (messages, images, fields) in asks.items():
        plain = [{"role": m["role"], "content": m["content"] if isinstance(m["content"], str)
                  else [{"type": "image"}, m["content"][1]]} for m in messages]
        expected[name] = alone.generate(plain, images, max_new_tokens=fields["max_tokens"],
                                        stop=tuple(fields.get("stop", ()))).text

    async def run(url: str) -> dict:
        async with httpx.AsyncClient(timeout=300) as http:
            def body(name: str, **extra) -> dict:
                messages, _, fields = asks[name]
                return {"model": MODEL, "messages": messages, "temperature": 0, **fields,
                        **extra}

            async def ask(name: str) -> tuple[str, bool]:
                answer = await http.post(f"{url}/chat/completions", json=body(name))
                return answer.json()["choices"][0]["message"]["content"], a.done()

            async def stream(name: str) -> tuple[list[str], bool]:
                pieces = []
                async with http.stream("POST", f"{url}/chat/completions",
                                       json=body(name, stream=True)) as answer:
                    async for line in answer.aiter_lines():
                        if line.startswith("data: {"):
                            delta = json.loads(line[6:])["choices"][0]["delta"]
                            pieces += [delta["content"]] if delta.get("content") else []
                return pieces, a.done()

            a = asyncio.create_task(ask("A"))
            while not running.is_set():
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.2)  # A's prefill is over: it decodes
            b = asyncio.gather(stream("B1"), ask("B2"))
            # C last: nothing joins past a request that waits for the next batch.
            await asyncio.sleep(0.5)
            (b1, b1_a), (b2, b2_a) = await b
            c, c_a = await ask("C")
            return {"A": (await a)[0], "B1": b1, "B2": b2, "C": c, "A done": (b1_a, b2_a, c_a)}

    started = time.monotonic()
    with running_server(create_app(backend, ServerSettings(model_id=MODEL))) as url:
        got = asyncio.run(run(url))
    assert batches == [1, 1], (batches, time.monotonic() - started)  # A's (B1, B2 joined), C's
    assert got["A done"] == (False, False, True)
    assert len(got["B1"]) > 3  # streamed as it was decoded, not sent at the end
    got["B1"] = "".join(got["B1"])
    assert {name: got[name] for name in asks} == expected


class WaitingRequests:
    """A server's arrivals as a joining engine sees them: ``waiting`` (names of ``prepared``
    requests) wait from the start, beside ``first``, the batch's own request."""

    def __init__(self, prepared: dict, first: str, waiting: list[str], max_rows: int):
        from agent.backends.base import Joined

        self.joined = Joined
        self.prepared, self.first, self.max_rows = prepared, first, max_rows
        self.waiting, self.names = list(waiting), [first]
        self.limits: list[int] = []  # of the takes while ``first`` decodes
        self.answers: dict = {}

    def any(self, accept):
        return bool(self.waiting)

    def take(self, accept, limit):
        if self.first not in self.answers:
            self.limits.append(limit)
        taken, self.waiting = self.waiting[:limit], self.waiting[limit:]
        self.names += taken
        return [self.joined(self.names.index(n), self.prepared[n], None, lambda: False)
                for n in taken]

    def deliver(self, index, result):
        self.answers[self.names[index]] = result


def test_requests_join_a_running_group_only_up_to_the_servers_row_cap(tiny_checkpoint):
    """Four sessions, but the server caps a batch at 2 rows: the three waiting requests join
    the long one a row at a time, each once the one before it has ended, and each gets the
    text it gets alone."""
    backend = LocalBackend(tiny_checkpoint, device="cpu", sessions=4)
    alone = LocalBackend(tiny_checkpoint, device="cpu", reuse_prefix=False)
    for b in (backend, alone):
        b.model.eos_token_ids = []
    asks = {"long": 120, "b1": 6, "b2": 6, "b3": 6}
    images = {n: [noise_image(40 + 10 * i, 60, seed=i)] for i, n in enumerate(asks)}
    expected = {n: alone.generate(chat(f"tell me {n}"), images[n], max_new_tokens=k).text
                for n, k in asks.items()}
    prepared = {n: backend.prepare(chat(f"tell me {n}"), images[n], Params(max_new_tokens=k))
                for n, k in asks.items()}
    arrivals = WaitingRequests(prepared, "long", ["b1", "b2", "b3"], max_rows=2)
    backend.generate_batch([prepared["long"]], arrivals=arrivals)
    assert arrivals.limits == [1, 1, 1]  # never more than one row beside the long one
    assert {n: c.text for n, c in arrivals.answers.items()} == expected


def test_a_request_that_joins_a_chunk_at_a_time_counts_as_cached_what_it_did_not_compute(
        tiny_checkpoint):
    """A request of over 1,400 tokens joins a running one and is prefilled 512 tokens at a time: its
    cached tokens are what it shares with the running request's prompt (copied from that
    session), as when it runs after it, not its own chunks counted again."""
    backend = LocalBackend(tiny_checkpoint, device="cpu", sessions=2)
    after = LocalBackend(tiny_checkpoint, device="cpu", sessions=2)
    asks = {"long": (chat("write a long story"), 60),
            "joiner": (chat(" ".join(f"w{i}" for i in range(700))), 4)}
    images = {"long": [noise_image(50, 40, seed=1)], "joiner": [noise_image(60, 50, seed=2)]}
    prepared = {n: backend.prepare(m, images[n], Params(max_new_tokens=k))
                for n, (m, k) in asks.items()}
    assert prepared["joiner"].prompt_tokens > 1400
    expected = [after.generate(m, images[n], max_new_tokens=k) for n, (m, k) in asks.items()]
    arrivals = WaitingRequests(prepared, "long", ["joiner"], max_rows=2)
    backend.generate_batch([prepared["long"]], arrivals=arrivals)
    joined = arrivals.answers["joiner"]
    assert 0 < expected[1].cached_tokens == joined.cached_tokens < 100
    assert joined.text == expected[1].text


def test_an_answer_that_trickles_in_times_out_as_a_whole():
    """httpx's timeout holds for each read: a server (or a proxy) that sends a byte at a time
    never trips it, and held the run for ever. The whole answer has the timeout."""
    body = json.dumps({"choices": [{"message": {"content": "slowly"}}]}).encode()

    class Trickle(httpx.SyncByteStream):
        def __iter__(self):
            for byte in body:
                time.sleep(0.02)
                yield bytes([byte])

    transport = httpx.MockTransport(lambda request: httpx.Response(200, stream=Trickle()))
    never = OpenAIBackend("http://model.test/v1", "m", transport=transport, timeout_s=0.2,
                          retries=1, sleep=lambda s: None)
    with pytest.raises(PolicyError, match="failed 2 time.*ReadTimeout.*took over 0.2 s"):
        never.generate([{"role": "user", "content": "hi"}], [])
    patient = OpenAIBackend("http://model.test/v1", "m", transport=transport, timeout_s=30)
    assert patient.generate([{"role": "user", "content": "hi"}], []).text == "slowly"
