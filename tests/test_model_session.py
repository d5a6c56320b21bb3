"""Prefix reuse: after any extension the session's logits equal a full forward over the sequence."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from episode_prompts import episode_prompts, model_inputs
from PIL import Image

from agent.history import HistoryPolicy
from core.geometry import Screen
from model import Qwen2VL
from model.generate import _COMPILED, GenerationOptions, Sampling
from model.session import GenerationSession, SessionRequest, generate_together, image_spans

# Sizes no other test uses; every step's screenshot has its own.
ODD_SIZES = [(113, 251), (287, 149), (71, 197), (173, 173)]
SCREEN = Screen(113, 251, max_pixels=40 * 28 * 28)
REPLIES = [f"Thought: step {i} goes on.\n*FUNCTION*: Tap *ARGS*: {{\"point\": ({i}0,5)}}"
           for i in range(len(ODD_SIZES))]
ATOL = 1e-4
#: A short system prompt keeps the sequences (and the test) small.
KINDS = {"tap", "home"}


def _screenshots(seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for w, h in ODD_SIZES]


def _full_logits(model: Qwen2VL, inputs: dict) -> torch.Tensor:
    with torch.inference_mode():
        return model(inputs["input_ids"], inputs.get("pixel_values"),
                     inputs.get("image_grid_thw"))[0]


def _tensors(inputs: dict) -> tuple:
    return inputs["input_ids"], inputs.get("pixel_values"), inputs.get("image_grid_thw")


@pytest.fixture(scope="module")
def models(tiny_checkpoint, tiny_qwen25_checkpoint):
    return {name: Qwen2VL.from_pretrained(path, device="cpu", dtype="fp32")
            for name, path in [("qwen2", tiny_checkpoint), ("qwen25", tiny_qwen25_checkpoint)]}


@pytest.mark.parametrize(("dialect", "checkpoint"),
                         [("qwen2vl", "qwen2"), ("qwen25vl", "qwen25"), ("uitars", "qwen2"),
                          ("uitars15", "qwen25")])
@pytest.mark.parametrize("history", [HistoryPolicy(images=2, block=1), HistoryPolicy(images=2, block=2)],
                         ids=["window", "blocks"])
def test_each_extension_equals_a_full_forward(models, tiny_processor, dialect, checkpoint,
                                              history):
    model = models[checkpoint]
    session = GenerationSession(model, capacity=64)  # small: the cache grows on the way
    screenshots = _screenshots()
    starts = []
    for step, prompt in enumerate(episode_prompts(dialect, REPLIES, SCREEN, history, KINDS)):
        inputs = model_inputs(tiny_processor, prompt, screenshots, SCREEN)
        done = session.prefill(*_tensors(inputs), all_logits=True)
        full = _full_logits(model, inputs)
        starts.append(done.reused)
        assert done.reused + done.prefilled == full.shape[0]
        torch.testing.assert_close(done.logits, full[done.reused:], atol=ATOL, rtol=0)
        # The cache also holds a few generated tokens, which the next prompt does not repeat.
        new = session.generate(*_tensors(inputs), GenerationOptions(max_new_tokens=3))
        expected = model.generate(*_tensors(inputs), max_new_tokens=3)
        assert [new.tokens] == expected.tolist(), f"step {step}"
    assert all(start > 0 for start in starts[1:]), starts  # the system prompt at least


def test_only_new_images_are_encoded_even_when_the_prefix_breaks_before_kept_ones(
    models, tiny_processor
):
    model = models["qwen2"]
    session = GenerationSession(model)
    screenshots = _screenshots(1)
    encoded = []
    # images=1: each step turns the previous screenshot into a note, so the prefix breaks before
    # the kept screenshot, which is prefilled again from the session's features.
    prompts = episode_prompts("qwen2vl", REPLIES[:4], SCREEN, HistoryPolicy(images=1, block=1), KINDS)
    for prompt in prompts:
        inputs = model_inputs(tiny_processor, prompt, screenshots, SCREEN)
        done = session.prefill(*_tensors(inputs), all_logits=True)
        torch.testing.assert_close(done.logits, _full_logits(model, inputs)[done.reused:],
                                   atol=ATOL, rtol=0)
        encoded.append(done.encoded_images)
    assert encoded == [1, 1, 1, 1]


def test_a_different_picture_of_the_same_size_ends_the_prefix_at_its_first_token(
    models, tiny_processor
):
    model = models["qwen2"]
    session = GenerationSession(model)
    first, second = _screenshots(2)[:1], _screenshots(3)[:1]
    prompt = next(episode_prompts("qwen2vl", REPLIES[:1], SCREEN, HistoryPolicy(), KINDS))
    session.prefill(*_tensors(model_inputs(tiny_processor, prompt, first, SCREEN)))
    inputs = model_inputs(tiny_processor, prompt, second, SCREEN)
    done = session.prefill(*_tensors(inputs), all_logits=True)
    ids = inputs["input_ids"][0].tolist()
    assert done.reused == ids.index(tiny_processor.image_token_id) and done.encoded_images == 1
    torch.testing.assert_close(done.logits, _full_logits(model, inputs)[done.reused:], atol=ATOL,
                               rtol=0)


def test_the_same_prompt_again_runs_its_last_token_only(models, tiny_processor):
    model = models["qwen2"]
    session = GenerationSession(model)
    prompt = next(episode_prompts("uitars", REPLIES[:1], SCREEN, HistoryPolicy(), KINDS))
    inputs = model_inputs(tiny_processor, prompt, _screenshots(), SCREEN)
    session.prefill(*_tensors(inputs))
    done = session.prefill(*_tensors(inputs))
    assert (done.prefilled, done.encoded_images) == (1, 0)
    torch.testing.assert_close(done.logits, _full_logits(model, inputs)[-1], atol=ATOL, rtol=0)


@pytest.mark.parametrize("repeat_kv", [False, True], ids=["grouped", "repeated"])
def test_a_text_chunk_at_an_offset_attends_causally_inside_itself(models, monkeypatch, repeat_kv):
    """The decoder alone: a 7-token chunk after 5 cached tokens equals the 12-token forward.
    "repeated" takes CUDA's path for a masked chunk (keys and values per query head) here."""
    import model.text

    if repeat_kv:
        monkeypatch.setattr(model.text, "REPEAT_KV_DEVICES", {"cpu"})
    text = models["qwen2"].model
    assert text.cfg.num_key_value_heads < text.cfg.num_attention_heads  # grouped heads
    torch.manual_seed(0)
    embeds = torch.randn(1, 12, text.cfg.hidden_size)
    positions = torch.arange(12).expand(3, 1, 12)
    from model.rope import mrope_cos_sin

    cfg = text.cfg
    cos, sin = mrope_cos_sin(positions, cfg.head_dim, cfg.rope_theta, cfg.mrope_section,
                             torch.float32)
    with torch.inference_mode():
        full = text(embeds, cos, sin)
        text.setup_cache(1, 16)
        try:
            text(embeds[:, :5], cos[:, :, :5], sin[:, :, :5], 0)
            tail = text(embeds[:, 5:], cos[:, :, 5:], sin[:, :, 5:], 5)
        finally:
            text.clear_cache()
    torch.testing.assert_close(tail, full[:, 5:], atol=ATOL, rtol=0)


