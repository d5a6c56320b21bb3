"""`model` commands: inspect a local Qwen2-VL / Qwen2.5-VL checkpoint and run one prompt through it."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from cli.error_line import error_line
from cli.model_options import (
    dtype_option,
    repetition_penalty_option,
    temperature_option,
    torch_device_option,
)
from core.terminal import literal, printable

app = typer.Typer(no_args_is_help=True, help="Inspect and run a local Qwen2-VL or Qwen2.5-VL checkpoint.")
console = Console()
err = Console(stderr=True)

SCREENSHOT = (1080, 2400)  # a common phone screen, width x height


def _fail(message: str) -> None:
    err.print(error_line(message), soft_wrap=True)
    raise typer.Exit(2)  # as `run` ends on settings it cannot use


def _window_rows(vision) -> list[tuple[str, str]]:
    """Qwen2.5-VL's window attention, when the tower has it."""
    if not hasattr(vision, "window_size"):
        return []
    w = vision.window_tokens
    return [("windows", f"{vision.window_size} px ({w}x{w} merged tokens), full attention in "
                        f"blocks {list(vision.fullatt_block_indexes)}, SwiGLU {vision.intermediate_size}")]  # fmt: skip


@app.command()
def info(
    path: Path = typer.Argument(..., help="Checkpoint directory (config.json, *.safetensors, ...)."),
    max_pixels: int | None = typer.Option(
        None, min=1,
        help="Also show the image budget at this max_pixels (e.g. 1003520 = 1280*28*28)."
    ),
) -> None:
    """Print the family, architecture, parameter counts by part and the image token budget.

    Reads only the JSON files: the model is built on the meta device, no weights are loaded.
    """
    from model.config import Qwen2VLConfig
    from model.image_config import ImageProcessingConfig

    try:  # before torch loads (seconds): a wrong path is told at once
        config = Qwen2VLConfig.from_pretrained(path)
        images = ImageProcessingConfig.from_pretrained(path)
    except (FileNotFoundError, ValueError) as e:
        _fail(str(e))
    if max_pixels is not None and max_pixels < images.min_pixels:
        # The row would read "0 max tokens" beside a 1-token screenshot: no budget means that.
        _fail(f"--max-pixels {max_pixels} is below the checkpoint's min_pixels "
              f"{images.min_pixels}")

    import torch

    from model.modeling import Qwen2VL
    with torch.device("meta"):
        counts = Qwen2VL(config).parameter_counts()

    t, v = config.text, config.vision
    rows = [
        ("family", f"{config.family} (model_type {config.model_type})"),
        ("decoder", f"{t.num_hidden_layers} layers, hidden {t.hidden_size}, heads "
                    f"{t.num_attention_heads}/{t.num_key_value_heads} kv, head_dim {t.head_dim}, "
                    f"intermediate {t.intermediate_size}"),
        ("vocab", f"{t.vocab_size} (tied embeddings: {config.tie_word_embeddings})"),
        ("M-RoPE", f"theta {t.rope_theta:g}, mrope_section {list(t.mrope_section)}"),
        ("vision", f"depth {v.depth}, embed {v.embed_dim}, heads {v.num_heads}, patch "
                   f"{v.patch_size}, temporal {v.temporal_patch_size}, merge "
                   f"{v.spatial_merge_size}, {v.hidden_act}"),
        *_window_rows(v),
        ("image tokens", f"image_token_id {config.image_token_id}, vision_start/end "
                         f"{config.vision_start_token_id}/{config.vision_end_token_id}"),
    ]  # fmt: skip
    # The path as written: rich would read "[...]" in a folder's name as markup (and fail on it).
    arch = Table(title=f"{config.family} checkpoint: {literal(str(path))}", show_header=False)
    for row in rows:
        arch.add_row(*row)
    console.print(arch)

    params = Table(title="Parameters")
    params.add_column("part")
    params.add_column("count", justify="right")
    for part in ("visual", "language_model", "lm_head", "total"):
        label = "lm_head (tied)" if part == "lm_head" and config.tie_word_embeddings else part
        params.add_row(label, f"{counts[part]:,}")
    console.print(params)

    budget = Table(title="Image token budget")
    budget.add_column("max_pixels", justify="right")
    budget.add_column("min_pixels", justify="right")
    budget.add_column("max tokens / image", justify="right")
    budget.add_column(f"{SCREENSHOT[0]}x{SCREENSHOT[1]} screenshot", justify="right")
    factor = images.factor
    for limit in [images.max_pixels] + ([max_pixels] if max_pixels else []):
        h, w = images.resized_size(*SCREENSHOT, max_pixels=limit)
        budget.add_row(
            f"{limit:,}",
            f"{images.min_pixels:,}",
            f"{limit // (factor * factor):,}",
            f"{w}x{h} -> {images.token_count(*SCREENSHOT, max_pixels=limit):,} tokens",
        )
    console.print(budget)


