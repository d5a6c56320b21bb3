"""The endpoint backend against the answers of OpenAI-compatible servers other than serve.

Before: a reply the server ended (vLLM's "abort" as it shuts down, LMDeploy's null reason,
OpenAI's "content_filter") was acted on, its text cut mid-action; TGI refused every request for
its ``top_p`` of 1.0 and OpenAI's API for the ``skip_special_tokens`` extension; OpenRouter's
error inside a 200 answer lost its words and was never retried; the start-up check refused
an OpenAI key that may request but not list the models, and Ollama's untagged model names; a
certificate this machine does not trust was retried as a dropped connection; and vLLM's, SGLang's
and FastAPI's refusals were shown as their raw JSON.
"""

from __future__ import annotations

import http.server
import json
import ssl
import threading
from pathlib import Path

import httpx
import pytest

from actions.dialects import get_dialect
from agent.backends.openai import OpenAIBackend
from agent.loop import Agent, AgentConfig
from agent.policies.backend import BackendPolicy
from agent.policies.base import PolicyError
from runtime.build import endpoint_policy
from runtime.settings import RunSpec
from tests.agent_fakes import FakePhone

HI = [{"role": "user", "content": "hi"}]
TLS = Path(__file__).parent / "data" / "tls"
TAP = '*FUNCTION*: Tap *ARGS*: {"point": (500, 2'  # cut off while writing 250


def answer(content: str = "done", **choice) -> dict:
    return {"choices": [{"message": {"content": content}, **choice}]}


def backend(handler, **options) -> OpenAIBackend:
    return OpenAIBackend("http://model.test/v1", "m", transport=httpx.MockTransport(handler),
                         backoff_s=0.5, **options)


@pytest.mark.parametrize("reason", ["abort", None, "content_filter", "error"])
def test_a_reply_the_server_ended_is_not_acted_on(reason):
    reply = backend(lambda request: httpx.Response(200, json=answer(TAP, finish_reason=reason)))
    phone = FakePhone()
    result = Agent(phone, BackendPolicy(reply), get_dialect("qwen2vl", "phone"),
                   config=AgentConfig(max_steps=2)).run("tap the flight")
    assert phone.executed == []
    assert result.status == "error"
    assert f"ended the reply before the model did (finish_reason {json.dumps(reason)})" in \
        result.reason


@pytest.mark.parametrize("reason", ["stop", "eos_token", "stop_sequence", "tool_calls", "eos"])
def test_a_reply_the_model_ended_is_read_whichever_server_says_so(reason):
    done = backend(lambda request: httpx.Response(200, json=answer(finish_reason=reason)))
    completion = done.generate(HI, [])
    assert (completion.text, completion.finish_reason) == ("done", "stop")


def test_a_top_p_of_one_that_tgi_refuses_is_left_out():
    """TGI refuses a top_p of 1.0 ("must be > 0.0 and < 1.0"), which is no restriction: it is
    not sent for greedy decoding, which ignores it, and left out once refused."""
    bodies: list[dict] = []

    def tgi(request: httpx.Request) -> httpx.Response:
        bodies.append(body := json.loads(request.content))
        if body.get("top_p", 0.5) >= 1.0:
            return httpx.Response(422, json={"error": "Input validation error: `top_p` must be "
                                                      "> 0.0 and < 1.0",
                                             "error_type": "validation"})
        return httpx.Response(200, json=answer(finish_reason="eos_token"))

    sent = backend(tgi)
    assert sent.generate(HI, [], temperature=0.0).text == "done"
    assert "top_p" not in bodies[0]
    assert sent.generate(HI, [], temperature=0.7, top_p=0.9).text == "done"
    assert (bodies[1]["temperature"], bodies[1]["top_p"]) == (0.7, 0.9)
    assert sent.generate(HI, [], temperature=0.7).text == "done"  # run's top_p, 1.0
    assert [body.get("top_p") for body in bodies[2:]] == [1.0, None]
    assert sent.generate(HI, [], temperature=0.7).text == "done"
    assert len(bodies) == 5 and "top_p" not in bodies[4]  # not asked again


