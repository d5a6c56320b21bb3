"""Qwen2.5-VL's vision configuration: the Qwen2-VL fields plus window attention and a SwiGLU MLP.

In Qwen2.5-VL's config.json ``vision_config.hidden_size`` is the tower's own width (1280) and
``out_hidden_size`` the merger's output (the language model's hidden size); in Qwen2-VL's,
``embed_dim`` is the width and ``hidden_size`` the output.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from model.config import VisionConfig, check_fields, object_field, whole_numbers


@dataclass(frozen=True)
class WindowVisionConfig(VisionConfig):
    hidden_act: str = "silu"
    intermediate_size: int = 3420  # the SwiGLU MLP's width (Qwen2-VL's uses mlp_ratio)
    window_size: int = 112  # pixels: 112 / 14 / 2 = 4x4 merged tokens per window
    fullatt_block_indexes: tuple[int, ...] = (7, 15, 23, 31)

    @property
    def window_tokens(self) -> int:
        """A window's side in merged tokens."""
        return self.window_size // self.patch_size // self.spatial_merge_size


def window_vision_config(v: dict[str, Any], text_hidden: int) -> WindowVisionConfig:
    """The vision_config dict of a ``qwen2_5_vl`` config.json (hub or transformers 5 layout)."""
    cfg = WindowVisionConfig(
        depth=v.get("depth", 32),
        embed_dim=v.get("hidden_size", 1280),
        num_heads=v.get("num_heads", 16),
        hidden_act=v.get("hidden_act", "silu"),
        in_channels=v.get("in_channels", v.get("in_chans", 3)),
        patch_size=v.get("patch_size", v.get("spatial_patch_size", 14)),
        temporal_patch_size=v.get("temporal_patch_size", 2),
        spatial_merge_size=v.get("spatial_merge_size", 2),
        out_dim=v.get("out_hidden_size", text_hidden),
        rope_theta=object_field(v, "rope_parameters").get("rope_theta", 10_000.0),
        intermediate_size=v.get("intermediate_size", 3420),
        window_size=v.get("window_size", 112),
        fullatt_block_indexes=whole_numbers(v, "fullatt_block_indexes", (7, 15, 23, 31)),
    )
    check_fields(cfg, "vision_config")
    if cfg.window_tokens < 1:
        raise ValueError(
            f"vision_config.window_size {cfg.window_size} is smaller than one merged token "
            f"({cfg.patch_size * cfg.spatial_merge_size} pixels)"
        )
    if cfg.out_dim != text_hidden:
        raise ValueError(
            f"vision_config.out_hidden_size {cfg.out_dim} must equal the language model's "
            f"hidden_size {text_hidden}"
        )
    return cfg