@pytest.mark.parametrize("chunk", [1, 6], ids=["decode step", "prefill chunk"])
def test_masked_attention_without_grouped_heads_gives_the_grouped_result(monkeypatch, chunk):
    """Decode steps fold each KV head's query heads into its rows, and on CUDA masked prefill
    chunks repeat the keys and values per query head: with 6 query heads over 2 KV heads (so
    the head-to-KV-head mapping matters), both equal SDPA's grouped-query attention."""
    import model.text
    from model.config import TextConfig
    from model.rope import apply_rotary, mrope_cos_sin

    cfg = TextConfig(hidden_size=96, num_attention_heads=6, num_key_value_heads=2,
                     mrope_section=(2, 3, 3))
    torch.manual_seed(2)
    attention = model.text.Attention(cfg).eval()
    x = torch.randn(2, chunk, cfg.hidden_size)
    positions = torch.arange(9, 9 + chunk).expand(3, 2, chunk)
    cos, sin = mrope_cos_sin(positions, cfg.head_dim, cfg.rope_theta, cfg.mrope_section,
                             torch.float32)
    past_k, past_v = torch.randn(2, 2, 9, cfg.head_dim), torch.randn(2, 2, 9, cfg.head_dim)
    mask = torch.ones(2, 1, chunk, 9 + chunk, dtype=torch.bool).tril(9)
    mask[1, :, :, :3] = False  # a left-padded row

    monkeypatch.setattr(model.text, "REPEAT_KV_DEVICES", {"cpu"})
    attention.cache = model.text.KVCache(torch.zeros(2, 2, 16, cfg.head_dim),
                                         torch.zeros(2, 2, 16, cfg.head_dim))
    attention.cache.k[:, :, :9], attention.cache.v[:, :, :9] = past_k, past_v
    with torch.inference_mode():
        ours = attention(x, cos, sin, 9, mask)
        # Grouped-query attention written out: query head h reads KV head h // 3.
        qkv = attention.qkv_proj(x).view(2, chunk, 10, cfg.head_dim).transpose(1, 2)
        rotated = apply_rotary(qkv[:, :8], cos, sin)
        q, kv_head = rotated[:, :6], torch.arange(6) // 3
        k = torch.cat([past_k, rotated[:, 6:8]], 2)[:, kv_head]
        v = torch.cat([past_v, qkv[:, 8:]], 2)[:, kv_head]
        scores = (q @ k.transpose(-1, -2) / cfg.head_dim**0.5).masked_fill(~mask, float("-inf"))
        out = scores.softmax(-1) @ v
        reference = attention.o_proj(out.transpose(1, 2).reshape(2, chunk, -1))
    torch.testing.assert_close(ours, reference, atol=1e-5, rtol=0)


