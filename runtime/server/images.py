"""Images in requests: base64 data URLs only (a server that fetched URLs could be made to reach
hosts its users cannot), decoded with PIL after the size in the header passes the pixel limit
and the prompt those sizes make fits the context."""

from __future__ import annotations

import base64
import binascii
import io
import re

from PIL import Image, ImageOps, UnidentifiedImageError

from core.images import to_rgb

# RFC 2397: the scheme, type and "base64" are case-insensitive.
DATA_URL = re.compile(r"data:(image/[A-Za-z0-9.+-]+);base64,(.*)", re.DOTALL | re.IGNORECASE)
LINE_BREAKS = str.maketrans("", "", " \t\r\n")  # MIME base64 wraps lines at 76 characters
FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP")


class BadImage(ValueError):
    """An image the request cannot use; the message says why."""


def open_data_url(url: str, max_pixels: int) -> Image.Image:
    """The image in a ``data:image/...;base64,...`` URL, its header read and its size checked
    against ``max_pixels``, none of its pixels decoded yet (``decoded``): a request whose
    prompt cannot fit is refused from the sizes alone."""
    match = DATA_URL.fullmatch(url.strip())
    if match is None:
        start = url[:40] + ("…" if len(url) > 40 else "")
        raise BadImage(f"image_url must be a data:image/...;base64,... URL, got {start!r}")
    try:
        raw = base64.b64decode(match.group(2).translate(LINE_BREAKS), validate=True)
    except (binascii.Error, ValueError):
        raise BadImage("image_url data is not valid base64") from None
    try:
        image = Image.open(io.BytesIO(raw), formats=FORMATS)
    except Image.DecompressionBombError as exc:  # PIL's own limit, checked as it opens
        raise BadImage(f"an image is too large to decode: {exc}") from None
    except UnidentifiedImageError:
        raise BadImage(f"image_url data is not a {', '.join(FORMATS)} image") from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:  # a corrupt header
        raise BadImage(f"image_url data cannot be decoded: {exc}") from None
    width, height = image.size
    if width * height > max_pixels:
        raise BadImage(f"an image is {width}x{height} = {width * height:,} pixels; "
                       f"the limit is {max_pixels:,}")
    return image


def decoded(image: Image.Image) -> Image.Image:
    """``open_data_url``'s image, decoded to RGB (transparency on white, as a local run reads
    the same file) and upright: a photo stored sideways with an EXIF Orientation tag is turned
    as a viewer turns it, as ``model generate -i`` turns the same file."""
    try:
        image.load()
        ImageOps.exif_transpose(image, in_place=True)
        return to_rgb(image)
    except (OSError, ValueError, SyntaxError, EOFError) as exc:  # truncated or corrupt
        raise BadImage(f"image_url data cannot be decoded: {exc}") from None
