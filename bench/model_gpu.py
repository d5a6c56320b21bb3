"""GPU: our Qwen2-VL against transformers' at the real 2B and 7B shapes, random bf16 weights.

For each shape, in one run on one GPU, with the same weights on both sides (transformers builds
the random model; it is saved with ``save_pretrained`` and ours loads that checkpoint through its
real loading path):
  1. time to first token for a 1080x2400 screenshot (preprocessing included) and a short text;
  2. decode tokens/s at batch 1 and batch 8 after a ~300-token text prompt: the time of N new
     tokens minus the time of 1, over N - 1 steps;
  3. the fraction of the memory-bandwidth bound that batch-1 decode reaches: the bytes a step
     must read (the language model's weights but the embedding table, plus the KV cache) over
     the GPU's bandwidth, against the measured step time.
With ``--compile`` ours also runs its compiled decode step (CUDA graphs).

Run (where a GPU is lent): .venv/bin/python bench/model_gpu.py [--sizes 2B 7B] [--compile]
Needs about 40 GiB of GPU memory for 7B (both models) and disk for one checkpoint in a temp dir.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model_cpu import screenshot  # noqa: E402

from model import Qwen2VL  # noqa: E402
from model.generate import GenerationOptions, generate, prefill  # noqa: E402
from model.image_config import ImageProcessingConfig  # noqa: E402
from model.image_processing import preprocess_image  # noqa: E402

#: HBM bandwidth in GB/s by device name, for the bound; others need --bandwidth-gbs.
BANDWIDTH_GBS = {"H200": 4800, "H100 PCIe": 2000, "H100 NVL": 3900, "H100": 3350,
                 "A100-SXM4-80GB": 2039, "A100 80GB PCIe": 1935, "A100": 1555, "L40S": 864,
                 "A10G": 600, "L4": 300}
SHAPES = {  # hidden, intermediate, layers, heads, kv heads, vocab, tied: the hub's config.json
    "tiny": (256, 512, 2, 2, 1, 151936, True),  # a smoke run of this script on cpu (--device cpu)
    "2B": (1536, 8960, 28, 12, 2, 151936, True),
    "7B": (3584, 18944, 28, 28, 4, 152064, False),
    "72B": (8192, 29568, 80, 64, 8, 152064, False),
}
IMAGE_PAD, VISION_START, VISION_END = 151655, 151652, 151653


def hub_config(size: str) -> dict:
    """config.json as published for Qwen/Qwen2-VL-<size>-Instruct (hub layout)."""
    hidden, intermediate, layers, heads, kv, vocab, tied = SHAPES[size]
    return {
        "architectures": ["Qwen2VLForConditionalGeneration"],
        "model_type": "qwen2_vl",
        "bos_token_id": 151643, "eos_token_id": 151645,
        "vision_start_token_id": VISION_START, "vision_end_token_id": VISION_END,
        "vision_token_id": 151654, "image_token_id": IMAGE_PAD, "video_token_id": 151656,
        "hidden_act": "silu", "hidden_size": hidden, "intermediate_size": intermediate,
        "max_position_embeddings": 32768, "max_window_layers": layers,
        "num_attention_heads": heads, "num_hidden_layers": layers, "num_key_value_heads": kv,
        "rms_norm_eps": 1e-6, "rope_theta": 1000000.0, "sliding_window": 32768,
        "tie_word_embeddings": tied, "torch_dtype": "bfloat16", "use_cache": True,
        "use_sliding_window": False, "vocab_size": vocab,
        "vision_config": {
            "depth": 2 if size == "tiny" else 32, "embed_dim": 64 if size == "tiny" else 1280,
            "mlp_ratio": 4, "num_heads": 4 if size == "tiny" else 16, "in_chans": 3,
            "hidden_size": hidden, "patch_size": 14, "spatial_merge_size": 2,
            "spatial_patch_size": 14, "temporal_patch_size": 2,
        },
        "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]},
    }  # fmt: skip


def timed(fn: Callable[[], object], repeats: int) -> float:
    """Best wall time in ms over ``repeats`` runs, after one warm-up, with CUDA synchronized."""
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    fn()
    best = float("inf")
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        best = min(best, (time.perf_counter() - start) * 1000)
    return best


def phase(name: str, fn: Callable[[], None]) -> None:
    """Run one measurement; a failure is printed and the next one still runs (a GPU lease is
    short, and one broken figure should not cost the others)."""
    try:
        fn()
    except Exception:  # noqa: BLE001 - reported, not hidden
        print(f"{name}: FAILED")
        traceback.print_exc()


def bandwidth_gbs(given: float | None, device: str) -> float:
    if given:
        return given
    if device == "cpu":
        return 20.0  # a rough figure for a smoke run; pass --bandwidth-gbs for a real one
    name = torch.cuda.get_device_name()
    for key, value in BANDWIDTH_GBS.items():  # the most specific name first
        if key in name:
            return float(value)
    raise SystemExit(f"unknown bandwidth for {name!r}: pass --bandwidth-gbs")


def screenshot_prompt(n_image_tokens: int, text_tokens: int, vocab: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    text = torch.randint(1000, vocab // 2, (text_tokens,), generator=g).tolist()
    ids = text[:8] + [VISION_START] + [IMAGE_PAD] * n_image_tokens + [VISION_END] + text[8:]
    return torch.tensor([ids])


def random_models(size: str, dev: str) -> tuple[torch.nn.Module, Qwen2VL]:
    """transformers' model at ``size`` with random bf16 weights (seed 0) on ``dev``, and ours with
    the same weights, loaded from its ``save_pretrained`` through our real loading path. Ours
    never stops at EOS (random weights), so every run decodes the full length."""
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration

    torch.manual_seed(0)
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    with torch.device(dev):
        ref = Qwen2VLForConditionalGeneration(Qwen2VLConfig(**hub_config(size))).eval()
    torch.set_default_dtype(default)
    with tempfile.TemporaryDirectory() as tmp:
        ref.save_pretrained(tmp)
        ours = Qwen2VL.from_pretrained(tmp, device=dev, dtype="bf16")
    ours.eos_token_ids = []
    return ref, ours


def run_shape(size: str, args: argparse.Namespace) -> None:
    from transformers import Qwen2VLImageProcessorPil

    dev = args.device
    ref, ours = random_models(size, dev)
    image = screenshot()
    image_config = ImageProcessingConfig()
    hf_images = Qwen2VLImageProcessorPil(min_pixels=image_config.min_pixels,
                                         max_pixels=image_config.max_pixels)
    values, grid = preprocess_image(image, image_config)
    pixels = torch.from_numpy(values).to(dev, torch.bfloat16)  # ours, for the parts and logits
    n_image = grid[0] * grid[1] * grid[2] // 4
    ids = screenshot_prompt(n_image, 40, ours.config.text.vocab_size).to(dev)
    mm = (ids == IMAGE_PAD).int()

    def ours_first_token() -> None:
        values, g = preprocess_image(image, image_config)
        pixels = torch.from_numpy(values).to(dev, torch.bfloat16)
        generate(ours, ids, pixels, torch.tensor([g]), None, GenerationOptions(max_new_tokens=1))

    def ref_first_token() -> None:
        batch = hf_images.preprocess([image], return_tensors="pt")
        ref.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                     pixel_values=batch["pixel_values"].to(dev, torch.bfloat16),
                     image_grid_thw=batch["image_grid_thw"].to(dev), mm_token_type_ids=mm,
                     max_new_tokens=1, do_sample=False)

    def first_token() -> None:
        ttft = {"ours": timed(ours_first_token, args.repeats),
                "tf": timed(ref_first_token, args.repeats)}
        part = {  # ours, in parts: preprocessing, the upload, the tower (with the embedding)
            "preprocessing": timed(lambda: preprocess_image(image, image_config), args.repeats),
            "upload": timed(lambda: torch.from_numpy(values).to(dev, torch.bfloat16), args.repeats),
            "vision": timed(lambda: ours.embed(ids, pixels, torch.tensor([grid])), args.repeats),
        }
        rest = ttft["ours"] - sum(part.values())
        print(f"{size}: time to first token, 1080x2400 screenshot ({n_image} image tokens, "
              f"grid {list(grid)}), preprocessing included: ours {ttft['ours']:.1f} ms, "
              f"transformers {ttft['tf']:.1f} ms, tf/ours {ttft['tf'] / ttft['ours']:.2f}x")
        print(f"{size}: ours in parts: preprocessing on the host {part['preprocessing']:.1f} ms, "
              f"upload of the patches {part['upload']:.1f} ms, vision tower {part['vision']:.1f} "
              f"ms, the rest (decoder prefill, first token) {rest:.1f} ms")

    def agreement() -> None:
        # bf16 on both sides, so not equal: how far apart the last prefill logits are.
        got = prefill(ours, ids, pixels, torch.tensor([grid]), max_new_tokens=1).logits.float()
        batch = hf_images.preprocess([image], return_tensors="pt")
        want = ref(input_ids=ids, pixel_values=batch["pixel_values"].to(dev, torch.bfloat16),
                   image_grid_thw=batch["image_grid_thw"].to(dev), mm_token_type_ids=mm,
                   logits_to_keep=1).logits[:, -1].float()
        cos = torch.nn.functional.cosine_similarity(got, want).item()
        print(f"{size}: last prefill logits, ours against transformers (bf16 both): max |diff| "
              f"{(got - want).abs().max().item():.3g} over a scale of {want.abs().max().item():.3g}, "
              f"cosine {cos:.5f}, same argmax {bool((got.argmax(-1) == want.argmax(-1)).all())}")

    def decode_rates(batch: int) -> None:
        n = args.new_tokens
        prompt = torch.randint(1000, 50_000, (batch, 300), device=dev)
        ones = torch.ones_like(prompt)

        def per_second(gen: Callable[[int], object]) -> float:
            steps = timed(lambda: gen(n), args.repeats) - timed(lambda: gen(1), args.repeats)
            return batch * (n - 1) / steps * 1000

        def ref_gen(k: int) -> None:
            ref.generate(input_ids=prompt, attention_mask=ones, max_new_tokens=k,
                         min_new_tokens=k, do_sample=False)

        tokens: dict[str, list[list[int]]] = {}  # each of ours' last greedy rows

        def ours_gen(name: str, compiled: bool) -> Callable[[int], None]:
            def gen(k: int) -> None:
                made = generate(ours, prompt, None, None, None,
                                GenerationOptions(max_new_tokens=k, compile=compiled))
                tokens[name] = [g.tokens for g in made]
            return gen

        gens = {"ours": ours_gen("ours", False), "tf": ref_gen}
        if args.compile:
            gens["ours compiled"] = ours_gen("ours compiled", True)
        rates = {}
        for name, gen in gens.items():
            try:
                rates[name] = per_second(gen)
            except Exception:  # noqa: BLE001 - the other rates still print
                print(f"{size}: decode at batch {batch}, {name}: FAILED")
                traceback.print_exc()
        line = ", ".join(f"{k} {v:,.0f} tok/s" for k, v in rates.items())
        ratios = ", ".join(f"{k}/tf {v / rates['tf']:.2f}x" for k, v in rates.items()
                           if k != "tf" and "tf" in rates)
        print(f"{size}: decode at batch {batch}: {line}; {ratios}")
        if len(tokens) == 2:  # greedy, so equal up to bf16 kernels' rounding
            same = sum(a == b for a, b in zip(*tokens.values()))
            print(f"{size}: compiled greedy tokens equal the eager ones in {same} of {batch} rows")
        if batch == 1:
            text = ours.model
            weights = sum(p.numel() * p.element_size() for n_, p in ours.named_parameters()
                          if not n_.startswith(("visual.", "model.embed_tokens.")))
            if ours.tied_head:  # the head reads the embedding table
                weights += text.embed_tokens.weight.numel() * text.embed_tokens.weight.element_size()
            cfg = ours.config.text
            kv = 2 * cfg.num_hidden_layers * cfg.num_key_value_heads * cfg.head_dim * 2 * (300 + n)
            bound_ms = (weights + kv) / (bandwidth_gbs(args.bandwidth_gbs, args.device) * 1e9) * 1000
            for name, rate in rates.items():
                print(f"{size}: {name} batch-1 step {1000 / rate:.2f} ms against a bound of "
                      f"{bound_ms:.2f} ms ({(weights + kv) / 1e9:.2f} GB a step): "
                      f"{bound_ms * rate / 1000:.0%} of the bandwidth bound")

    with torch.inference_mode():
        phase(f"{size}: time to first token", first_token)
        phase(f"{size}: logits agreement", agreement)
        for batch in args.batches:
            phase(f"{size}: decode at batch {batch}", lambda batch=batch: decode_rates(batch))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["2B", "7B"], choices=list(SHAPES))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 8],
                        help="decode batch sizes (the bandwidth bound is reported at batch 1)")
    parser.add_argument("--compile", action="store_true", help="also time our compiled decode")
    parser.add_argument("--bandwidth-gbs", type=float, help="the GPU's memory bandwidth")
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"],
                        help="cpu: a smoke run of the script (--sizes tiny), not a benchmark")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("bench/model_gpu.py needs a CUDA GPU; this machine has none "
                         "(bench/model_cpu.py is the CPU benchmark)")
    name = torch.cuda.get_device_name() if args.device == "cuda" else "cpu"
    import transformers

    print(f"{name}, torch {torch.__version__}, transformers {transformers.__version__}, bf16, "
          f"bandwidth {bandwidth_gbs(args.bandwidth_gbs, args.device):,.0f} GB/s")
    for size in args.sizes:
        run_shape(size, args)
        if args.device == "cuda":
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
