"""A photo stored sideways with an EXIF Orientation tag (as phone cameras store them) reaches the
model upright wherever vlagent opens the file itself: ``model generate -i`` and serve's data
URLs, as a viewer shows it and as transformers' ``load_image`` reads it."""

from __future__ import annotations

import base64
import io
import types

import numpy as np
import torch
from PIL import Image, ImageOps
from typer.testing import CliRunner

from agent_cli import app

#: Orientation 6: the stored pixels are the picture turned 90 degrees counter-clockwise.
ROTATED_90 = 6


def sideways_photo() -> bytes:
    """A 560 wide, 280 tall JPEG whose EXIF says to show it 280 wide and 560 tall."""
    stored = Image.fromarray(np.random.default_rng(0).integers(0, 256, (280, 560, 3), np.uint8))
    exif = Image.Exif()
    exif[0x0112] = ROTATED_90
    out = io.BytesIO()
    stored.save(out, format="JPEG", exif=exif)
    return out.getvalue()


def upright(data: bytes) -> Image.Image:
    """The photo as transformers' load_image gives it."""
    from transformers.image_utils import load_image

    return load_image(Image.open(io.BytesIO(data)))


def test_model_generate_shows_the_model_a_photo_upright(tiny_checkpoint, tmp_path, monkeypatch):
    import model.generate

    data = sideways_photo()
    file = tmp_path / "photo.jpg"
    file.write_bytes(data)
    seen = {}

    def generate(model_, ids, pixels, grid, options):
        seen.update(pixels=pixels, grid=grid)
        return (types.SimpleNamespace(text="ok", tokens=[0]),)

    monkeypatch.setattr(model.generate, "generate", generate)
    result = CliRunner().invoke(app, ["model", "generate", str(tiny_checkpoint), "-i", str(file),
                                      "-p", "What is this?", "--device", "cpu"])
    assert result.exit_code == 0, result.output

    from model import Qwen2VLProcessor

    picture = upright(data)
    assert picture.size == (280, 560)
    want = Qwen2VLProcessor.from_pretrained(tiny_checkpoint)(
        text="<|vision_start|><|image_pad|><|vision_end|>", images=[picture])
    assert seen["grid"].tolist() == want["image_grid_thw"].tolist() == [[1, 40, 20]]
    assert torch.equal(seen["pixels"], want["pixel_values"])


def test_serve_reads_a_photo_sent_as_a_data_url_upright():
    from runtime.server.images import decoded, open_data_url

    data = sideways_photo()
    url = "data:image/jpeg;base64," + base64.b64encode(data).decode()
    served = decoded(open_data_url(url, max_pixels=1_000_000))
    want = upright(data)
    assert served.size == want.size == (280, 560)
    assert np.array_equal(np.asarray(served), np.asarray(want))
    # A file with no Orientation tag is read as stored.
    plain = io.BytesIO()
    ImageOps.exif_transpose(Image.open(io.BytesIO(data))).save(plain, format="PNG")
    flat = decoded(open_data_url(
        "data:image/png;base64," + base64.b64encode(plain.getvalue()).decode(), 1_000_000))
    assert flat.size == (280, 560)
