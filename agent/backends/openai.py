"""``openai``: any OpenAI-compatible chat-completions endpoint (vLLM, SGLang, our ``serve``).

Images travel as base64 PNG data URLs, resized here with the processor's smart_resize to the
prompt's pixel budget: any Qwen2-VL server then sees exactly the pixels a local run would, and
the upload is no larger than what the model uses (where the server would resize that resize
again, the original picture travels, for it to resize once as a local run does). The qwen2vl
format goes on writing the last assistant turn, which vLLM and ``serve`` accept as
``continue_final_message``.

429s, 5xx answers, timeouts and dropped connections are retried with exponential backoff;
anything else ends in a one-line ``PolicyError``.
"""

from __future__ import annotations

import base64
import datetime
import email.utils
import io
import json
import math
import re
import time
from typing import TYPE_CHECKING, Any, Callable

from agent.backends.base import Backend, Completion, Messages, Params
from agent.policies.base import PolicyError
from core.geometry import DEFAULT_MAX_PIXELS, DEFAULT_MIN_PIXELS, smart_resize
from core.images import to_rgb
from core.special_tokens import unframed
from core.text import one_line, well_formed

if TYPE_CHECKING:
    import httpx
    from PIL import Image


#: A reply's finish_reason when the server ended it, not the model: vLLM's, SGLang's and
#: LMDeploy's "abort" (a shutdown), LMDeploy's "error" and null, OpenAI's "content_filter". Any
#: other (OpenAI's "stop", TGI's "eos_token", Together's "eos") is the model's; "length" is the
#: token budget's.
SERVER_ENDED = (None, "abort", "error", "content_filter")
#: Fields sent unasked that an endpoint may refuse by name, and the values of them that leaving
#: out changes nothing: vLLM's and SGLang's extension, and TGI refuses a top_p of 1.
DROPPABLE: dict[str, Callable[[Any], bool]] = {"skip_special_tokens": lambda value: True,
                                               "top_p": lambda value: value == 1.0}
#: What a certificate verification error says when no CA this machine trusts signed it.
UNKNOWN_ISSUER = ("self-signed certificate", "self signed certificate",
                  "unable to get local issuer certificate")


def retried(status: int) -> bool:
    """A 408 (the server's own timeout), a 429 or any 5xx (a proxy's 520 to 529 too) may pass:
    it is tried again."""
    return status in (408, 429) or 500 <= status <= 599


#: Why a key ``header_can_carry`` refuses cannot be used, for the message that refuses it.
KEY_NOT_CARRIED = ("holds a character an HTTP header cannot carry (a line break, a control or "
                   "non-ASCII character, or a space at its end)")
#: Characters of a server's error message kept: its first words say what went wrong.
ERROR_CHARS = 300


def header_can_carry(key: str) -> bool:
    """Whether ``Authorization: Bearer KEY`` carries ``key`` as it is: printable ASCII, and no
    space at its end (h11 refuses such a header; a server would never see the space)."""
    return key.isascii() and key.isprintable() and key == key.rstrip()


#: A URL's user name and password (its authority up to the last "@").
_USERINFO = re.compile(r"(?<=//)[^/?#]*@")
#: The end of a URL that names one of the API's routes rather than its base.
_ROUTE = re.compile(r"/(chat/completions|completions|models)/*$")


def check_endpoint_url(url: str) -> None:
    """A ``PolicyError`` naming what is wrong with an endpoint's URL: httpx raises its own
    ``InvalidURL`` (a traceback) for one it cannot parse, and one without a host or with a port
    no socket has fails only after every retry. One holding a user name or password is refused
    first, and quoted without them: every message naming the endpoint, and the trajectory's
    meta.json, would show them."""
    import httpx

    problem: str | None = None
    advice = "http://HOST:PORT/v1"
    if _USERINFO.search(url):
        problem = ("it holds a user name or password, which messages and the trajectory would "
                   "show; give the key in $VLAGENT_API_KEY (sent as a Bearer token)")
        url = _USERINFO.sub("", url, count=1)
    else:
        try:
            parsed = httpx.URL(url)
        except httpx.InvalidURL as exc:
            problem = str(exc).rstrip(".")
        else:
            if parsed.scheme not in ("http", "https"):
                problem = "it is not http:// or https://"
            elif not parsed.host:
                problem = "it names no host"
            elif parsed.port is not None and not 0 < parsed.port < 65536:
                problem = f"port {parsed.port} is not in 1-65535"
            elif (route := _ROUTE.search(parsed.path)) is not None:
                # The backend adds the route to the base: it would ask .../chat/completions
                # /chat/completions, and the server's 404 would not say why.
                base = str(parsed.copy_with(path=parsed.path[:route.start()] or "/",
                                            query=None))
                problem = f"it names the route {route.group()}, which the backend adds itself"
                advice = base
    if problem:
        raise PolicyError(f"the endpoint URL {url!r} cannot be used: {problem}; give "
                          f"{advice}")