def test_an_extension_the_endpoint_refuses_by_name_is_left_out_from_then_on():
    bodies: list[dict] = []

    def strict(request: httpx.Request) -> httpx.Response:  # as OpenAI's API answers
        bodies.append(body := json.loads(request.content))
        unknown = sorted(set(body) - {"model", "messages", "max_tokens", "temperature"})
        if unknown:
            return httpx.Response(400, json={"error": {
                "message": f"Unrecognized request argument supplied: {unknown[0]}",
                "type": "invalid_request_error"}})
        return httpx.Response(200, json=answer(finish_reason="stop"))

    sent = backend(strict)
    assert sent.generate(HI, []).text == sent.generate(HI, []).text == "done"
    assert [body.get("skip_special_tokens") for body in bodies] == [False, None, None]
    # Another field it refuses is the user's to change: refused, not dropped.
    with pytest.raises(PolicyError, match="Unrecognized request argument supplied: top_k"):
        sent.generate(HI, [], top_k=5)


def test_an_error_inside_a_200_answer_keeps_its_words_and_is_retried_where_it_may_pass():
    """OpenRouter, once the model has started: HTTP 200, {"error": {"code": 502, ...}}."""
    answers = iter([
        httpx.Response(200, json={"error": {"code": 502, "message": "Provider returned error"}}),
        httpx.Response(200, json=answer(finish_reason="stop")),
        httpx.Response(200, json={"error": {"code": 400, "message": "Prompt too long"}}),
    ])
    sleeps: list[float] = []
    sent = backend(lambda request: next(answers), sleep=sleeps.append)
    assert sent.generate(HI, []).text == "done" and sleeps == [0.5]
    with pytest.raises(PolicyError, match=r"refused the request: an error in an answer of HTTP "
                                          r"200 \(code 400\): Prompt too long"):
        sent.generate(HI, [])


def listing(status: int, names: list[str] = ()):
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/models"):
            return httpx.Response(status, json={"data": [{"id": n} for n in names]}
                                  if status == 200 else
                                  {"error": {"message": "Missing scopes: api.model.read"}})
        return httpx.Response(200, json=answer(finish_reason="stop"))
    return httpx.MockTransport(handler)


def test_a_key_that_may_request_but_not_list_the_models_is_asked_at_the_first_step(tmp_path):
    spec = RunSpec(goal="g", model="http://model.test/v1", served_model="m", out=tmp_path)
    policy = endpoint_policy(spec, transport=listing(403))
    assert policy.backend.generate(HI, []).text == "done"
    with pytest.raises(PolicyError, match="refused the API key: HTTP 401"):
        OpenAIBackend("http://model.test/v1", "m", transport=listing(401)).served_models()


def test_a_model_ollama_lists_with_its_tag_is_served_by_its_plain_name(tmp_path):
    spec = RunSpec(goal="g", model="http://model.test/v1", served_model="qwen2.5vl",
                   out=tmp_path)
    assert endpoint_policy(spec, transport=listing(200, ["qwen2.5vl:latest"])).name == "qwen2.5vl"