def test_the_processors_image_digests_key_the_images(models, tiny_processor):
    model = models["qwen2"]
    session = GenerationSession(model)
    prompts = list(episode_prompts("qwen2vl", REPLIES[:3], SCREEN, HistoryPolicy(images=3), KINDS))
    for prompt in prompts:
        inputs = model_inputs(tiny_processor, prompt, _screenshots(4), SCREEN,
                              return_image_digests=True)
        done = session.prefill(*_tensors(inputs), all_logits=True,
                               image_digests=inputs["image_digests"])
        torch.testing.assert_close(done.logits, _full_logits(model, inputs)[done.reused:],
                                   atol=ATOL, rtol=0)
        assert done.encoded_images == 1  # the kept screenshots were known by their digests
    # The digest is the image's identity: other pixels under the same digests count as the same.
    other = model_inputs(tiny_processor, prompts[-1], _screenshots(5), SCREEN)
    done = session.prefill(*_tensors(other), image_digests=inputs["image_digests"])
    assert (done.prefilled, done.encoded_images) == (1, 0)
    with pytest.raises(ValueError, match="1 image digests for 3 images"):
        session.prefill(*_tensors(inputs), image_digests=inputs["image_digests"][:1])


def test_pixels_given_as_a_function_are_asked_only_for_images_not_held(models, tiny_processor):
    """``pixel_values`` as a function of the image's index (a server's deferred patches): each
    step asks for its new screenshot only, and the logits are those of a full forward."""
    model = models["qwen2"]
    session = GenerationSession(model)
    prompts = list(episode_prompts("qwen2vl", REPLIES[:3], SCREEN, HistoryPolicy(images=3), KINDS))
    for step, prompt in enumerate(prompts):
        inputs = model_inputs(tiny_processor, prompt, _screenshots(6), SCREEN,
                              return_image_digests=True)
        ends = inputs["image_grid_thw"].prod(-1).cumsum(0).tolist()
        asked = []

        def rows(i, pixels=inputs["pixel_values"], ends=ends):
            asked.append(i)
            return pixels[(ends[i - 1] if i else 0) : ends[i]]

        done = session.prefill(inputs["input_ids"], rows, inputs["image_grid_thw"],
                               all_logits=True, image_digests=inputs["image_digests"])
        assert asked == [step]  # the screenshots before it are held
        torch.testing.assert_close(done.logits, _full_logits(model, inputs)[done.reused:],
                                   atol=ATOL, rtol=0)


def test_images_are_keyed_by_their_bytes_whatever_the_pixels_dtype(tiny_processor):
    """Pixels cast to bf16 (which numpy has no type for) still key their images: the same
    pixels the same key, other pixels another."""
    prompt = "<|vision_start|><|image_pad|><|vision_end|>" * 3
    shot, other = _screenshots(7)[0], _screenshots(8)[0]  # the same size
    inputs = tiny_processor(text=prompt, images=[shot, shot, other],
                            max_pixels=SCREEN.max_pixels)
    pixels = inputs["pixel_values"].to(torch.bfloat16)
    keys = [span.key for span in image_spans(inputs["input_ids"], pixels,
                                             inputs["image_grid_thw"],
                                             tiny_processor.image_token_id, 2)]
    assert keys[0] == keys[1] != keys[2]


def test_bad_input_is_refused_with_a_clear_error(models, tiny_processor):
    session = GenerationSession(models["qwen2"])
    with pytest.raises(ValueError, match="one sequence"):
        session.prefill(torch.zeros(2, 4, dtype=torch.long))
    image_only = torch.tensor([[tiny_processor.image_token_id] * 4])
    with pytest.raises(ValueError, match="4 image tokens"):
        session.prefill(image_only)


