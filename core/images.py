"""Images as the model reads them, shared by the processor, `serve` and the openai client."""

from __future__ import annotations

from PIL import Image


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB, with any transparency composited onto white (as transformers does): a client that
    sends an image and a local run that reads it show the model the same pixels."""
    if "A" in image.getbands() or image.info.get("transparency") is not None:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB")


#: Channel counts an image array may have (gray, RGB, RGBA), as transformers' processor reads one.
ARRAY_CHANNELS = (1, 3, 4)


def as_image(image: object) -> Image.Image:
    """A PIL image as it is, and an array of bytes (numpy, a CPU torch tensor) as transformers'
    processor takes one: height x width with the channels first, else last (1, 3 or 4 of them)."""
    if isinstance(image, Image.Image):
        return image
    if not hasattr(image, "__array__"):
        raise TypeError(f"images must be PIL images or arrays of bytes, got {type(image).__name__}")
    import numpy as np

    try:
        array = np.asarray(image)
    except (RuntimeError, TypeError, ValueError) as exc:  # a tensor on a GPU, or needing grad
        raise TypeError(f"an image array must be bytes (uint8) on the CPU: {exc}") from None
    if array.dtype != np.uint8 or array.ndim != 3:
        raise TypeError(f"an image array must be 3-D bytes (uint8), height x width with 1, 3 or 4 "
                        f"channels first or last; got {array.ndim}-D {array.dtype}")
    if array.shape[0] in ARRAY_CHANNELS:
        array = array.transpose(1, 2, 0)
    elif array.shape[-1] not in ARRAY_CHANNELS:
        raise TypeError(f"an image array of shape {tuple(array.shape)} has no axis of 1, 3 or 4 "
                        "channels, first or last")
    return Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array)
