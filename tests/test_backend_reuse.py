"""The local backend's single calls reuse the previous step's prefix and still reply exactly as
the plain (batch) path does."""

from __future__ import annotations

import numpy as np
import pytest
from episode_prompts import episode_prompts
from PIL import Image

from actions.dialects import PastStep, get_dialect
from agent.backends.base import Joined, Params
from agent.backends.local import LocalBackend
from agent.history import HistoryPolicy
from agent.policies.base import hf_messages, prompt_images
from core.actions import Tap
from core.geometry import Screen

SCREEN = Screen(131, 277, max_pixels=40 * 28 * 28)  # a size no other test uses


@pytest.mark.parametrize("dialect_name", ["qwen2vl", "uitars"])
def test_a_multi_step_episode_replies_alike_with_and_without_reuse(tiny_checkpoint,
                                                                   dialect_name):
    backend = LocalBackend(tiny_checkpoint, device="cpu")  # one session
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
        # A batch of two (more than the sessions) runs the plain generate, between two session
        # calls.
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
        # Bob's first request takes the empty session and copies the opening both chats share
        # from Ann's; from its second request on, each finds its own previous request cached.
        assert cached[0] == 0 and 0 < cached[1] < prompts[0] // 2, (cached, prompts)
        assert all(c >= p for c, p in zip(cached[2:], prompts[:-2])), (cached, prompts)
    else:
        # One session, taken in turn: only the opening both chats share is found cached.
        assert len(set(cached[1:])) == 1 and 0 < cached[1] < prompts[0] // 2, (cached, prompts)


def test_requests_arriving_together_decode_as_one_batch_each_in_its_session(
        tiny_checkpoint, plain, monkeypatch):
    """Three conversations' requests arrive together, step after step (a bench's episodes on one
    server): each prefills in a session of its own (the opening they share computed once),
    their decode steps run as one batch, and each reply is the one a plain full prefill gives. More requests than sessions run as a plain
    batch and leave the sessions' caches as they were."""
    import model.session

    decoded_rows = []
    real_decode = model.session.decode_rows

    def counting_decode(model_, state, *args, **kwargs):
        decoded_rows.append(state.logits.shape[0])
        return real_decode(model_, state, *args, **kwargs)

    monkeypatch.setattr(model.session, "decode_rows", counting_decode)
    backend = LocalBackend(tiny_checkpoint, device="cpu", sessions=3)
    chats = [_conversation(name, 3, seed) for name, seed in (("Ann", 3), ("Bob", 4), ("Cy", 5))]
    params = Params(max_new_tokens=4)
    prompts = [0, 0, 0]
    for step in range(3):
        # Not in the same order each step: each still finds its own conversation.
        order = [(step + k) % 3 for k in range(3)]
        requests = [chats[k][step] for k in order]
        done = backend.generate_batch([backend.prepare(*r, params) for r in requests])
        assert decoded_rows[-1] == 3
        for row, (k, request, completion) in enumerate(zip(order, requests, done)):
            assert completion.text == plain.generate(*request, max_new_tokens=4).text
            if step:  # each finds its own previous request cached
                assert completion.cached_tokens >= prompts[k]
            elif row:  # the chats' common opening, copied from the first one's session
                assert 0 < completion.cached_tokens < completion.prompt_tokens // 2
            else:
                assert completion.cached_tokens == 0
            prompts[k] = completion.prompt_tokens
    held = [list(s.tokens) for s in backend.sessions]
    extra = _conversation("Dee", 1, seed=6) * 4
    done = backend.generate_batch([backend.prepare(*r, params) for r in extra])
    assert len(decoded_rows) == 3  # the plain batch path, not the sessions'
    assert len({c.text for c in done}) == 1 and done[0].text == plain.generate(
        *extra[0], max_new_tokens=4).text
    assert [list(s.tokens) for s in backend.sessions] == held