def test_sessions_decoding_together_reply_as_each_would_alone(models, tiny_processor):
    """Three conversations of different lengths (two dialects, other screenshots), step by step:
    their batched decode gives each one's own greedy tokens, and what it copies back into each
    session's cache is what a full forward over the sequence computes."""
    model = models["qwen2"]
    conversations = [("qwen2vl", 6, REPLIES[:3]), ("uitars", 7, REPLIES[:3]),
                     ("qwen2vl", 8, [r + " Then wait." for r in REPLIES[1:4]])]
    episodes = [list(episode_prompts(dialect, replies, SCREEN, HistoryPolicy(images=2, block=2),
                                     KINDS)) for dialect, _, replies in conversations]
    together = [GenerationSession(model, capacity=64) for _ in conversations]
    options = GenerationOptions(max_new_tokens=5)
    for step in range(3):
        inputs = [model_inputs(tiny_processor, episode[step], _screenshots(seed), SCREEN)
                  for episode, (_, seed, _) in zip(episodes, conversations)]
        cached = [len(s.tokens) for s in together]
        got = generate_together(together, [SessionRequest(*_tensors(x)) for x in inputs], options)
        for row, (x, g) in enumerate(zip(inputs, got)):
            expected = model.generate(*_tensors(x), max_new_tokens=5)
            assert [g.tokens] == expected.tolist(), (step, row)
        if step:  # each continued its own conversation, at a length of its own (rows padded)
            assert all(n > 0 for n in cached)
            assert len({x["input_ids"].shape[1] for x in inputs}) == 3
    for session, x, g in zip(together, inputs, got):
        # The prompt and all its new tokens: all but the last are cached from the decode.
        ids = torch.cat([x["input_ids"], torch.tensor([g.tokens])], dim=1)
        done = session.prefill(ids, x["pixel_values"], x["image_grid_thw"], all_logits=True)
        assert done.prefilled == 1
        full = _full_logits(model, {**x, "input_ids": ids})
        torch.testing.assert_close(done.logits, full[-1:], atol=ATOL, rtol=0)


def test_generate_together_wants_one_session_per_request(models, tiny_processor):
    session = GenerationSession(models["qwen2"])
    request = SessionRequest(torch.tensor([[1, 2, 3]]))
    with pytest.raises(ValueError, match="one distinct session per request"):
        generate_together([session, session], [request, request])


@pytest.mark.parametrize("budget", [0, -1])
def test_a_request_budget_below_one_is_refused_not_replaced(models, budget):
    """A request's own budget of 0 is no budget at all, not the options' default."""
    request = SessionRequest(torch.tensor([[1, 2, 3]]), max_new_tokens=budget)
    with pytest.raises(ValueError, match=f"max_new_tokens must be at least 1, got {budget}"):
        generate_together([GenerationSession(models["qwen2"])], [request],
                          GenerationOptions(max_new_tokens=9))


def test_a_prefix_another_session_holds_is_copied_not_computed(models, tiny_processor):
    """Session b's sequence is a's but for its last screenshot: b copies a's cache entries and
    image features up to that screenshot, encodes only it, and its logits equal a full
    forward; a's own cache is left as it was."""
    model = models["qwen2"]
    a, b = GenerationSession(model, capacity=64), GenerationSession(model, capacity=64)
    prompt = list(episode_prompts("qwen2vl", REPLIES[:3], SCREEN, HistoryPolicy(images=3),
                                  KINDS))[-1]
    shots = _screenshots(6)
    theirs = model_inputs(tiny_processor, prompt, shots, SCREEN)
    ours = model_inputs(tiny_processor, prompt, shots[:2] + _screenshots(7)[2:], SCREEN)
    a.prefill(*_tensors(theirs))
    done = b.prefill(*_tensors(ours), all_logits=True, donors=[a, b])
    ids = ours["input_ids"][0].tolist()
    last_image = len(ids) - ids[::-1].index(tiny_processor.image_token_id) - 1
    images = ours["image_grid_thw"].prod(-1) // 4
    assert done.reused == last_image - int(images[-1]) + 1 and done.encoded_images == 1
    torch.testing.assert_close(done.logits, _full_logits(model, ours)[done.reused:], atol=ATOL,
                               rtol=0)
    again = a.prefill(*_tensors(theirs), all_logits=True)
    assert again.prefilled == 1
    torch.testing.assert_close(again.logits, _full_logits(model, theirs)[-1:], atol=ATOL, rtol=0)


def test_a_prefill_that_fails_after_copying_leaves_a_truthful_session(models, tiny_processor,
                                                                       monkeypatch):
    """b held screenshot X; copying a's prefix (screenshot Y at the same place) and then failing
    must not leave b believing it still holds X: X's next prefill is computed, not reused."""
    model = models["qwen2"]
    a, b = GenerationSession(model), GenerationSession(model)
    prompt = next(episode_prompts("qwen2vl", REPLIES[:1], SCREEN, HistoryPolicy(), KINDS))
    with_x = model_inputs(tiny_processor, prompt, _screenshots(8)[:1], SCREEN)
    with_y = model_inputs(tiny_processor, prompt, _screenshots(9)[:1], SCREEN)
    b.prefill(*_tensors(with_x))
    a.prefill(*_tensors(with_y))

    def out_of_memory(*args, **kwargs):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(model, "decode_step", out_of_memory)
    with pytest.raises(RuntimeError, match="out of memory"):
        b.prefill(*_tensors(with_y), donors=[a])
    monkeypatch.undo()
    done = b.prefill(*_tensors(with_x), all_logits=True)
    torch.testing.assert_close(done.logits, _full_logits(model, with_x)[done.reused:], atol=ATOL,
                               rtol=0)


