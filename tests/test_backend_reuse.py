"""The local backend's single calls reuse the previous step's prefix and still reply exactly as
the plain (batch) path does."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from actions.dialects import PastStep, get_dialect
from agent.backends.base import Params
from agent.backends.local import LocalBackend
from agent.history import HistoryPolicy
from agent.policies.base import hf_messages, prompt_images
from core.geometry import Screen

SCREEN = Screen(131, 277, max_pixels=40 * 28 * 28)  # a size no other test uses


@pytest.mark.parametrize("dialect_name", ["qwen2vl", "uitars"])
def test_a_multi_step_episode_replies_alike_with_and_without_reuse(tiny_checkpoint,
                                                                   dialect_name, monkeypatch):
    backend = LocalBackend(tiny_checkpoint, device="cpu")
    monkeypatch.setattr(backend, "_sessions_pay", lambda group: False)  # batches: plain path
    dialect = get_dialect(dialect_name, "phone")
    rng = np.random.default_rng(7)
    screenshots = [Image.fromarray(rng.integers(0, 256, (277, 131, 3), dtype=np.uint8))
                   for _ in range(4)]
    history = HistoryPolicy(images=2, block=2)
    past: list[PastStep] = []
    cached = []
    for step in range(4):
        # Two actions listed: a short system prompt keeps the test fast.
        prompt = dialect.build_prompt("Open the clock", history.select(past), step,
                                      dialect.kinds & {"tap", "home"}, SCREEN)
        messages, images = hf_messages(prompt), prompt_images(prompt, screenshots)
        params = dict(max_new_tokens=6, stop=dialect.stop, min_pixels=SCREEN.min_pixels,
                      max_pixels=SCREEN.max_pixels,
                      continue_final_message=prompt.continue_final_message)
        reused = backend.generate(messages, images, **params)
        # A batch of two runs the plain generate, between two session calls.
        item = backend.prepare(messages, images, Params(**params))
        plain, twin = backend.generate_batch([item, item])
        assert reused.text == plain.text == twin.text
        assert reused.completion_tokens == plain.completion_tokens
        assert plain.cached_tokens == 0 and reused.prompt_tokens == plain.prompt_tokens
        cached.append(reused.cached_tokens)
        past.append(PastStep(reused.text, f"done {step}", step))
    assert cached[0] == 0 and all(c > 0 for c in cached[1:]), cached


@pytest.fixture(scope="module")
def plain(tiny_checkpoint):
    """The reference: every call prefilled in full (it keeps no cache between calls)."""
    return LocalBackend(tiny_checkpoint, device="cpu", reuse_prefix=False)


def _conversation(name: str, turns: int, seed: int) -> list[tuple[list[dict], list]]:
    """A growing chat: each request repeats the previous one and adds a turn and a picture."""
    rng = np.random.default_rng(seed)
    pictures = [Image.fromarray(rng.integers(0, 256, (90, 60, 3), dtype=np.uint8))
                for _ in range(turns)]
    requests, messages = [], []
    for turn in range(turns):
        messages = messages + [{"role": "user", "content": [
            {"type": "image"}, {"type": "text", "text": f"{name}, step {turn}: where next?"}]}]
        requests.append((messages, pictures[: turn + 1]))
        messages = messages + [{"role": "assistant", "content": f"{name} taps {turn}."}]
    return requests


@pytest.mark.parametrize("sessions", [1, 2])
def test_a_server_keeps_a_session_per_conversation(tiny_checkpoint, plain, sessions):
    """Two clients' growing conversations, request by request in turn, each request alone (as
    ``serve`` runs a request that arrives by itself): with two sessions each continues its own."""
    backend = LocalBackend(tiny_checkpoint, device="cpu", sessions=sessions)
    a, b = _conversation("Ann", 3, seed=1), _conversation("Bob", 3, seed=2)
    params = Params(max_new_tokens=4)
    cached, prompts = [], []
    for request in [r for pair in zip(a, b) for r in pair]:
        (done,) = backend.generate_batch([backend.prepare(*request, params)])
        assert done.text == plain.generate(*request, max_new_tokens=4).text
        cached.append(done.cached_tokens)
        prompts.append(done.prompt_tokens)
    if sessions == 2:
        # From its second request on, each conversation finds its own previous request cached.
        assert cached[:2] == [0, 0]
        assert all(c >= p for c, p in zip(cached[2:], prompts[:-2])), (cached, prompts)
    else:
        # One session, taken in turn: only the opening both chats share is found cached.
        assert len(set(cached[1:])) == 1 and 0 < cached[1] < prompts[0] // 2, (cached, prompts)


def test_a_batch_of_continuing_conversations_runs_through_their_sessions(tiny_checkpoint, plain):
    """Requests that arrive together but each continue a cached conversation (agents' next
    steps) run request by request through their sessions; a batch of new ones runs as a batch."""
    backend = LocalBackend(tiny_checkpoint, device="cpu", sessions=2)
    a, b = _conversation("Ann", 2, seed=3), _conversation("Bob", 2, seed=4)
    params = Params(max_new_tokens=4)
    first = backend.generate_batch([backend.prepare(*r, params) for r in (a[0], b[0])])
    assert [c.cached_tokens for c in first] == [0, 0]  # new conversations: one batch
    assert all(not s.tokens for s in backend.sessions)  # ... which left the sessions alone
    for request in (a[0], b[0]):  # each conversation's first step, alone: into its session
        backend.generate_batch([backend.prepare(*request, params)])
    second = backend.generate_batch([backend.prepare(*r, params) for r in (a[1], b[1])])
    for request, done in zip((a[1], b[1]), second):
        assert done.text == plain.generate(*request, max_new_tokens=4).text
    # Each found its own first step cached (the second step repeats it).
    assert [c.cached_tokens >= f.prompt_tokens for c, f in zip(second, first)] == [True, True]
