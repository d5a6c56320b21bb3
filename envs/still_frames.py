"""The still-frame protocol: a device that tells when its screen is still, so observing costs one
frame instead of two or more that must match.

A device offering it sets the property ``ro.vlagent.still_frames`` to ``1`` (the virtual phone
does; a real phone does not, and AndroidEnv keeps comparing ``screencap`` frames there). Then
``vphone frame --since VERSION --quiet-ms MS --timeout-ms MS`` waits until nothing on the screen
has changed for MS (at most the timeout) and prints one JSON line, ``StillFrame``'s fields, then
the screen as PNG, which it leaves out when the screen's version is still VERSION.
"""

from __future__ import annotations

import json

from pydantic import BaseModel, ValidationError

PROPERTY = "ro.vlagent.still_frames"


class StillFrame(BaseModel):
    #: Changes whenever the pixels may have; None while the screen moved during the capture.
    version: str | None
    still: bool  # False: the timeout passed first
    package: str
    activity: str


def frame_command(since: str | None, quiet_ms: int, timeout_ms: int) -> str:
    return f"vphone frame --since {since or '-'} --quiet-ms {quiet_ms} --timeout-ms {timeout_ms}"


def split_frame(data: bytes) -> tuple[StillFrame, bytes]:
    """The header and the PNG (b"" when unchanged); ValueError for anything else."""
    head, newline, png = data.partition(b"\n")
    try:
        frame = StillFrame.model_validate(json.loads(head))
    except (ValueError, ValidationError) as exc:
        raise ValueError(f"not a still frame: {data[:120]!r}") from exc
    if not newline:
        raise ValueError(f"not a still frame: {data[:120]!r}")
    return frame, png