def _last_steps(processor, steps, seeds) -> list[dict]:
    """The model inputs of the last prompt of each (dialect, replies so far) episode, each with
    the screenshots of its seed."""
    prompts = [list(episode_prompts(d, REPLIES[:n], SCREEN, HistoryPolicy(), KINDS))[-1]
               for d, n in steps]
    return [model_inputs(processor, p, _screenshots(seed), SCREEN)
            for p, seed in zip(prompts, seeds)]


def _assert_each_caches_its_own_sequence(model, sessions, inputs, generations) -> None:
    """Each session holds its prompt and all its new tokens but the last (decoded), and its
    next prefill (the last token alone) equals a full forward."""
    for session, x, g in zip(sessions, inputs, generations):
        assert len(session.tokens) == x["input_ids"].shape[1] + len(g.tokens) - 1
        ids = torch.cat([x["input_ids"], torch.tensor([g.tokens])], dim=1)
        done = session.prefill(ids, x["pixel_values"], x["image_grid_thw"], all_logits=True)
        assert done.prefilled == 1
        torch.testing.assert_close(done.logits, _full_logits(model, {**x, "input_ids": ids})[-1:],
                                   atol=ATOL, rtol=0)


def test_rows_that_end_at_different_lengths_keep_their_own_caches(models, tiny_processor):
    """An EOS that one row writes early: each row stops where it would alone, and each session
    caches exactly its own new tokens (its next prefill matches a full forward)."""
    model = models["qwen2"]
    prompts = [list(episode_prompts(d, REPLIES[:2], SCREEN, HistoryPolicy(), KINDS))[-1]
               for d in ("qwen2vl", "uitars", "qwen2vl")]
    inputs = [model_inputs(tiny_processor, p, _screenshots(seed), SCREEN)
              for p, seed in zip(prompts, (10, 11, 12))]
    free = [GenerationSession(model).generate(*_tensors(x), GenerationOptions(max_new_tokens=6,
                                                                              eos_token_ids=()))
            for x in inputs]
    options = GenerationOptions(max_new_tokens=6, eos_token_ids=(free[0].tokens[1],))
    alone = [GenerationSession(model).generate(*_tensors(x), options) for x in inputs]
    assert len({len(g.tokens) for g in alone}) > 1, [g.tokens for g in alone]
    sessions = [GenerationSession(model) for _ in inputs]
    together = generate_together(sessions, [SessionRequest(*_tensors(x)) for x in inputs],
                                 options)
    assert [g.tokens for g in together] == [g.tokens for g in alone]
    _assert_each_caches_its_own_sequence(model, sessions, inputs, together)


def test_once_half_the_rows_ended_the_others_decode_in_a_smaller_batch(models, tiny_processor,
                                                                      monkeypatch):
    """Four rows, three of which end after 3 tokens: a CPU step costs each row its share, so
    the long row decodes on alone instead of beside three rows that ended; the tokens and the
    caches are those of each row alone."""
    model = models["qwen2"]
    inputs = _last_steps(tiny_processor,
                         (("qwen2vl", 1), ("uitars", 2), ("qwen2vl", 2), ("uitars", 1)),
                         (27, 28, 29, 30))
    budgets = (3, 3, 3, 20)
    alone = [GenerationSession(model).generate(*_tensors(x), GenerationOptions(
        max_new_tokens=n, eos_token_ids=())) for x, n in zip(inputs, budgets)]
    import model.generate as generation

    rows, real_step = [], generation.decode_step
    monkeypatch.setattr(generation, "decode_step",
                        lambda model, token, *rest: rows.append(token.shape[0])
                        or real_step(model, token, *rest))
    sessions = [GenerationSession(model) for _ in inputs]
    together = generate_together(
        sessions, [SessionRequest(*_tensors(x), max_new_tokens=n) for x, n in zip(inputs, budgets)],
        GenerationOptions(max_new_tokens=20, eos_token_ids=()))
    assert [g.tokens for g in together] == [g.tokens for g in alone]
    assert rows[:2] == [4, 4] and rows[-1] == 1 and rows.count(4) <= 3, rows
    _assert_each_caches_its_own_sequence(model, sessions, inputs, together)


