"""Huge prompts: refused before tokenizing when they cannot fit, and tokenized without holding
the GIL, so that a server answers its other requests meanwhile."""

from __future__ import annotations

import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.backends.base import Params
from agent.backends.local import LocalBackend


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["a", " ", "\n", "hello", " world", "<|im_end|>", "é", "日本",
                                 "-" * 40, " " * 33, "<|image_pad|>", "0123"]), max_size=60))
def test_the_fewest_tokens_never_exceeds_the_real_count(tiny_processor, pieces):
    text = "".join(pieces)
    assert tiny_processor.fewest_tokens(text) <= len(tiny_processor.encode(text))


def test_a_text_that_cannot_fit_is_refused_before_it_is_tokenized(tiny_checkpoint, monkeypatch):
    backend = LocalBackend(tiny_checkpoint, device="cpu")
    encoded = []
    monkeypatch.setattr(backend.processor, "encode", lambda text: encoded.append(text) or [])
    huge = "word " * 2_000_000
    with pytest.raises(ValueError, match="the prompt has at least .* exceeds the context"):
        backend.prepare([{"role": "user", "content": huge}], [], Params())
    assert not encoded


def test_tokenizing_a_long_text_lets_other_threads_run(tiny_processor):
    text = "hello world, this is text " * 100_000
    done = threading.Event()
    worker = threading.Thread(target=lambda: (tiny_processor.encode(text), done.set()))
    ticks = 0
    started = time.perf_counter()
    worker.start()
    while not done.is_set():
        ticks += 1
        time.sleep(0.001)
    worker.join()
    # Holding the GIL, the encode let this thread wake once at most in its whole run.
    assert ticks >= 10, (ticks, time.perf_counter() - started)