@app.command()
def generate(
    path: Path = typer.Argument(..., help="Checkpoint directory."),
    prompt: str = typer.Option(..., "--prompt", "-p", help="The user's text."),
    image: list[Path] = typer.Option(
        [], "--image", "-i",
        help="Image file shown before the prompt, upright as its EXIF orientation says (repeat "
        "for several).",
    ),
    system: str | None = typer.Option(None, help="System prompt (default: the chat template's)."),
    max_new_tokens: int = typer.Option(128, min=1, help="Stop after this many new tokens."),
    max_pixels: int | None = typer.Option(None, min=1,
                                          help="Resize images to at most this many pixels."),
    min_pixels: int | None = typer.Option(None, min=1,
                                          help="Resize images to at least this many pixels."),
    device: str | None = torch_device_option(),
    dtype: str | None = dtype_option(),
    temperature: float = temperature_option(help="0 decodes greedily; above 0 samples."),
    top_k: int = typer.Option(0, min=0, help="Sample from this many likeliest tokens (with "
                              "--temperature > 0); 0: no limit."),
    top_p: float = typer.Option(1.0, min=0.0, max=1.0,
                                help="Nucleus sampling mass (with --temperature > 0)."),
    seed: int | None = typer.Option(None, help="Seed for sampling."),
    repetition_penalty: float | None = repetition_penalty_option(),
    stop: list[str] = typer.Option([], help="Stop once the answer contains this text (repeatable)."),
) -> None:
    """Answer one prompt about zero or more images and print the model's text."""
    import time

    from PIL import Image, ImageOps, UnidentifiedImageError

    from agent.backends.base import check_context
    from model.config import check_repetition_penalty
    from runtime.checkpoint import check_checkpoint, check_torch_device

    if min_pixels and max_pixels and min_pixels > max_pixels:
        _fail(f"--min-pixels {min_pixels} is above --max-pixels {max_pixels}")
    try:
        check_repetition_penalty(repetition_penalty, "--repetition-penalty")
        check_checkpoint(path)  # before torch loads (seconds): a wrong path is told at once
    except ValueError as e:
        _fail(str(e))

    from model import Qwen2VL, Qwen2VLProcessor
    from model.generate import GenerationOptions, Sampling, generate

    try:  # before the model loads: a seed torch cannot take
        sampling = Sampling(temperature=temperature, top_k=top_k, top_p=top_p, seed=seed,
                            repetition_penalty=repetition_penalty)
    except ValueError as e:
        _fail(f"--{e}")
    pictures = []
    for file in image:
        try:
            with Image.open(file) as im:
                im.load()
                # Upright, as a viewer shows it (and transformers' load_image gives it): a
                # phone camera's photo is stored sideways with an EXIF Orientation tag.
                ImageOps.exif_transpose(im, in_place=True)
                pictures.append(im)
        # missing, a folder, unreadable, or more pixels than PIL opens
        except (OSError, UnidentifiedImageError, Image.DecompressionBombError) as e:
            _fail(f"cannot read image {file}: {e}")
    try:
        check_torch_device(device)
        proc = Qwen2VLProcessor.from_pretrained(path)
        # A 7B checkpoint takes a while to load (and to answer, below): a spinner on a
        # terminal's stderr says what is going on; a pipe gets nothing.
        with err.status("loading the model…"):
            model = Qwen2VL.from_pretrained(path, device=device, dtype=dtype)
    except (FileNotFoundError, ValueError, KeyError) as e:
        _fail(str(e))

    # An empty --system is an empty system turn, as the chat template renders one.
    messages = [{"role": "system", "content": system}] if system is not None else []
    content = [{"type": "image"} for _ in pictures] + [{"type": "text", "text": prompt}]
    messages.append({"role": "user", "content": content})
    text = proc.apply_chat_template(messages, add_generation_prompt=True)
    try:  # an image the processor cannot take (a 300:1 strip), placeholders in the prompt
        # Counted from the images' sizes first: a large --min-pixels would make gigabytes of
        # patches before the count of the tokenized prompt refused them.
        if pictures:
            check_context(sum(proc.image_config.token_count(*im.size, min_pixels, max_pixels)
                              for im in pictures), max_new_tokens,
                          model.config.text.max_position_embeddings, at_least=True)
        batch = proc(text=text, images=pictures or None, min_pixels=min_pixels,
                     max_pixels=max_pixels)
        # The cache is sized for the prompt and every new token, so check before allocating it.
        check_context(batch["input_ids"].shape[1], max_new_tokens,
                      model.config.text.max_position_embeddings)
    except ValueError as e:
        _fail(str(e))
    start = time.perf_counter()
    with err.status(f"generating (at most {max_new_tokens} tokens)…"):
        (reply,) = generate(
            model, batch["input_ids"], batch.get("pixel_values"), batch.get("image_grid_thw"),
            options=GenerationOptions(
                max_new_tokens=max_new_tokens,
                sampling=sampling,
                stop=tuple(stop or ()), tokenizer=proc))
    elapsed = time.perf_counter() - start
    # The reply as an agent reads it and serve sends it (grounding tokens kept, cut before a
    # stop string), its control characters shown as escapes: a reply cannot retitle or clear
    # the terminal, or set its clipboard (line breaks and tabs stay).
    typer.echo(printable(reply.text))
    err.print(
        f"[dim]{batch['input_ids'].shape[1]} prompt tokens, {len(reply.tokens)} new tokens, "
        f"{elapsed:.2f}s on {model.device} ({str(model.dtype).removeprefix('torch.')})[/dim]"
    )