class ScriptedArrivals:
    """Requests that join a running ``generate_together`` at the read-backs given (counted from
    the first); whatever is left joins when the batch has ended."""

    def __init__(self, schedule: dict[int, list]) -> None:
        self.schedule, self.reads, self.finished = schedule, 0, []
        self.busy: list[int] = []  # the batch's sessions at each read-back

    def waiting(self, busy, decoding) -> bool:
        self.reads += 1
        self.busy.append(len(busy))
        return any(at <= self.reads for at in self.schedule)

    def admit(self, busy, decoding) -> list:
        due = [at for at in sorted(self.schedule) if at <= self.reads or not busy]
        return [pair for at in due for pair in self.schedule.pop(at)]

    def done(self, row, generation) -> None:  # before this read-back's ``waiting``
        self.finished.append((row, self.reads + 1, generation))

    def failed(self, row, error) -> None:
        self.finished.append((row, self.reads + 1, error))

    def results(self) -> dict:
        return {row: result for row, _, result in self.finished}


def test_requests_joining_a_running_batch_reply_as_each_would_alone(models, tiny_processor):
    """Row 0 decodes alone; a longer prompt joins at its 2nd read-back, a shorter one at the
    3rd, and one more after all have ended. Each gets its own greedy tokens (one ends early at
    an EOS, the others at their own budgets), each result comes at the read-back where its row
    ended, and each session caches exactly its own sequence (next prefill = full forward)."""
    model = models["qwen2"]
    inputs = _last_steps(tiny_processor,
                         (("qwen2vl", 2), ("uitars", 3), ("qwen2vl", 1), ("uitars", 2)),
                         (13, 14, 15, 16))
    lengths = [x["input_ids"].shape[1] for x in inputs]
    assert lengths[1] > lengths[0] > lengths[2]
    free = GenerationSession(model).generate(*_tensors(inputs[1]), GenerationOptions(
        max_new_tokens=7, eos_token_ids=()))
    options = GenerationOptions(max_new_tokens=7, eos_token_ids=(free.tokens[2],))
    alone = [GenerationSession(model).generate(*_tensors(x), options) for x in inputs]
    assert len(alone[1].tokens) == 3 and len(alone[0].tokens) == 7, [g.tokens for g in alone]
    sessions = [GenerationSession(model) for _ in inputs]
    requests = [SessionRequest(*_tensors(x)) for x in inputs]
    arrivals = ScriptedArrivals({2: [(sessions[1], requests[1])], 3: [(sessions[2], requests[2])],
                                 99: [(sessions[3], requests[3])]})
    (first,) = generate_together(sessions[:1], requests[:1], options, joining=arrivals)
    together = [arrivals.results()[row] for row in range(4)]
    assert first.tokens == alone[0].tokens  # what it returns: the first request's result
    assert [g.tokens for g in together] == [g.tokens for g in alone]
    assert max(arrivals.busy) == 3  # rows 0 to 2 decoded together at some point
    ended_at = {row: read for row, read, _ in arrivals.finished}
    assert sorted(ended_at) == [0, 1, 2, 3]
    assert ended_at[1] == 2 + 3 and ended_at[0] == 7  # at its EOS; at its budget
    assert ended_at[1] < ended_at[2] < ended_at[3]  # answered as each ended, not all at the end
    _assert_each_caches_its_own_sequence(model, sessions, inputs, together)


def test_a_newcomer_is_prefilled_a_chunk_at_a_time_between_decode_steps(models, tiny_processor,
                                                                        monkeypatch):
    """A newcomer with two images joins a row that decodes 40 tokens, 24 prompt tokens at a
    time: its prefill is spread over many read-backs (the row decodes on meanwhile), chunks never
    end inside an image, and both rows give their tokens alone."""
    model = models["qwen2"]
    prompts = [list(episode_prompts("uitars", REPLIES[:n], SCREEN, HistoryPolicy(), KINDS))[-1]
               for n in (1, 3)]
    inputs = [model_inputs(tiny_processor, p, _screenshots(seed), SCREEN)
              for p, seed in zip(prompts, (19, 20))]
    assert inputs[1]["image_grid_thw"].shape[0] >= 2
    options = GenerationOptions(max_new_tokens=40, eos_token_ids=())
    alone = [GenerationSession(model).generate(*_tensors(x), options) for x in inputs]
    import model.generate as generation

    steps, real_step = [], generation.decode_step
    monkeypatch.setattr(generation, "decode_step",
                        lambda *args: steps.append(1) or real_step(*args))
    newcomer = GenerationSession(model)
    chunks, real_prefill = [], newcomer.prefill

    full = inputs[1]["input_ids"][0].tolist() + [None]
    image = tiny_processor.image_token_id

    def prefill(input_ids, *args, **kwargs):
        n = input_ids.shape[1]
        chunks.append((len(steps), n, full[n - 1] == full[n] == image))  # inside an image?
        return real_prefill(input_ids, *args, **kwargs)

    newcomer.prefill = prefill
    request = SessionRequest(*_tensors(inputs[1]), max_new_tokens=12)
    arrivals = ScriptedArrivals({2: [(newcomer, request)]})
    (first,) = generate_together([GenerationSession(model)], [SessionRequest(*_tensors(inputs[0]))],
                                 options, joining=arrivals, chunk_tokens=24)
    assert first.tokens == alone[0].tokens
    assert arrivals.results()[1].tokens == alone[1].tokens[:12]
    length = inputs[1]["input_ids"].shape[1]
    assert len(chunks) > 4 and chunks[-1][1] == length  # chunks, then the rest at the pause
    assert len({step for step, _, _ in chunks}) == len(chunks)  # a decode step between chunks
    assert not any(inside for _, _, inside in chunks)
    assert [n for _, n, _ in chunks] == sorted(n for _, n, _ in chunks)