def test_a_continuing_request_keeps_its_session_whatever_its_place_in_the_batch(tiny_checkpoint):
    """Ann and Bob each hold one of two sessions; a new chat listed before Bob's next step must
    not take Bob's session (it takes Ann's, the other one), so Bob finds his step cached."""
    backend = LocalBackend(tiny_checkpoint, device="cpu", sessions=2)
    ann, bob, cy = (_conversation(name, 2, seed) for name, seed in (("Ann", 7), ("Bob", 8),
                                                                    ("Cy", 9)))
    params = Params(max_new_tokens=3)
    first = backend.generate_batch([backend.prepare(*r, params) for r in (ann[0], bob[0])])
    new, going_on = backend.generate_batch([backend.prepare(*r, params) for r in (cy[0], bob[1])])
    assert going_on.cached_tokens >= first[1].prompt_tokens
    assert 0 < new.cached_tokens < new.prompt_tokens // 2  # only the opening all chats share


def _agent_steps(dialect_name: str, goal: str, seed: int, steps: int
                 ) -> list[tuple[list, list, Params]]:
    """An agent episode's requests as the dialect lays out its prompts, with screenshots of its
    own; the replies written in the dialect, as a model would."""
    dialect = get_dialect(dialect_name, "phone")
    rng = np.random.default_rng(seed)
    screenshots = [Image.fromarray(rng.integers(0, 256, (277, 131, 3), dtype=np.uint8))
                   for _ in range(steps)]
    replies = [dialect.render_action(Tap(x=10 + step, y=20), SCREEN, thought=f"I see step {step}.")
               for step in range(steps)]
    return [(hf_messages(prompt), prompt_images(prompt, screenshots), Params(
                max_new_tokens=3, stop=dialect.stop, min_pixels=SCREEN.min_pixels,
                max_pixels=SCREEN.max_pixels, continue_final_message=prompt.continue_final_message))
            for prompt in episode_prompts(dialect_name, replies, SCREEN, HistoryPolicy(),
                                          {"tap", "home"}, goal=goal)]


@pytest.mark.parametrize(("dialect", "checkpoint"), [("qwen2vl", "tiny_checkpoint"),
                                                     ("qwen25vl", "tiny_qwen25_checkpoint"),
                                                     ("uitars", "tiny_checkpoint")])
def test_an_agents_next_step_keeps_its_session_in_every_dialect(request, dialect, checkpoint):
    """Agent steps rewrite the end of the previous prompt (a step label, a reply tokenized
    anew), yet each step goes on in the agent's own session: alone it does not spread over the
    empty ones, and a new episode listed before it in a batch does not take its session.
    (qwen25vl's first step adds the task progress before the first screenshot, so its second
    step starts a session of its own.)"""
    path = request.getfixturevalue(checkpoint)
    # Cy runs Ann's task: her session shares more of his prompt than Bob's does.
    ann, bob, cy = (_agent_steps(dialect, goal, seed, 4) for goal, seed in (
        ("Open the clock", 21), ("Call Bob", 22), ("Open the clock", 23)))
    alone = LocalBackend(path, device="cpu")  # one session: the cache an agent finds alone
    expected = [alone.generate_batch([alone.prepare(*step)])[0].cached_tokens for step in ann]
    backend = LocalBackend(path, device="cpu", sessions=2)
    holding = []
    for step in ann[:3]:
        (done,) = backend.generate_batch([backend.prepare(*step)])
        holding.append(sum(bool(s.tokens) for s in backend.sessions))
    assert done.cached_tokens == expected[2] > 0
    assert holding[1] == holding[2]  # the third step went on where the second ran
    backend.generate_batch([backend.prepare(*bob[0])])
    new, going_on = backend.generate_batch([backend.prepare(*r) for r in (cy[0], ann[3])])
    assert going_on.cached_tokens == expected[3] > expected[2]
    assert new.cached_tokens < expected[2]  # the opening every episode shares


