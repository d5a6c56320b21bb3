"""One model for a bench's parallel episodes: ``bench --workers N --model PATH`` loads the
checkpoint once, in the bench's own process, and serves it on loopback to its N worker processes.

Each worker keeps its own env (a phone, a browser, an X display) and asks the model over our
OpenAI-compatible ``serve`` API, with a key made for this run. The server keeps a session (a KV
cache) per episode, so a step prefills only its new screenshot and text; requests that arrive
together prefill each in its own session and decode as one batch (``generate_together``). N
workers then hold one copy of the weights, not N.

Batches form when requests coincide. A batch that holds fewer than N requests waits up to
``GANG_WAIT_S`` for the others: episodes whose steps end together come back together (an env
step of the fake or virtual phone is well under it), so after a first wait they stay in phase
and each batch fills at once; an episode that is slower (starting a new env, a long settle)
costs the others at most that wait per step.
"""

from __future__ import annotations

import contextlib
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

#: How long a batch short of one request per worker waits for the rest.
GANG_WAIT_S = 0.25


@dataclass(frozen=True)
class Endpoint:
    """Where the bench's model is served, and the key it takes (carried to the workers with
    the job runner, never stored in the run's settings or printed)."""

    url: str
    served_model: str
    api_key: str = field(repr=False)


@contextlib.contextmanager
def serve_to_workers(path: str, workers: int) -> Iterator[Endpoint]:
    """Load the checkpoint at ``path`` and serve it on a free loopback port while the block
    runs: one session and one batch row per worker."""
    from agent.backends.local import LocalBackend
    from runtime.checkpoint import check_checkpoint
    from runtime.server.app import ServerSettings, create_app, running_server

    check_checkpoint(path)
    backend = LocalBackend(path, sessions=workers)
    key = secrets.token_urlsafe(24)
    name = Path(path).resolve().name
    settings = ServerSettings(model_id=name, api_key=key, max_batch=workers,
                              batch_wait_s=GANG_WAIT_S)
    try:
        with running_server(create_app(backend, settings)) as url:
            yield Endpoint(url, name, key)
    finally:
        backend.close()
