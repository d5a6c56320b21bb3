"""model/generate.py: sampling, stop strings, streaming, batches, chunked prefill, compile."""

from __future__ import annotations

import gc
import weakref

import pytest
import torch

from model import Qwen2VL, Qwen2VLProcessor, linear
from model.generate import (
    _COMPILED,
    GenerationOptions,
    Sampling,
    TextStream,
    decode_step,
    generate,
    prefill,
    sample,
    text_stream,
)
from model.tokens import framing_ids
from runtime.tiny_checkpoint import make_tiny_checkpoint
from tests.probes import noise_image


def _chat(proc, text: str, n_images: int = 0) -> str:
    content = [{"type": "image"} for _ in range(n_images)] + [{"type": "text", "text": text}]
    return proc.apply_chat_template([{"role": "user", "content": content}])


@pytest.fixture(scope="module")
def ours(tiny_checkpoint):
    return Qwen2VL.from_pretrained(tiny_checkpoint, device="cpu")


@pytest.fixture(scope="module")
def prompt(tiny_processor):
    return tiny_processor(text=_chat(tiny_processor, "Describe.", 1),
                          images=[noise_image(84, 56, 3)])


def _run(model, batch, **options):
    inputs = {
        k: batch.get(k) for k in ("input_ids", "pixel_values", "image_grid_thw", "attention_mask")
    }
    return generate(model, **inputs, options=GenerationOptions(**options))


@pytest.fixture(scope="module")
def greedy(ours, prompt, tiny_processor):
    """24 greedy tokens without EOS, and each one's text piece."""
    tokens = _run(ours, prompt, max_new_tokens=24, eos_token_ids=())[0].tokens
    framing = framing_ids(tiny_processor)
    texts = [tiny_processor.decode([t for t in tokens[:n] if t not in framing])
             for n in range(len(tokens) + 1)]
    return tokens, texts


# --- sampling -------------------------------------------------------------------------------
def test_top_k_and_top_p_restrict_the_support():
    logits = torch.log(torch.tensor([[0.05, 0.4, 0.05, 0.3, 0.2]])).expand(400, -1)
    generator = torch.Generator().manual_seed(0)
    top_k = set(sample(logits, Sampling(temperature=1.0, top_k=2), generator).tolist())
    assert top_k == {1, 3}
    # 0.4 + 0.3 covers 0.6: the nucleus is those two; 0.75 needs the 0.2 as well.
    assert set(sample(logits, Sampling(temperature=1.0, top_p=0.6), generator).tolist()) == {1, 3}
    assert set(sample(logits, Sampling(temperature=1.0, top_p=0.75), generator).tolist()) == {
        1,
        3,
        4,
    }
    assert set(sample(logits, Sampling(temperature=1.0), generator).tolist()) == {0, 1, 2, 3, 4}
    assert set(sample(logits, Sampling(), generator).tolist()) == {1}  # greedy


