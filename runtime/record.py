"""``record``: serve the demonstration page on 127.0.0.1 and run one episode whose actions a person
gives there.

The page (``record_page.html``) polls ``/state``, shows ``/screen.png`` (the screenshot the step
was asked on, at native resolution) and posts each action to ``/action`` in screenshot pixels. The
episode itself is an ordinary ``runtime.episode.run`` with a ``DemonstrationPolicy``: same loop,
recorder, gate, limits and task check as a model's run.
"""

from __future__ import annotations

import contextlib
import io
import threading
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, ValidationError
from rich.console import Console
from starlette.middleware.trustedhost import TrustedHostMiddleware

from agent.policies.demonstration import DemonstrationPolicy
from runtime.episode import ObserverFactory, RunOutcome, check, run
from runtime.server.app import ApiError, read_body, running_server
from runtime.settings import RunError, RunSpec

PAGE = Path(__file__).with_name("record_page.html")
#: After the episode ends, how long the page gets to show the outcome before the server stops.
LINGER_S = 5.0
#: The largest request body taken: an action with a thought of any length a person types (a
#: typed text is at most 2,000 characters). A larger one is refused before it fills the memory.
MAX_BODY_BYTES = 1 << 20
#: No other site may show the page in a frame, where a click it tricks the user into would be
#: the page's own (clickjacking).
NO_FRAMES = {"X-Frame-Options": "DENY", "Content-Security-Policy": "frame-ancestors 'none'"}


class ActionPost(BaseModel):
    """The page's request: an action in screenshot pixels, and the thought typed with it."""

    action: dict[str, Any]
    thought: str = ""
    #: The step whose screenshot the page showed: an action on a screen that is gone is refused.
    step: int | None = None


def record_app(policy: DemonstrationPolicy, end_seen: threading.Event) -> FastAPI:
    """The page's HTTP API; ``end_seen`` is set once the page has been told the episode ended."""
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    # Only pages addressed to this machine by name drive the device: a site that rebinds its own
    # DNS name to 127.0.0.1 is refused.
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=["127.0.0.1", "localhost"])
    page = PAGE.read_text(encoding="utf-8")
    png: dict[int, bytes] = {}  # step -> its screenshot's PNG, encoded once

    @app.get("/")
    def index() -> HTMLResponse:
        return HTMLResponse(page, headers=NO_FRAMES)

    @app.get("/state")
    def state() -> dict[str, Any]:
        view = policy.view()
        if view.finished is not None:
            end_seen.set()
        width, height = view.image.size if view.image is not None else (0, 0)
        return {"goal": view.goal, "kinds": view.kinds, "step": view.step,
                "waiting": view.waiting, "width": width, "height": height,
                "finished": view.finished}

    @app.get("/screen.png")
    def screen() -> Response:
        view = policy.view()
        if view.image is None:
            return Response(status_code=404)
        if view.step not in png:
            buffer = io.BytesIO()
            view.image.save(buffer, format="PNG", compress_level=1)
            png.clear()
            png[view.step] = buffer.getvalue()
        return Response(png[view.step], media_type="image/png",
                        headers={"Cache-Control": "no-store", "X-Step": str(view.step)})

    @app.post("/action")
    async def action(request: Request) -> JSONResponse:
        # Another site's page may post here too (a no-cors fetch or a form needs no preflight,
        # and may promise gigabytes): only this page's own origin, or a client that names none
        # (a script), drives the device, settled before any of the body is read.
        origin = request.headers.get("origin")
        if origin is not None and origin != f"{request.url.scheme}://{request.url.netloc}":
            return JSONResponse({"error": f"refused a request from {origin}"}, status_code=403)
        media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media_type != "application/json":  # media types ignore case (RFC 9110)
            return JSONResponse({"error": "send the action as application/json"},
                                status_code=415)
        try:
            post = ActionPost.model_validate_json(await read_body(request, MAX_BODY_BYTES))
        except ApiError as exc:  # too large, read no further than the limit
            return JSONResponse({"error": exc.message}, status_code=exc.status,
                                headers={"Connection": "close"})
        except ValidationError as exc:
            return JSONResponse({"error": _one_line(exc)}, status_code=422)
        try:
            reply = await run_in_threadpool(policy.submit, post.action, post.thought, post.step)
        except (ValueError, ValidationError) as exc:
            return JSONResponse({"error": _one_line(exc)}, status_code=400)
        return JSONResponse({"reply": reply})

    return app


def record(spec: RunSpec, console: Console, observer: ObserverFactory | None = None, *,
           port: int = 0) -> RunOutcome:
    """Serve the page on 127.0.0.1:``port`` (0: a free one) and run ``spec``'s episode from it."""
    task = check(spec).task  # settings that cannot be used fail before the page is served
    policy = DemonstrationPolicy()
    end_seen = threading.Event()
    with contextlib.ExitStack() as stack:
        try:
            base = stack.enter_context(running_server(record_app(policy, end_seen), port=port))
        except OSError as exc:
            raise RunError(f"cannot serve the recorder on 127.0.0.1:{port} ({exc.strerror}); "
                           "choose another --port") from None
        url = base.removesuffix("/v1") + "/"  # running_server names serve's API root
        console.print(f"record at [bold]{url}[/] (open it in a browser; Ctrl-C stops)",
                      soft_wrap=True)
        try:
            outcome = run(spec, console, observer, task=task, policy=policy)
        finally:
            policy.stop()  # a step still waiting for the page ends
        result = outcome.result
        policy.finish({
            "status": result.status, "reason": result.reason, "steps": result.steps,
            "check": result.check.model_dump() if result.check is not None else None,
            "trajectory": str(outcome.directory.resolve()),
        })
        if result.status != "interrupted":  # Ctrl-C means now
            end_seen.wait(LINGER_S)
    return outcome


def _one_line(exc: Exception) -> str:
    if isinstance(exc, ValidationError):  # pydantic's report spans lines: keep the messages
        return "; ".join(e["msg"] for e in exc.errors())
    return " ".join(str(exc).split())