def _counting_patchify(monkeypatch) -> list[tuple[int, int]]:
    """Records the resized size of every image whose patches are made."""
    import model.image_processing as image_processing

    made, real = [], image_processing.patchify
    monkeypatch.setattr(image_processing, "patchify",
                        lambda rgb, size, config: made.append(size) or real(rgb, size, config))
    return made


def test_only_images_no_session_holds_get_patches(tiny_checkpoint, plain, monkeypatch):
    """Two conversations of three screenshots each (more than the processor's image cache
    holds), request by request: each request after the first makes the patches of its new
    screenshot only, the ones before it are in its session already. Replies as a full prefill."""
    backend = LocalBackend(tiny_checkpoint, device="cpu", sessions=2)
    assert backend.processor.images.entries < 6
    made = _counting_patchify(monkeypatch)
    params = Params(max_new_tokens=3)
    a, b = _conversation("Ann", 3, seed=11), _conversation("Bob", 3, seed=12)
    for request in [r for pair in zip(a, b) for r in pair]:
        made.clear()
        item = backend.prepare(*request, params)
        assert len(made) == 1, "the new screenshot's patches only"
        (done,) = backend.generate_batch([item])
        assert len(made) == 1, "nothing made on the model's side either"
        monkeypatch.undo()  # the reference makes its own patches uncounted
        assert done.text == plain.generate(*request, max_new_tokens=3).text
        made = _counting_patchify(monkeypatch)


def test_images_a_session_let_go_after_prepare_get_their_patches_then(tiny_checkpoint, plain):
    """A request is prepared while its session holds its first screenshots (no patches made
    for them), then another conversation takes that session: the request's run makes the
    missing patches itself and replies as a full prefill. The plain batch path (more requests
    than sessions) makes every image's patches."""
    backend = LocalBackend(tiny_checkpoint, device="cpu", sessions=1)
    params = Params(max_new_tokens=3)
    ann, bob = _conversation("Ann", 3, seed=13), _conversation("Bob", 1, seed=14)
    for request in ann[:2]:
        backend.generate_batch([backend.prepare(*request, params)])
    waiting = backend.prepare(*ann[2], params)
    assert waiting.pixels is not None and waiting.pixels.made == 1  # the new screenshot only
    backend.generate_batch([backend.prepare(*bob[0], params)])  # Bob's screenshot replaces them
    prepared_ms = waiting.preprocess_ms
    (done,) = backend.generate_batch([waiting])
    assert waiting.pixels.made == 3
    # The patches made late count as preprocessing, not generation.
    assert done.timings["preprocess_ms"] == waiting.preprocess_ms > prepared_ms
    assert done.text == plain.generate(*ann[2], max_new_tokens=3).text

    late = [backend.prepare(*ann[2], params) for _ in range(2)]  # held again: deferred
    assert [item.pixels.made for item in late] == [0, 0]
    twice = backend.generate_batch(late)  # two requests, one session: the plain batch path
    assert [item.pixels.made for item in late] == [3, 3]
    assert [c.text for c in twice] == [done.text] * 2


def test_a_request_past_the_context_is_refused_before_any_patches(tiny_checkpoint, plain,
                                                                   monkeypatch):
    """A huge pixel budget on a small image: the token count says no before it is resized."""
    made = _counting_patchify(monkeypatch)
    request = _conversation("Ann", 1, seed=15)[0]
    with pytest.raises(ValueError, match="with even one new token after it, it exceeds the context of 4096"):
        plain.prepare(*request, Params(max_new_tokens=3, min_pixels=50_000_000,
                                       max_pixels=50_000_000))
    assert made == []
    with pytest.raises(ValueError, match=r"with 4096 new tokens to write it exceeds"):
        plain.prepare(*request, Params(max_new_tokens=4096))


