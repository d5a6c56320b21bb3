"""One model for a bench's parallel episodes: ``bench --workers N --model PATH`` loads the
checkpoint once, in the bench's own process, and serves it on loopback to its N worker processes.

Each worker keeps its own env (a phone, a browser, an X display) and asks the model over our
OpenAI-compatible ``serve`` API, with a key made for this run. The server keeps a session (a KV
cache) per episode, so a step prefills only its new screenshot and text; requests that arrive
together prefill each in its own session and decode as one batch (``generate_together``). N
workers then hold one copy of the weights, not N.

Batches form when requests coincide. A batch short of one request per running episode waits up
to ``GANG_WAIT_S`` for the rest: episodes whose replies arrive together come back together when
their env steps take about as long as each other's (within the wait), so after a first wait they
stay in phase and each batch fills at once. A request that misses its batch joins it while it
decodes (the server batches continuously), after a prefill of its own during which the batch
waits. An episode that is slower (starting a new env, a long settle) costs the others at most
that wait per step. Sampled runs (temperature above 0) do not wait:
each of their requests carries a seed and decodes alone, so that seed alone decides its tokens.

The server is the run's own, so its limits are the run's: any number of images and pixels, the
jobs' token budget, each request's pixel budget (sent as ``mm_processor_kwargs``, so the server
resizes as an in-process model would), and a client that waits as long as a batch takes and does
not retry (a failed request ends that episode as an error, as an in-process model's failure
would).
"""

from __future__ import annotations

import contextlib
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

if TYPE_CHECKING:
    from runtime.bench.jobs import EpisodeJob
    from runtime.server.scheduler import BatchScheduler

#: How long a batch short of one request per worker waits for the rest.
GANG_WAIT_S = 0.25


@dataclass(frozen=True)
class Endpoint:
    """Where the bench's model is served, and the key it takes (carried to the workers with
    the job runner, never stored in the run's settings or printed)."""

    url: str
    served_model: str
    api_key: str = field(repr=False)


@dataclass
class SharedModel:
    endpoint: Endpoint
    scheduler: "BatchScheduler"

    def running(self, episodes: int) -> None:
        """A batch waits for at most this many requests: the episodes still running."""
        self.scheduler.max_batch = max(1, episodes)


@contextlib.contextmanager
def serve_to_workers(jobs: "list[EpisodeJob]", workers: int) -> Iterator[SharedModel]:
    """Load the jobs' checkpoint and serve it on a free loopback port while the block runs:
    one session and one batch row per worker."""
    from agent.backends.local import LocalBackend
    from runtime.checkpoint import check_checkpoint
    from runtime.server.app import ServerSettings, create_app, running_server

    job = jobs[0]  # a run's jobs share their model and generation settings
    check_checkpoint(job.model)
    backend = LocalBackend(job.model, sessions=workers, dtype=job.dtype, compile=job.compile)
    key = secrets.token_urlsafe(24)
    name = Path(job.model).resolve().name
    settings = ServerSettings(
        model_id=name, api_key=key, max_batch=workers, max_body_bytes=1 << 40,
        max_images=1 << 20, max_image_pixels=1 << 40, max_tokens=job.max_new_tokens,
        batch_wait_s=GANG_WAIT_S if job.temperature == 0 else ServerSettings.batch_wait_s)
    app = create_app(backend, settings)
    try:
        with running_server(app) as url:
            yield SharedModel(Endpoint(url, name, key), app.state.scheduler)
    finally:
        backend.close()