def png_data_url(image: "Image.Image", min_pixels: int | None, max_pixels: int | None,
                 budget_sent: bool = False) -> str:
    """The image as a PNG data URL: RGB, and resized to what the model will see when a pixel
    budget is given (without one, the server's processor applies its checkpoint's own).
    ``budget_sent``: the server resizes with the same budget again."""
    from PIL import Image

    rgb = to_rgb(image)  # transparency on white, as the processor would put it
    if min_pixels is not None or max_pixels is not None:
        bounds = dict(min_pixels=min_pixels or DEFAULT_MIN_PIXELS,
                      max_pixels=max_pixels or DEFAULT_MAX_PIXELS)
        size = smart_resize(rgb.height, rgb.width, **bounds)
        # smart_resize does not always keep its own output (a strip held at one 28-pixel row
        # above max_pixels, a min_pixels at max_pixels): a server that resizes the resized
        # picture again would see other pixels, so it gets the original to resize once.
        if budget_sent and smart_resize(*size, **bounds) != size:
            size = (rgb.height, rgb.width)
        if size != (rgb.height, rgb.width):
            rgb = rgb.resize(size[::-1], Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    rgb.save(buffer, format="PNG", compress_level=1)  # lossless; level 1 is fast enough
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def openai_messages(messages: Messages, images: list["Image.Image"], params: Params,
                    budget_sent: bool = False) -> list[dict]:
    """Hugging Face messages with their images filled in as ``image_url`` parts (``budget_sent``:
    ``png_data_url``'s). Adjacent text parts are sent as one: a server that renders a message's
    content as one string may join its parts with a separator, which would change the prompt
    the model sees."""
    pictures = iter(images)
    out = []
    for message in messages:
        content = message["content"]
        if isinstance(content, str):
            content = well_formed(content)
        else:
            parts: list[dict] = []
            for part in content:
                if part.get("type") == "image":
                    parts.append({"type": "image_url", "image_url": {"url": png_data_url(
                        next(pictures), params.min_pixels, params.max_pixels, budget_sent)}})
                elif parts and parts[-1]["type"] == "text":
                    parts[-1]["text"] += part["text"]
                else:
                    parts.append({"type": "text", "text": part["text"]})
            content = [{**p, "text": well_formed(p["text"])} if p["type"] == "text" else p
                       for p in parts]  # once joined: a pair split across two parts is one
        out.append({"role": message["role"], "content": content})
    return out


class OpenAIBackend(Backend):
    def __init__(
        self,
        base_url: str,
        served_model: str,
        *,
        api_key: str | None = None,
        timeout_s: float = 300.0,
        retries: int = 4,
        backoff_s: float = 1.0,
        transport: "httpx.BaseTransport | None" = None,
        sleep: Callable[[float], None] = time.sleep,
        send_pixel_budget: bool = False,
    ) -> None:
        import httpx

        self.name = served_model
        check_endpoint_url(base_url)
        #: Also send the prompt's pixel budget as ``mm_processor_kwargs`` (vLLM and serve read
        #: it), so the server resizes with it rather than with its checkpoint's own bounds.
        self.send_pixel_budget = send_pixel_budget
        self.base_url = base_url.rstrip("/")
        self.url = self.base_url + "/chat/completions"
        self.retries = retries
        self.backoff_s = backoff_s
        self._sleep = sleep
        # One no header can carry is refused here, never quoted: the reason is recorded.
        if api_key and not header_can_carry(api_key):
            raise PolicyError(f"the API key ($VLAGENT_API_KEY) {KEY_NOT_CARRIED}; set it again "
                              "without one")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._api_key = api_key
        # Connecting should be quick; a long answer on a busy server may not be.
        self.timeout_s = timeout_s
        timeout = httpx.Timeout(timeout_s, connect=min(timeout_s, 10.0))
        self._client = httpx.Client(headers=headers, timeout=timeout, transport=transport)
        self._refused_fields: set[str] = set()  # extensions the endpoint refused by name

    def describe(self) -> str:
        return f"{self.name} at {self.url}"

    def served_models(self) -> list[str] | None:
        """The names ``GET /models`` lists, or None where the endpoint does not say (no such
        route, not reachable yet, an answer of another shape): a run then finds out at its first
        step. A key the endpoint refuses, or a base url that lacks the ``/v1`` under which the
        endpoint answers, is a ``PolicyError`` here already."""
        import httpx

        try:
            response = self._client.get(self.base_url + "/models", timeout=10.0)
        except httpx.HTTPError as exc:
            self._refuse_if_untrusted(exc)
            return None
        # 401: the key is wrong. A 403 may refuse the listing alone (an OpenAI key restricted
        # to requests has no "api.model.read"): a refused request tells at the first step.
        if response.status_code == 401:
            raise PolicyError(f"{self.base_url} refused the API key: HTTP 401: "
                              f"{error_message(response, self._api_key)}")
        if response.status_code == 404:
            self._refuse_if_below_v1()
        try:
            listed = response.json()["data"] if response.status_code == 200 else None
            names = [entry["id"] for entry in listed] if isinstance(listed, list) else None
        except (ValueError, KeyError, TypeError):
            return None
        return names if names and all(isinstance(name, str) for name in names) else None

    def _refuse_if_below_v1(self) -> None:
        """A base url without its ``/v1`` (vLLM's, SGLang's, OpenAI's, our own ``serve``'s)
        answers 404 for every route, and the run found out only at its first step, its env
        started, from a bare "Not Found": a ``PolicyError`` that names the base that answers."""
        import httpx

        if httpx.URL(self.base_url).path.rstrip("/").endswith("/v1"):
            return
        try:
            response = self._client.get(self.base_url + "/v1/models", timeout=10.0)
        except httpx.HTTPError:
            return
        if response.status_code in (200, 401):
            raise PolicyError(f"{self.base_url} has no /models, but {self.base_url}/v1 answers "
                              f"there: give {self.base_url}/v1, the API's base url")

    def request_body(self, messages: Messages, images: list["Image.Image"], params: Params) -> dict:
        budget = {k: v for k, v in (("min_pixels", params.min_pixels),
                                    ("max_pixels", params.max_pixels)) if v is not None}
        sent = self.send_pixel_budget and bool(budget)
        body: dict[str, Any] = {
            "model": self.name,
            "messages": openai_messages(messages, images, params, sent),
            "max_tokens": params.max_new_tokens,
            "temperature": params.temperature,
            # Sampling's only: greedy decoding has no use for it, and TGI refuses a top_p of 1.
            **({"top_p": params.top_p} if params.temperature > 0 else {}),
            # vLLM's extension, sent only when asked for: OpenAI's API refuses it, and an
            # endpoint left to itself applies its model's default.
            **({"repetition_penalty": params.repetition_penalty}
               if params.repetition_penalty is not None else {}),
            # vLLM's and SGLang's extension: the reply as the model wrote it, UI-TARS's
            # <|box_start|> grounding tokens included, which their default drops (a trajectory
            # would train the model on text it did not write). Most servers ignore a field they
            # do not know; one that refuses it (OpenAI's API) is asked again without.
            "skip_special_tokens": False,
        }
        for name in self._refused_fields & body.keys():  # what the endpoint refused before
            if DROPPABLE[name](body[name]):
                del body[name]
        if params.top_k:  # vLLM's extension (serve's too); OpenAI's API has none
            body["top_k"] = params.top_k
        if params.seed is not None:
            body["seed"] = params.seed
        if params.stop:
            body["stop"] = list(params.stop)
        if params.continue_final_message:  # vLLM's extension, which serve shares
            body["continue_final_message"] = True
            body["add_generation_prompt"] = False
        if sent:  # vLLM's extension too, which serve shares
            body["mm_processor_kwargs"] = budget
        return body

    def generate(self, messages: Messages, images: list["Image.Image"], **params: Any) -> Completion:
        asked = Params(**params)
        body = self.request_body(messages, images, asked)
        start = time.perf_counter()
        answer = self._post(body)
        request_ms = (time.perf_counter() - start) * 1000
        try:
            choice = answer["choices"][0]
            text = choice["message"]["content"]
            text = "" if text is None else text  # null content is an empty reply; [] is not
            if not isinstance(text, str):
                raise TypeError(f"content is a {type(text).__name__}, not a string")
            # As the local backend's replies: without a turn's or an image's framing tokens (an
            # end token that a server kept, now that it keeps special tokens).
            text = unframed(text)
        except (KeyError, IndexError, TypeError, AttributeError) as exc:
            raise PolicyError(f"{self.url} sent an answer without choices[0].message.content "
                              f"({type(exc).__name__}: {exc})") from None
        usage = answer.get("usage")
        usage = usage if isinstance(usage, dict) else {}  # the counts are reports, not needed
        details = usage.get("prompt_tokens_details")
        finish = "length" if choice.get("finish_reason") == "length" else "stop"
        if "finish_reason" in choice and choice["finish_reason"] in SERVER_ENDED:
            # Ended by the server, not the model (vLLM's "abort" when it shuts down, a null
            # reason from LMDeploy's, OpenAI's "content_filter"): the text may stop mid-action.
            # (A server that gives no reason at all is taken at its word.)
            raise PolicyError(f"{self.url} ended the reply before the model did (finish_reason "
                              f"{_said(json.dumps(choice['finish_reason']), self._api_key)}), so "
                              "it is not acted on")
        if choice["message"].get("tool_calls") or choice["message"].get("function_call"):
            # No tools were offered: a server's parser took a call out of the model's text, so
            # what is left is not the whole reply. (A finish_reason of "tool_calls" alone, with
            # the text in place, is read as the model's end, as some servers say it.)
            raise PolicyError(f"{self.url} answered with a tool call, which vlagent never "
                              "asks for (it reads the model's action from the reply's text), "
                              "so it is not acted on; serve the model without a tool-call "
                              "parser (vLLM: without --enable-auto-tool-choice)")
        stop, stop_known = matched_stop(choice, finish, asked)
        return Completion(
            text=text,
            prompt_tokens=_count(usage.get("prompt_tokens")),
            completion_tokens=_count(usage.get("completion_tokens")),
            finish_reason=finish,
            stop=stop,
            stop_known=stop_known,
            cached_tokens=_count(details.get("cached_tokens") if isinstance(details, dict)
                                 else None),
            timings={"request_ms": request_ms},
        )

    def _post(self, body: dict) -> dict:
        import httpx

        attempts = self.retries + 1
        for attempt in range(attempts):
            try:
                response = self._send(body)
            except httpx.DecodingError as exc:  # a body its own Content-Encoding cannot read
                raise PolicyError(f"{self.url} sent a body that cannot be decoded: {exc}") \
                    from None
            except httpx.TransportError as exc:  # refused, reset, timed out
                self._refuse_if_untrusted(exc)
                problem = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                delay = self.backoff_s * 2**attempt
            else:
                status = response.status_code
                if status == 200:
                    try:
                        answer = response.json()
                    except (ValueError, RecursionError):  # nested deeper than Python recurses
                        raise PolicyError(f"{self.url} answered 200 with a body that is not "
                                          f"JSON it can read: "
                                          f"{_said(response.text, self._api_key)!r}") from None
                    # OpenRouter's way once the model has started: an error in a 200 answer,
                    # its code the HTTP status it would have had.
                    error = answer.get("error") if isinstance(answer, dict) else None
                    if error is None or "choices" in answer:
                        return answer
                    code = error.get("code") if isinstance(error, dict) else None
                    status = code if isinstance(code, int) and not isinstance(code, bool) else 500
                said = error_message(response, self._api_key)
                problem = (f"HTTP {status}: {said}" if response.status_code != 200 else
                           f"an error in an answer of HTTP 200 (code {status}): {said}")
                if status in (400, 422) and self._refuses_a_field(body, response):
                    return self._post(body)  # asked again at once, without it
                if not retried(status):
                    raise PolicyError(f"{self.url} refused the request: {problem}")
                delay = retry_after(response) or self.backoff_s * 2**attempt
            if attempt + 1 < attempts:
                self._sleep(delay)
        raise PolicyError(f"{self.url} failed {attempts} time(s); last: {problem}")

    def _refuse_if_untrusted(self, exc: Exception) -> None:
        """A certificate this machine does not trust (a self-signed one, another host's, an
        expired one) is no passing fault: a ``PolicyError`` that says so (and, for an issuer
        it does not know, how to trust it), rather than retries."""
        if "CERTIFICATE_VERIFY_FAILED" in str(exc):
            how = ("; set SSL_CERT_FILE to the certificate (or its CA's) in PEM form"
                   if any(said in str(exc) for said in UNKNOWN_ISSUER) else "")
            raise PolicyError(f"{self.base_url}: its TLS certificate is not trusted here "
                              f"({exc}){how}") from None

    def _refuses_a_field(self, body: dict, response: "httpx.Response") -> bool:
        """Whether the endpoint refused by name a field of ``DROPPABLE`` at a value that leaving
        out changes nothing ("Unrecognized request argument supplied: skip_special_tokens",
        TGI's "`top_p` must be > 0.0 and < 1.0"): it is then left out of ``body`` and of the
        later requests that would send it so."""
        for name, droppable in DROPPABLE.items():
            if name in body and droppable(body[name]) and name in response.text:
                self._refused_fields.add(name)
                del body[name]
                return True
        return False

    def _send(self, body: dict) -> "httpx.Response":
        """The answer to ``body``, read whole within the timeout, as each piece arrives (each
        read waits the timeout too). httpx's own timeout holds for each read: a server or
        proxy that sent a byte at a time held the run for ever."""
        import httpx

        deadline = time.monotonic() + self.timeout_s
        with self._client.stream("POST", self.url, json=body) as response:
            content = bytearray()
            for chunk in response.iter_bytes():  # decoded from its Content-Encoding
                content += chunk
                if time.monotonic() > deadline:
                    raise httpx.ReadTimeout(f"the answer took over {self.timeout_s:g} s",
                                            request=response.request)
        headers = [(k, v) for k, v in response.headers.multi_items()
                   if k.lower() not in ("content-encoding", "content-length", "transfer-encoding")]
        return httpx.Response(response.status_code, headers=headers, content=bytes(content),
                              request=response.request, extensions=response.extensions)

    def close(self) -> None:
        self._client.close()


def _count(value: object) -> int:
    """A token count from ``usage``: 0 where the endpoint gave none or no whole number."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def matched_stop(choice: dict, finish: str, params: Params) -> tuple[str | None, bool]:
    """Which of the request's stop strings ended the text, and whether the endpoint said so.

    vLLM (and serve) answer with ``stop_reason``, SGLang with ``matched_stop``: the stop string,
    or a token id or null where an EOS token ended it. OpenAI's own API says neither; then an
    ending at a stop string cannot be told from an EOS token.
    """
    if finish != "stop" or not params.stop:
        return None, True
    for key in ("stop_reason", "matched_stop"):
        if key in choice:
            value = choice[key]
            if isinstance(value, str):
                return (value, True) if value in params.stop else (None, False)
            return None, True
    return None, False


def error_message(response: "httpx.Response", api_key: str | None = None) -> str:
    """The server's own words: OpenAI's ``{"error": {"message": ...}}`` (TGI's and llama.cpp's
    ``{"error": "..."}``), vLLM's and SGLang's ``{"object": "error", "message": ...}`` or a
    FastAPI server's ``{"detail": ...}``; else the body's start. The API key is masked where they
    quote it (``_said``)."""
    try:
        body = response.json()
    except (ValueError, RecursionError):  # no JSON, or nested too deep
        body = None
    if isinstance(body, dict):
        error = body.get("error")
        message = error.get("message") if isinstance(error, dict) else error
        message = message or body.get("message") or body.get("detail")
        if message:
            said = message if isinstance(message, str) else json.dumps(message,
                                                                        ensure_ascii=False)
            return _said(said, api_key)
    return _said(response.text, api_key) or response.reason_phrase


def _said(text: str, api_key: str | None) -> str:
    """A server's words as one line, their start only, with the API key masked where they
    quote it (a proxy may echo the request's headers) before they are cut, so no piece of it
    is left."""
    if api_key:
        text = text.replace(api_key, "<API key>")
    return one_line(text, ERROR_CHARS)


def retry_after(response: "httpx.Response") -> float | None:
    """The server's Retry-After in seconds (capped at a minute): a number of them, or the time
    until the HTTP date it names (RFC 9110 allows both); a negative or unreadable one is no
    advice."""
    advice = response.headers.get("retry-after")
    if advice is None:
        return None
    try:
        seconds = float(advice)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(advice)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:  # "-0000": a time in UTC, as HTTP dates are
            when = when.replace(tzinfo=datetime.timezone.utc)
        seconds = max(when.timestamp() - time.time(), 0.0)  # a date gone by: now
    return min(seconds, 60.0) if math.isfinite(seconds) and seconds >= 0 else None