#: --family -> config.json's model_type.
TINY_FAMILIES = {"qwen2vl": "qwen2_vl", "qwen25vl": "qwen2_5_vl"}


@app.command()
def tiny(
    path: Path = typer.Argument(..., help="Directory to write the checkpoint into."),
    family: str = typer.Option("qwen2vl", "--family", help="qwen2vl (Qwen2-VL) or qwen25vl "
                               "(Qwen2.5-VL, window attention)."),
    seed: int = typer.Option(0, "--seed", min=0, max=2**63 - 1,
                             help="Seed of the random weights."),
) -> None:
    """Write a tiny random checkpoint (a few MB: config.json, model.safetensors, tokenizer.json,
    tokenizer_config.json, generation_config.json, preprocessor_config.json) to try a run
    offline.

    Example: agent_cli.py model tiny tiny-qwen2vl && agent_cli.py run "book a flight" --env
    android --device virtual --model tiny-qwen2vl --max-steps 3 --max-pixels 200704

    Its context is 4,096 tokens: a phone screenshot at the default budget is 3,354.
    """
    if family not in TINY_FAMILIES:
        _fail(f"unknown --family {family!r}; choose {', '.join(TINY_FAMILIES)}")
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        _fail(f"{path} exists and is not an empty directory; choose a new one")
    from runtime.tiny_checkpoint import make_tiny_checkpoint

    try:
        made = make_tiny_checkpoint(path, seed=seed, model_type=TINY_FAMILIES[family])
    except RuntimeError as e:
        _fail(str(e))
    except OSError as e:  # a folder that cannot be made there (under a file, read-only)
        _fail(f"cannot write the checkpoint to {path}: {e.strerror or e}")
    files = ", ".join(sorted(p.name for p in made.iterdir()))
    console.print(f"tiny random {family} checkpoint in {made}: {files}", soft_wrap=True,
                  markup=False, highlight=False)  # a folder's name is no markup