class PoolArrivals(ScriptedArrivals):
    """Requests joining at given read-backs, each with the first session of ``pool`` that is
    not busy, as a server picks them."""

    def __init__(self, schedule: dict[int, list], pool: list) -> None:
        super().__init__(schedule)
        self.pool, self.given = pool, []

    def admit(self, busy, decoding) -> list:
        pairs = []
        for _, request in super().admit(busy, decoding):
            session = next(s for s in self.pool if s not in busy)
            self.given.append(session)
            pairs.append((session, request))
        return pairs


def test_a_newcomer_never_takes_the_session_of_a_row_that_ended_in_the_same_stretch(
        models, tiny_processor):
    """Row A ends after 2 tokens while rows B and C decode on (so the batch does not shrink
    to them); a long newcomer arrives after that and is prefilled in chunks. A's session gets
    A's tokens only when the stretch of decoding ends, so the newcomer takes the fourth session,
    and every row and cache is as if alone."""
    model = models["qwen2"]
    inputs = _last_steps(tiny_processor,
                         (("qwen2vl", 1), ("qwen2vl", 2), ("uitars", 1), ("uitars", 3)),
                         (22, 23, 26, 24))
    budgets = (2, 30, 30, 6)
    options = GenerationOptions(max_new_tokens=30, eos_token_ids=())
    requests = [SessionRequest(*_tensors(x), max_new_tokens=n) for x, n in zip(inputs, budgets)]
    alone = [GenerationSession(model).generate(*_tensors(x), GenerationOptions(
        max_new_tokens=n, eos_token_ids=())) for x, n in zip(inputs, budgets)]
    pool = [GenerationSession(model) for _ in range(4)]
    arrivals = PoolArrivals({5: [(None, requests[3])]}, pool)
    generate_together(pool[:3], requests[:3], options, joining=arrivals, chunk_tokens=16)
    assert arrivals.given == [pool[3]]
    results = arrivals.results()
    assert [results[row].tokens for row in range(4)] == [g.tokens for g in alone]
    _assert_each_caches_its_own_sequence(model, pool, inputs, [results[r] for r in range(4)])


def test_a_newcomer_its_session_cannot_read_fails_alone(models, tiny_processor):
    model = models["qwen2"]
    x = model_inputs(tiny_processor, next(episode_prompts("qwen2vl", REPLIES[:1], SCREEN,
                                                          HistoryPolicy(), KINDS)),
                     _screenshots(25), SCREEN)
    options = GenerationOptions(max_new_tokens=6, eos_token_ids=())
    unreadable = SessionRequest(x["input_ids"], None, x["image_grid_thw"])  # no pixels
    arrivals = ScriptedArrivals({2: [(GenerationSession(model), unreadable)]})
    (first,) = generate_together([GenerationSession(model)], [SessionRequest(*_tensors(x))],
                                 options, joining=arrivals)
    assert len(first.tokens) == 6
    error = arrivals.results()[1]
    assert isinstance(error, ValueError) and "needs pixel_values" in str(error)


