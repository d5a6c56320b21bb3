"""Our Qwen2-VL implementation.

Importing this package stays cheap (no torch) so that the CLI's fast paths can import it;
the heavy classes load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from model.modeling import Qwen2VL
    from model.processor import Qwen2VLProcessor

__all__ = ["Qwen2VL", "Qwen2VLProcessor"]


def __getattr__(name: str) -> Any:
    if name == "Qwen2VL":
        from model.modeling import Qwen2VL

        return Qwen2VL
    if name == "Qwen2VLProcessor":
        from model.processor import Qwen2VLProcessor

        return Qwen2VLProcessor
    raise AttributeError(f"module 'model' has no attribute {name!r}")