@pytest.fixture
def self_signed_endpoint():
    """An endpoint over HTTPS whose certificate no CA signed (tests/data/tls, for 127.0.0.1)."""
    class Answers(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            self._send({"object": "list", "data": [{"id": "m"}]})

        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            self.rfile.read(int(self.headers["Content-Length"]))
            self._send(answer(finish_reason="stop"))

        def _send(self, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Answers)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(TLS / "cert.pem", TLS / "key.pem")
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{server.server_port}/v1"
    server.shutdown()
    server.server_close()


def test_an_untrusted_certificate_is_refused_at_once_with_how_to_trust_it(
        self_signed_endpoint, monkeypatch):
    """It was taken for a dropped connection: swallowed by the start-up check, then tried 5
    times over 15 s at the first step."""
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    sleeps: list[float] = []
    untrusted = OpenAIBackend(self_signed_endpoint, "m", sleep=sleeps.append)
    for ask in (untrusted.served_models, lambda: untrusted.generate(HI, [])):
        with pytest.raises(PolicyError, match="TLS certificate is not trusted here .*; set "
                                              "SSL_CERT_FILE to the certificate"):
            ask()
    assert sleeps == []
    monkeypatch.setenv("SSL_CERT_FILE", str(TLS / "cert.pem"))
    trusted = OpenAIBackend(self_signed_endpoint, "m")
    assert trusted.served_models() == ["m"] and trusted.generate(HI, []).text == "done"
    # Trusted, but for another host: failed at once, with no advice that would change nothing.
    elsewhere = OpenAIBackend(self_signed_endpoint.replace("127.0.0.1", "localhost"), "m",
                              sleep=sleeps.append)
    with pytest.raises(PolicyError, match="not trusted here .*Hostname mismatch") as refused:
        elsewhere.generate(HI, [])
    assert "SSL_CERT_FILE" not in str(refused.value) and sleeps == []


@pytest.mark.parametrize("body, words", [
    ({"object": "error", "message": "This model's maximum context length is 32768 tokens",
      "type": "BadRequestError", "param": None, "code": 400},  # vLLM and SGLang
     "HTTP 400: This model's maximum context length is 32768 tokens"),
    ({"detail": [{"loc": ["body", "messages"], "msg": "field required"}]},  # a FastAPI server
     'HTTP 400: [{"loc": ["body", "messages"], "msg": "field required"}]'),
    ({"detail": "Not Found"}, "HTTP 400: Not Found"),
    ({"detail": {"msg": "模型 qwen 不存在"}}, 'HTTP 400: {"msg": "模型 qwen 不存在"}'),
])
def test_a_refusal_is_shown_in_the_servers_own_words_whatever_its_shape(body, words):
    sent = backend(lambda request: httpx.Response(400, json=body))
    with pytest.raises(PolicyError) as refused:
        sent.generate(HI, [])
    assert str(refused.value).endswith(f"refused the request: {words}")


def served_under_v1(asked: list[str]):
    """An endpoint whose API is under /v1 only, as vLLM's is: any other path is a 404."""
    def handler(request: httpx.Request) -> httpx.Response:
        asked.append(request.url.path)
        if request.url.path == "/v1/models":
            return httpx.Response(200, json={"data": [{"id": "m"}]})
        return httpx.Response(404, json={"detail": "Not Found"})
    return httpx.MockTransport(handler)


@pytest.mark.parametrize("base", ["http://model.test", "http://model.test/"])
def test_a_base_url_without_its_v1_is_told_before_the_run_starts(base):
    asked: list[str] = []
    backend = OpenAIBackend(base, "m", transport=served_under_v1(asked))
    with pytest.raises(PolicyError, match=r"^http://model.test has no /models, but "
                                          r"http://model.test/v1 answers there: give "
                                          r"http://model.test/v1, the API's base url$"):
        backend.served_models()
    assert OpenAIBackend("http://model.test/v1", "m",
                         transport=served_under_v1(asked)).served_models() == ["m"]
    # An endpoint with no /models anywhere says nothing, and a run finds out at its first step.
    assert OpenAIBackend("http://model.test/api", "m", transport=listing(404)).served_models() \
        is None


@pytest.mark.parametrize("url, base", [
    ("http://model.test:8000/v1/chat/completions", "http://model.test:8000/v1"),
    ("http://model.test:8000/v1/models/", "http://model.test:8000/v1"),
    ("https://model.test/api/v1/completions", "https://model.test/api/v1"),
])
def test_a_url_that_names_a_route_is_refused_with_the_base_to_give(url, base):
    with pytest.raises(PolicyError) as refused:
        OpenAIBackend(url, "m")
    assert str(refused.value).endswith(", which the backend adds itself; give " + base)