def test_a_newcomer_that_cannot_start_fails_alone_and_a_pause_keeps_the_seeds_stream(models,
                                                                                    tiny_processor):
    """Seeded sampling: a pause that admits nobody (row 0 alone) and one whose newcomer fails
    (its session is on another model) leave row 0's tokens as without pauses; the newcomer
    gets its error under its own row number, and the next one (after row 0 ended) decodes."""
    model = models["qwen2"]
    prompts = [list(episode_prompts("qwen2vl", REPLIES[:n], SCREEN, HistoryPolicy(), KINDS))[-1]
               for n in (1, 2)]
    inputs = [model_inputs(tiny_processor, p, _screenshots(seed), SCREEN)
              for p, seed in zip(prompts, (17, 18))]
    options = GenerationOptions(max_new_tokens=8, eos_token_ids=(),
                                sampling=Sampling(temperature=1.5, seed=7))
    request, other = (SessionRequest(*_tensors(x)) for x in inputs)
    (plain,) = generate_together([GenerationSession(model)], [request], options)
    stranger = GenerationSession(models["qwen25"])
    arrivals = ScriptedArrivals({3: [], 5: [(stranger, other)],
                                 99: [(GenerationSession(model), other)]})  # once row 0 ended
    (paused,) = generate_together([GenerationSession(model)], [request], options,
                                  joining=arrivals)
    assert paused.tokens == plain.tokens
    results = arrivals.results()
    assert isinstance(results[1], ValueError) and "share their model" in str(results[1])
    assert len(results[2].tokens) == 8 and results[0].tokens == plain.tokens


def test_a_compiled_batch_of_sessions_decodes_the_eager_tokens(tiny_checkpoint):
    """Two calls over three sessions (the second continuing the first), eager and compiled."""
    torch.manual_seed(0)
    prompts = [torch.randint(0, 500, (1, 40 + 7 * k)) for k in range(3)]
    tail = torch.randint(0, 500, (1, 5))
    tokens = {}
    for compile in (False, True):
        model = Qwen2VL.from_pretrained(tiny_checkpoint, device="cpu", dtype="fp32")
        sessions = [GenerationSession(model) for _ in prompts]
        options = GenerationOptions(max_new_tokens=12, eos_token_ids=(), compile=compile)
        first = generate_together(sessions, [SessionRequest(p) for p in prompts], options)
        longer = [torch.cat([p, torch.tensor([g.tokens]), tail], 1) for p, g in zip(prompts, first)]
        second = generate_together(sessions, [SessionRequest(p) for p in longer], options)
        tokens[compile] = [g.tokens for g in first + second]
        assert (model in _COMPILED) == compile  # the compiled step is the one that ran
    assert tokens[True] == tokens[False]


def test_a_compiled_decode_keeps_its_cache_where_it_was_across_sessions(tiny_checkpoint,
                                                                       monkeypatch):
    """CUDA graphs are recorded on their inputs' addresses: compiled, every call decodes in the
    same cache memory whatever its sessions (one or two rows), until a call needs more rows or
    positions than it holds; the tokens are the eager ones all along. (The cache is kept on
    CUDA only, where the graphs are; here the CPU is made to keep it too.)"""
    import model.generate
    import model.session

    torch.manual_seed(1)
    prompts = [torch.randint(0, 500, (1, 30 + 9 * k)) for k in range(3)]
    long_prompt = torch.randint(0, 500, (1, 300))  # past the first cache's 256 positions
    # Two rows first: the kept cache grows to the most rows and positions asked for so far.
    calls = [[0, 1], [2], [1], [1, 2], [0], ["long"], [0], [2, 0]]
    monkeypatch.setattr(model.generate, "KEEPING_DEVICES", {"cuda", "cpu"})
    seen, real_decode = {}, model.generate.decode_rows
    for compile in (False, True):
        model_ = Qwen2VL.from_pretrained(tiny_checkpoint, device="cpu", dtype="fp32")
        sessions = [GenerationSession(model_) for _ in range(4)]
        requests = {**dict(enumerate(prompts)), "long": long_prompt}
        where, tokens = [], []

        def watching(model__, *args, where=where, **kwargs):
            where.append((model__.model.layers[0].self_attn.cache.k.data_ptr(),
                          model__.model.cache_slots.data_ptr()))
            return real_decode(model__, *args, **kwargs)

        monkeypatch.setattr(model.session, "decode_rows", watching)
        monkeypatch.setattr(model.generate, "decode_rows", watching)
        options = GenerationOptions(max_new_tokens=6, eos_token_ids=(), compile=compile)
        for call in calls:
            chosen = [sessions[3] if k == "long" else sessions[k] for k in call]
            done = generate_together(chosen, [SessionRequest(requests[k]) for k in call], options)
            tokens.append([g.tokens for g in done])
        # A plain batch (a server's group larger than its sessions) decodes there too.
        plain = model.generate.generate(model_, torch.cat([prompts[2], prompts[2]]),
                                        options=options)
        tokens.append([g.tokens for g in plain])
        assert (model_ in _COMPILED) == compile  # the compiled step is the one that ran
        seen[compile] = where, tokens
    (_, eager), (where, compiled) = seen[False], seen[True]
    assert compiled == eager
    assert len(set(where[:5])) == 1  # one address for five calls over three sessions
    assert where[5] != where[0] and len(set(where[5:])) == 1  # grown once, then kept