def test_the_filtered_support_is_transformers_even_where_logits_tie():
    """The tokens left to draw from equal those transformers' temperature, top-k and top-p
    warpers leave, on logits rounded to halves (many exact ties at the nucleus' edge: counted
    from the likeliest down, ties fell otherwise in 17 of 300 such cases)."""
    from transformers import (
        TemperatureLogitsWarper,
        TopKLogitsWarper,
        TopPLogitsWarper,
    )

    from model.generate import sampling_probs

    generator = torch.Generator().manual_seed(0)
    for case in range(300):
        logits = (torch.randn(1, 50, generator=generator) * 4).round() / 2
        temperature, top_k, top_p = (0.7, 1.0)[case % 2], (0, 8)[case // 2 % 2], \
            (0.3, 0.6, 0.8, 0.95)[case // 4 % 4]
        scores = TemperatureLogitsWarper(temperature)(None, logits.clone())
        if top_k:
            scores = TopKLogitsWarper(top_k)(None, scores)
        scores = TopPLogitsWarper(top_p)(None, scores)
        ours = sampling_probs(logits, Sampling(temperature=temperature, top_k=top_k,
                                               top_p=top_p))
        assert torch.equal(ours > 0, scores > float("-inf")), case


def test_extreme_temperatures_and_top_p_still_sample():
    logits = torch.tensor([[0.5, 2.0, -1.0, 1.5]]).expand(50, -1)
    generator = torch.Generator().manual_seed(0)
    for sampling in (Sampling(temperature=1e-40), Sampling(temperature=1e-300),
                     Sampling(temperature=1.0, top_p=1e-50),
                     Sampling(temperature=1e-30, top_p=1e-45, top_k=2)):
        assert set(sample(logits, sampling, generator).tolist()) == {1}, sampling
    flat = sample(logits, Sampling(temperature=1e30), generator)  # all but uniform: no NaN
    assert set(flat.tolist()) == {0, 1, 2, 3}


def test_seeded_sampling_is_reproducible(ours, prompt, greedy):
    def run(seed, **sampling):
        sampling = Sampling(temperature=1.5, seed=seed, **sampling)
        return _run(ours, prompt, max_new_tokens=10, eos_token_ids=(), sampling=sampling)[0].tokens

    first = run(1)
    assert run(1) == first
    assert any(run(s) != first for s in (2, 3, 4))
    assert run(5, top_k=1) == greedy[0][:10]  # one candidate: sampling is greedy


# --- stop strings and streaming -------------------------------------------------------------
def test_stop_string_spanning_tokens_stops_at_the_token_completing_it(
    ours, prompt, tiny_processor, greedy
):
    tokens, texts = greedy
    # A stop string made of the last character of one token's text and the first of the next.
    n = next(n for n in range(2, 20) if len(texts[n]) > len(texts[n - 1]) > len(texts[n - 2]) > 0)
    stop = texts[n][len(texts[n - 1]) - 1 : len(texts[n - 1]) + 1]
    first = next(k for k in range(1, 25) if stop in texts[k])
    assert texts[first].find(stop) < len(texts[first - 1])  # it starts in an earlier token's text
    streamed: list[str] = []
    out = _run(ours, prompt, max_new_tokens=24, eos_token_ids=(), stop=(stop, "never written"),
               tokenizer=tiny_processor, on_text=lambda row, piece: streamed.append(piece))[0]
    assert out.tokens == tokens[:first]
    assert out.text == texts[first][: texts[first].find(stop)]
    assert out.finish_reason == "stop"
    assert "".join(streamed) == out.text


def test_one_stop_string_given_alone_is_that_string_not_its_characters(ours, prompt,
                                                                        tiny_processor, greedy):
    """As transformers' stop_strings="..." and OpenAI's "stop": "...": a string is one stop."""
    from agent.backends.base import Params

    tokens, texts = greedy
    n = next(n for n in range(3, 20) if len(texts[n]) - len(texts[n - 1]) >= 2)
    stop = texts[n][len(texts[n - 1]):]  # token n's own text, two characters or more
    alone = _run(ours, prompt, max_new_tokens=24, eos_token_ids=(), stop=stop,
                 tokenizer=tiny_processor)[0]
    listed = _run(ours, prompt, max_new_tokens=24, eos_token_ids=(), stop=[stop],
                  tokenizer=tiny_processor)[0]
    assert alone.tokens == listed.tokens and alone.text == listed.text
    assert alone.stop == listed.stop == stop
    assert Params(stop="*RESULT*").stop == ("*RESULT*",)


def test_streamed_pieces_join_to_the_text(ours, prompt, tiny_processor, greedy):
    tokens, texts = greedy
    streamed: list[str] = []
    out = _run(ours, prompt, max_new_tokens=24, eos_token_ids=(),
               tokenizer=tiny_processor.tokenizer,
               on_text=lambda row, piece: streamed.append(piece))[0]
    assert out.text == texts[24] and out.finish_reason == "length"
    assert len(streamed) > 5 and "".join(streamed) == out.text


def test_eos_ends_a_row_and_is_kept_out_of_the_text(ours, prompt, tiny_processor, greedy):
    tokens, texts = greedy
    eos = tokens[6]
    cut = tokens.index(eos) + 1
    out = _run(ours, prompt, max_new_tokens=24, eos_token_ids=(eos,), tokenizer=tiny_processor)[0]
    assert out.tokens == tokens[:cut] and out.finish_reason == "stop" and out.stop is None
    assert out.text == texts[cut - 1]


def test_a_reply_leaves_out_the_tokens_that_frame_turns_and_images(tiny_processor):
    """Sent back in a conversation, "<|im_start|>" would open a turn and "<|image_pad|>" ask
    for an image nobody sent; the grounding tokens stay for the dialects' parsers."""
    def ids(text: str) -> list[int]:
        return tiny_processor.encode(text)

    reply = (ids("tap <|box_start|>(1,2)<|box_end|>") + ids("<|vision_start|><|image_pad|>")
             + ids(" done<|im_start|>user") + ids("<|video_pad|><|vision_end|><|endoftext|>"))
    pieces: list[str] = []
    stream = text_stream(GenerationOptions(tokenizer=tiny_processor,
                                           on_text=lambda row, piece: pieces.append(piece)), 0)
    for token in reply:
        stream.push(token)
    assert stream.finish() == "tap <|box_start|>(1,2)<|box_end|> doneuser"
    assert "".join(pieces) == "tap <|box_start|>(1,2)<|box_end|> doneuser"
    assert len(framing_ids(tiny_processor)) == 8


def _byte_stream(stop: tuple[str, ...], pieces: list[str]) -> TextStream:
    """A stream over tokens that are raw UTF-8 bytes, as a byte-level BPE's can be."""
    vocab = {1: b"a", 2: b"b\xe6", 3: b"\x97\xa5", 4: b"c", 5: b"\xe6\x97", 6: b"\xa5"}
    return TextStream(  # 2 + 3 and 5 + 6 both end in 日 (e6 97 a5)
        lambda ids: b"".join(vocab[i] for i in ids).decode("utf-8", errors="replace"),
        stop, pieces.append)


def test_a_stop_string_before_an_unfinished_character_stops_at_its_token():
    pieces: list[str] = []
    stream = _byte_stream(("ab",), pieces)
    assert stream.push(1) is False
    assert stream.push(2) is True  # "ab" is complete; the half of 日 after it does not matter
    assert stream.finish() == "" and pieces == []


def test_an_unfinished_character_waits_for_its_last_byte():
    pieces: list[str] = []
    stream = _byte_stream(("日c",), pieces)
    assert [stream.push(t) for t in (1, 2, 3)] == [False, False, False]
    assert "".join(pieces) == "ab"  # 日 is held back: it may start the stop string
    assert stream.push(4) is True
    assert stream.finish() == "ab" == "".join(pieces)
    pieces.clear()
    split = _byte_stream((), pieces)
    assert split.push(5) is False and pieces == []  # two of 日's three bytes: no text yet
    assert split.push(6) is False and pieces == ["日"]
    assert split.finish() == "日"


# --- batches and chunked prefill ------------------------------------------------------------
def test_batched_greedy_equals_unbatched(ours, tiny_processor):
    cases = [("Hi.", []), (f"{'Open the settings app. ' * 4}", [(56, 112)]),
             ("Compare these two.", [(84, 56), (56, 56)])]  # fmt: skip
    texts = [_chat(tiny_processor, text, len(sizes)) for text, sizes in cases]
    images = [noise_image(w, h, i) for i, (_, sizes) in enumerate(cases) for w, h in sizes]
    batch = tiny_processor(text=texts, images=images)
    assert not bool(batch["attention_mask"].all())  # the rows really are padded
    together = [g.tokens for g in _run(ours, batch, max_new_tokens=10, eos_token_ids=())]
    used = 0
    for i, (text, (_, sizes)) in enumerate(zip(texts, cases)):
        alone = tiny_processor(text=text, images=images[used : used + len(sizes)] or None)
        used += len(sizes)
        assert together[i] == _run(ours, alone, max_new_tokens=10, eos_token_ids=())[0].tokens, i


def test_a_dropped_row_stops_and_the_others_decode_on(ours, tiny_processor, monkeypatch):
    texts = [_chat(tiny_processor, text) for text in ("Hi.", "Open the settings app.")]
    batch = tiny_processor(text=texts)
    full = [g.tokens for g in _run(ours, batch, max_new_tokens=12, eos_token_ids=())]
    steps = _counting_steps(monkeypatch)
    # Row 0's caller leaves after its third token has been read back.
    gone = _run(ours, batch, max_new_tokens=12, eos_token_ids=(),
                dropped=lambda row: row == 0 and len(steps) >= 2)  # fmt: skip
    assert (gone[0].tokens, gone[0].finish_reason) == (full[0][:3], "dropped")
    assert (gone[1].tokens, gone[1].finish_reason) == (full[1], "length")
    # Nobody waiting at all: the loop ends at the first read-back.
    steps.clear()
    gone = _run(ours, batch, max_new_tokens=12, eos_token_ids=(), dropped=lambda row: True)
    assert [(g.tokens, g.finish_reason) for g in gone] == [(f[:1], "dropped") for f in full]
    assert steps == []


@pytest.mark.parametrize("every", [3, 8])  # 8: the default on cuda
def test_reading_tokens_back_every_few_steps_gives_what_every_step_gives(
    ours, tiny_processor, monkeypatch, every
):
    texts = [_chat(tiny_processor, text)
             for text in ("Hi.", "Open the settings app.", "Press back now.")]
    batch = tiny_processor(text=texts)
    free = [g.tokens for g in _run(ours, batch, max_new_tokens=13, eos_token_ids=())]
    # Row 0 ends on an EOS inside a block, row 1 on a stop string, row 2 at its length.
    eos = free[0][4]
    assert eos not in free[1] + free[2]
    framing = framing_ids(tiny_processor)
    texts = [[tiny_processor.decode([t for t in row[:n] if t not in framing]) for n in range(14)]
             for row in free]  # fmt: skip
    pieces_1 = [texts[1][n][len(texts[1][n - 1]) :] for n in range(1, 14)]
    stop = next(piece for n, piece in enumerate(pieces_1) if n >= 5 and piece.strip()
                and piece not in texts[1][n] and piece not in texts[0][13] + texts[2][13])
    options = dict(max_new_tokens=13, eos_token_ids=(eos,), stop=(stop,),
                   tokenizer=tiny_processor)  # fmt: skip
    pieces: dict[int, list[tuple[int, str]]] = {}
    outs = {}
    for sync in (1, every):
        got = pieces[sync] = []
        outs[sync] = _run(ours, batch, sync_every=sync,
                          on_text=lambda row, piece, got=got: got.append((row, piece)), **options)
    each, blocks = outs[1], outs[every]
    assert [g.finish_reason for g in each] == ["stop", "stop", "length"]
    assert len(each[0].tokens) <= 5 and len(each[2].tokens) == 13  # the cases are what they say
    assert [(g.tokens, g.text, g.finish_reason) for g in blocks] == \
        [(g.tokens, g.text, g.finish_reason) for g in each]
    for row in range(3):  # streamed pieces may be grouped differently, never differ in text
        assert "".join(p for r, p in pieces[every] if r == row) == each[row].text
    # At most every - 1 steps are computed past the last token any row needs.
    steps = _counting_steps(monkeypatch)
    _run(ours, batch, sync_every=every, **options)
    assert 12 <= len(steps) <= 12 + every - 1
    # The host reads the tokens back once per ``every`` tokens and after the last: 13 tokens,
    # ceil(13 / every) read-backs. Each one but the last (where every row has its 13) asks
    # whether a row's client went away.
    asked: list[int] = []
    _run(ours, batch, max_new_tokens=13, eos_token_ids=(), sync_every=every,
         dropped=lambda row: asked.append(row) or False)
    assert asked == [0, 1, 2] * (-(-13 // every) - 1)


def _counting_steps(monkeypatch) -> list[int]:
    import model.generate as generation

    steps: list[int] = []
    step = generation.decode_step
    monkeypatch.setattr(generation, "decode_step", lambda *a: steps.append(1) or step(*a))
    return steps


def test_a_chunk_prefilled_after_cached_tokens_matches_a_full_forward(ours, prompt):
    ids, grid = prompt["input_ids"], prompt["image_grid_thw"]
    full = ours(input_ids=ids, pixel_values=prompt["pixel_values"], image_grid_thw=grid)[0, -1]
    with torch.inference_mode():
        embeds = ours.embed(ids, prompt["pixel_values"], grid)
        positions, _ = ours.positions(ids, grid)
        ours.model.setup_cache(1, ids.shape[1])
        cut = ids.shape[1] - 7  # the last 7 tokens as one chunk at an offset
        ours.decode_step(embeds[:, :cut], positions[..., :cut], 0)
        chunk = ours.decode_step(embeds[:, cut:], positions[..., cut:], cut)[0, -1]
        ours.model.clear_cache()
    assert (chunk - full).abs().max() <= 1e-4


# --- compiled decode ------------------------------------------------------------------------
@pytest.fixture
def threads():
    before = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(before)


@pytest.mark.parametrize("products", ["one thread", "row blocks", "plain", "measured"])
def test_the_decode_step_traces_as_one_graph(ours, prompt, threads, monkeypatch, products):
    """On 2 threads the decoder's products run as row blocks where those were measured to be
    faster; "measured": nothing measured yet, so the measurement runs while it traces."""
    threads(1 if products == "one thread" else 2)
    monkeypatch.setattr(linear, "_BLOCKS_FASTER", {})
    if products in ("row blocks", "plain"):
        monkeypatch.setattr(linear, "_measure_blocks", lambda *key: products == "row blocks")
    # A few weights per measurement: thousands of tiny two-thread products took 90 s where the
    # suite's other workers share the cores, and their number changes nothing traced.
    monkeypatch.setattr(linear, "MAX_COLD_SET", 4)
    state = prefill(ours, prompt["input_ids"], prompt["pixel_values"], prompt["image_grid_thw"])
    pos = torch.tensor([state.pos])
    key_valid = torch.ones(1, ours.model.cache_shape[1], dtype=torch.bool)
    args = (ours, torch.tensor([[5]]), pos, pos + state.rope_delta.view(1), key_valid)
    linear.mark_constants()  # as step_function does before it compiles
    with torch.inference_mode():
        explained = torch._dynamo.explain(decode_step)(*args)
    assert (explained.graph_count, explained.graph_break_count) == (1, 0), explained.break_reasons


@pytest.mark.parametrize("blocks_faster", [True, False])
def test_compiled_decode_gives_the_eager_greedy_tokens(tmp_path, threads, monkeypatch,
                                                       blocks_faster):
    threads(2)
    monkeypatch.setattr(linear, "_BLOCKS_FASTER", {})
    monkeypatch.setattr(linear, "_measure_blocks", lambda *key: blocks_faster)
    # One decoder layer keeps inductor's compile short.
    path = make_tiny_checkpoint(tmp_path, text_overrides=dict(num_hidden_layers=1))
    proc = Qwen2VLProcessor.from_pretrained(path)
    model = Qwen2VL.from_pretrained(path, device="cpu")
    batch = proc(text=_chat(proc, "Where is the search button?"))
    eager = _run(model, batch, max_new_tokens=12, eos_token_ids=())[0].tokens
    assert model not in _COMPILED
    torch._dynamo.utils.counters.clear()
    assert _run(model, batch, max_new_tokens=12, eos_token_ids=(), compile=True)[0].tokens == eager
    assert model in _COMPILED  # the compiled step is the one that ran
    assert not torch._dynamo.utils.counters["graph_break"]  # one graph, as traced above
    # The compiled step does not keep its model alive (nor, on CUDA, the cache kept for it).
    gone = weakref.ref(model)
    del model
    gc.collect()
    assert gone() is None


def test_a_plain_forward_ignores_the_cache_generate_keeps(ours, tiny_processor):
    _run(ours, tiny_processor(text="hi"), max_new_tokens=2)  # leaves a 256-token cache of 1 row
    batch = tiny_processor(text=["word " * 300, "x"])
    logits = ours(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    alone = ours.model.cache_shape  # still there, untouched by the forward
    ours.model.clear_cache()
    assert alone == (1, 256)
    again = ours(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    assert torch.equal(logits, again)


def test_run_compile_option_reaches_the_local_backend(tiny_checkpoint, tmp_path):
    from runtime.build import make_policy
    from runtime.settings import RunSpec

    for compile in (False, True):
        spec = RunSpec(goal="g", model=str(tiny_checkpoint), compile=compile)
        assert make_policy(spec, tmp_path).backend.compile is compile


def test_compiled_steps_attend_to_power_of_two_prefixes_of_the_cache():
    from model.generate import attended_slots

    assert [attended_slots(n, 4096, compiled=False) for n in (1, 300, 4096)] == [1, 300, 4096]
    compiled = [attended_slots(n, 4096, compiled=True) for n in (1, 256, 257, 512, 513, 4000)]
    assert compiled == [256, 256, 512, 512, 1024, 4096]
    assert attended_slots(700, 768, compiled=True) == 768  # never past the cache


def test_an_empty_prompt_is_refused_by_name(ours, tiny_processor):
    """A reshape error deep in the decoder said nothing of the prompt."""
    from model.session import GenerationSession

    empty = tiny_processor(text="")["input_ids"]
    assert empty.shape == (1, 0)
    with pytest.raises(ValueError, match="the prompt has no tokens"):
        generate(ours, empty)
    with pytest.raises(ValueError, match="the prompt has no tokens"):
        GenerationSession(ours).generate(empty)
    # In a batch, padded to another prompt's length: it was answered from padding alone.
    batch = tiny_processor(text=[_chat(tiny_processor, "Hi."), ""])
    assert batch["attention_mask"][1].sum() == 0
    with pytest.raises(ValueError, match="the prompt of row 1 has no tokens"):
        _run(ours, batch, max_new_tokens=2)
    # A 1-D prompt is one sequence's tokens, not that many sequences.
    with pytest.raises(ValueError, match=r"one sequence of shape \(1, L\), got \(\d+,\)"):
        ours.generate(batch["input_ids"][0])
