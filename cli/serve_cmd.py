"""``serve``: our Qwen2-VL as an OpenAI-compatible API (FastAPI + uvicorn)."""

from __future__ import annotations

import ipaddress
import socket
from pathlib import Path

import typer
from rich.console import Console

from cli.error_line import error_line
from cli.model_options import compile_option, dtype_option, torch_device_option
from core.terminal import literal

err = Console(stderr=True)


def serve(
    path: Path = typer.Argument(..., help="Checkpoint directory (config.json, *.safetensors, "
                                "tokenizer.json)."),
    port: int = typer.Option(8000, "--port", "-p", min=0, max=65535,
                             help="The port to listen on (0: a free one, printed at start)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind; the default is "
                             "reachable from this machine only."),
    api_key: str = typer.Option(None, "--api-key", envvar="VLAGENT_API_KEY", show_default=False,
                                help="Require 'Authorization: Bearer KEY' (or set "
                                "$VLAGENT_API_KEY, which keeps the key out of `ps`)."),
    served_model_name: str = typer.Option(None, "--served-model-name", help="The model name "
                                          "clients send (default: the checkpoint folder's name)."),
    device: str = torch_device_option(),
    dtype: str = dtype_option(),
    max_images: int = typer.Option(16, "--max-images", min=1, help="Images per request."),
    max_image_pixels: int = typer.Option(4096 * 4096, "--max-image-pixels", min=1,
                                         help="Width x height of each image, before resizing."),
    max_body_mb: float = typer.Option(32.0, "--max-body-mb", min=0.001, help="Request size."),
    max_tokens: int = typer.Option(4096, "--max-tokens", min=1, help="Most new tokens a "
                                   "request may ask for."),
    max_batch: int = typer.Option(8, "--max-batch", min=1, help="Requests run together."),
    sessions: int = typer.Option(8, "--sessions", min=1, help="Conversations whose KV cache is "
                                 "kept between requests: a request that continues one (an "
                                 "agent's next step) prefills only what is new. Requests "
                                 "batched together each take one; a batch with more requests "
                                 "than sessions prefills whole prompts."),
    compile: bool = compile_option(batches=True),
) -> None:
    """Serve the checkpoint at PATH: POST /v1/chat/completions (stream too) and GET /v1/models.

    Examples:

      agent_cli.py serve /models/Qwen2-VL-7B-Instruct --port 8000

      agent_cli.py run "turn on wifi" --model http://127.0.0.1:8000/v1 --served-model Qwen2-VL-7B-Instruct
    """
    from runtime.checkpoint import check_checkpoint

    try:  # before torch loads (seconds): a broken checkpoint is told at once
        check_checkpoint(path)
    except ValueError as exc:
        err.print(error_line(exc), soft_wrap=True)
        raise typer.Exit(2) from None

    import uvicorn

    from agent.backends.local import LocalBackend
    from agent.backends.openai import KEY_NOT_CARRIED, header_can_carry
    from runtime.server.app import ServerSettings, create_app

    if api_key and not header_can_carry(api_key):  # every request would be refused (401)
        err.print(error_line(f"the API key {KEY_NOT_CARRIED}, so no client could send it; set "
                             "it again without one"),
                  soft_wrap=True)
        raise typer.Exit(2)
    if not _loopback(host) and not api_key:
        err.print(f"[yellow]warning:[/] {literal(host)} is reachable from other machines and "
                  "no --api-key is set: anyone who reaches it can use the model", soft_wrap=True)
    try:  # before the model loads: a port in use is said at once
        sock = _listening_socket(host, port)
    except OSError as exc:
        err.print(error_line(f"cannot listen on {host}:{port}: {exc.strerror or exc}"),
                  soft_wrap=True)
        raise typer.Exit(2) from None
    try:
        with err.status("loading the model…"):
            backend = LocalBackend(path, device=device, dtype=dtype, compile=compile,
                                   sessions=sessions)
    except (FileNotFoundError, ValueError, KeyError) as exc:
        err.print(error_line(exc), soft_wrap=True)
        raise typer.Exit(2) from None
    settings = ServerSettings(
        model_id=served_model_name or path.resolve().name, api_key=api_key or None,
        hosts=tuple(dict.fromkeys((host.lower(), "localhost", "127.0.0.1", "::1")))
        if _loopback(host) else None,
        max_body_bytes=int(max_body_mb * 1024 * 1024), max_images=max_images,
        max_image_pixels=max_image_pixels, max_tokens=max_tokens, max_batch=max_batch,
    )
    # One line whatever the terminal's width: scripts read the port of --port 0 from it.
    where = f"[{host}]" if ":" in host else host  # an IPv6 address goes in brackets in a URL
    err.print(literal(f"serving {backend.describe()} as {settings.model_id!r} at "
                      f"http://{where}:{sock.getsockname()[1]}/v1"
                      + (" (API key required)" if api_key else "")), soft_wrap=True)
    config = uvicorn.Config(create_app(backend, settings), host=host, port=port,
                            log_level="info")
    uvicorn.Server(config).run(sockets=[sock])


def _listening_socket(host: str, port: int) -> socket.socket:
    """A socket bound to ``host``:``port`` for uvicorn, of the family uvicorn would bind."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds its own
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