def test_a_group_that_fails_leaves_the_other_groups_answered(tiny_checkpoint, monkeypatch):
    backend = LocalBackend(tiny_checkpoint, device="cpu", sessions=2)
    ann, bob = _conversation("Ann", 1, seed=16)[0], _conversation("Bob", 1, seed=17)[0]
    real = backend._generate_in_sessions

    def fails_with_its_stop_string(group, *args):
        if group[0].params.stop == ("zzz",):
            raise RuntimeError("out of memory")
        return real(group, *args)

    monkeypatch.setattr(backend, "_generate_in_sessions", fails_with_its_stop_string)
    broken, fine = backend.generate_batch([
        backend.prepare(*ann, Params(max_new_tokens=3, stop=("zzz",))),
        backend.prepare(*bob, Params(max_new_tokens=3))])  # another group: other stop strings
    assert isinstance(broken, RuntimeError) and str(broken) == "out of memory"
    assert fine.completion_tokens == 3 and fine.finish_reason == "length"
    with pytest.raises(RuntimeError, match="out of memory"):
        backend.generate(*ann, max_new_tokens=3, stop=("zzz",))


class NoArrivals:
    """A server's arrivals with nobody waiting; notes what is delivered through it."""

    max_rows = 8

    def __init__(self) -> None:
        self.delivered: dict[int, object] = {}

    def any(self, accept) -> bool:
        return False

    def take(self, accept, limit):
        return []

    def deliver(self, index, result) -> None:
        self.delivered[index] = result


class ClockedArrivals(NoArrivals):
    """Requests that arrive at given read-backs of a running batch (counted by the first
    request's ``gone``, asked once a read-back); notes when each was taken and answered."""

    def __init__(self, schedule: dict[str, tuple[int, object]]) -> None:
        super().__init__()
        self.schedule, self.reads = dict(schedule), 0
        self.names, self.taken, self.answered = ["first"], {}, {}

    def tick(self) -> bool:
        self.reads += 1
        return False

    def _due(self) -> list[str]:
        return [name for name, (at, _) in self.schedule.items() if at <= self.reads]

    def any(self, accept) -> bool:
        return bool(self._due())

    def take(self, accept, limit):
        joined = []
        for name in self._due()[:limit]:
            _, job = self.schedule.pop(name)
            self.names.append(name)
            self.taken[name] = self.reads
            joined.append(Joined(len(self.names) - 1, job, None, lambda: False))
        return joined

    def deliver(self, index, result) -> None:
        super().deliver(index, result)
        self.answered[self.names[index]] = self.reads


def test_a_newcomer_joins_once_a_row_that_ended_hands_back_its_session(tiny_checkpoint):
    """Two sessions: a long row decodes, a short one joins and ends, then a third request
    arrives. The ended row's session is free from then on, so the third joins while the long
    row decodes (it used to wait for the whole batch to end), and each replies as alone."""
    backend = LocalBackend(tiny_checkpoint, device="cpu", sessions=2)
    alone = LocalBackend(tiny_checkpoint, device="cpu", reuse_prefix=False)
    backend.model.eos_token_ids = alone.model.eos_token_ids = []  # each row to its budget
    asks = {name: _conversation(name, 1, seed)[0]
            for name, seed in (("Ann", 31), ("Bob", 32), ("Cy", 33))}
    budgets = {"Ann": 40, "Bob": 3, "Cy": 3}
    jobs = {name: backend.prepare(*asks[name], Params(max_new_tokens=budgets[name]))
            for name in asks}
    arrivals = ClockedArrivals({"Bob": (2, jobs["Bob"]), "Cy": (12, jobs["Cy"])})
    (first,) = backend.generate_batch([jobs["Ann"]], gone=[arrivals.tick], arrivals=arrivals)
    assert arrivals.answered["Bob"] < arrivals.taken["Cy"]  # Bob's row had ended
    assert arrivals.taken["Cy"] <= 12 + 2
    assert arrivals.answered["Cy"] < arrivals.reads  # before Ann's row ended
    replies = {"Ann": first.text, **{n: arrivals.delivered[arrivals.names.index(n)].text
                                     for n in ("Bob", "Cy")}}
    assert replies == {n: alone.generate(*asks[n], max_new_tokens=budgets[n]).text
                       for n in asks}


def test_only_the_last_group_of_a_batch_takes_arrivals(tiny_checkpoint, monkeypatch):
    """Requests that arrive while an earlier group decodes would keep joining it, and a later
    group of the same batch would wait behind them for as long as they come."""
    backend = LocalBackend(tiny_checkpoint, device="cpu", sessions=2)
    offered: list[tuple[float, bool]] = []
    real = backend._generate_in_sessions

    def noting(group, sinks, gones, places, arrivals=None):
        offered.append((group[0].params.temperature, arrivals is not None))
        return real(group, sinks, gones, places, arrivals)

    monkeypatch.setattr(backend, "_generate_in_sessions", noting)
    ann, bob = _conversation("Ann", 1, seed=18)[0], _conversation("Bob", 1, seed=19)[0]
    arrivals = NoArrivals()
    backend.generate_batch([backend.prepare(*ann, Params(max_new_tokens=2)),
                            backend.prepare(*bob, Params(max_new_tokens=2, temperature=0.5,
                                                         seed=1))], arrivals=arrivals)
    assert offered == [(0.0, False), (0.5, True)]
    assert list(arrivals.delivered) == [1]  # the last group answers through the server


def test_a_group_too_big_for_the_sessions_runs_in_sessions_per_budget(tiny_checkpoint,
                                                                      monkeypatch):
    """Three requests with equal sampling, two sessions: the padded batch path would decode
    them to one budget, so they split by max_new_tokens into parts that fit the sessions."""
    backend = LocalBackend(tiny_checkpoint, device="cpu", sessions=2)
    backend.model.eos_token_ids = []
    plain_batches: list[int] = []
    monkeypatch.setattr(backend, "_generate_group",
                        lambda group, *rest: plain_batches.append(len(group)))
    requests = [_conversation(name, 1, seed)[0]
                for name, seed in (("Ann", 21), ("Bob", 22), ("Cy", 23))]
    done = backend.generate_batch([backend.prepare(*r, Params(max_new_tokens=n))
                                   for r, n in zip(requests, (4, 6, 4))])
    assert plain_batches == []
    assert [c.completion_tokens for c in done] == [4, 6, 4]


def test_a_compiled_backend_replies_as_the_eager_one_alone_and_batched(tmp_path):
    """``serve --compile`` and ``bench --compile``: the sessions' batched decode steps and a
    single call that reuses its session's prefix run compiled, with the eager backend's text."""
    from model.generate import _COMPILED
    from runtime.tiny_checkpoint import make_tiny_checkpoint

    # One decoder layer keeps inductor's compile short.
    path = make_tiny_checkpoint(tmp_path, text_overrides=dict(num_hidden_layers=1))
    compiled = LocalBackend(path, device="cpu", sessions=2, compile=True)
    eager = LocalBackend(path, device="cpu", sessions=2)
    for backend in (compiled, eager):
        backend.model.eos_token_ids = []  # every reply runs its whole budget
    chats = [_conversation(name, 2, seed) for name, seed in (("Ann", 8), ("Bob", 9))]
    params = Params(max_new_tokens=5)
    for step in range(2):
        replies = [[c.text for c in b.generate_batch([b.prepare(*chat[step], params)
                                                      for chat in chats])]
                   for b in (compiled, eager)]
        assert replies[0] == replies[1] and all(replies[0]), replies
    alone = [b.generate(*chats[0][1], max_new_tokens=5) for b in (compiled, eager)]
    assert alone[0].text == alone[1].text and alone[0].cached_tokens > 0
    assert compiled.model in _COMPILED and eager.model not in _COMPILED  # the steps that ran
