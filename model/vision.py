"""The Qwen2-VL vision tower: patch embed, 2D-rope ViT blocks with per-image attention, merger."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from model.config import VisionConfig
from model.rope import apply_rotary, vision_rotary

ACTIVATIONS = {
    "quick_gelu": lambda x: x * torch.sigmoid(1.702 * x),
    "gelu": F.gelu,
    "silu": F.silu,
}


class PatchEmbed(nn.Module):
    """A Conv3d whose kernel equals its stride over one flattened patch is a plain matmul."""

    def __init__(self, cfg: VisionConfig):
        super().__init__()
        p, t = cfg.patch_size, cfg.temporal_patch_size
        # Kept in the checkpoint's Conv3d shape so weights load unchanged.
        self.proj = nn.Module()
        self.proj.weight = nn.Parameter(torch.empty(cfg.embed_dim, cfg.in_channels, t, p, p))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        weight = self.proj.weight
        return F.linear(pixels.to(weight.dtype), weight.flatten(1))


class VisionAttention(nn.Module):
    def __init__(self, cfg: VisionConfig):
        super().__init__()
        self.num_heads = cfg.num_heads
        self.qkv = nn.Linear(cfg.embed_dim, 3 * cfg.embed_dim)
        self.proj = nn.Linear(cfg.embed_dim, cfg.embed_dim)

    def forward(
        self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, seqlens: list[int]
    ) -> torch.Tensor:
        n = x.shape[0]
        q, k, v = self.qkv(x).view(n, 3, self.num_heads, -1).unbind(1)  # (N, heads, head_dim)
        # Rotate in fp32 like the reference, then back to the activation dtype.
        cos, sin = cos[:, None], sin[:, None]
        q = apply_rotary(q.float(), cos, sin).to(x.dtype)
        k = apply_rotary(k.float(), cos, sin).to(x.dtype)
        # (1, heads, N, head_dim): SDPA's fused CPU/GPU kernels want 4D inputs.
        q, k, v = (t.transpose(0, 1)[None] for t in (q, k, v))
        # Block-diagonal attention: each image (frame) attends only to itself.
        out = torch.cat(
            [
                F.scaled_dot_product_attention(qi, ki, vi)
                for qi, ki, vi in zip(q.split(seqlens, 2), k.split(seqlens, 2), v.split(seqlens, 2))
            ],
            dim=2,
        )
        return self.proj(out[0].transpose(0, 1).reshape(n, -1))


class VisionMlp(nn.Module):
    def __init__(self, cfg: VisionConfig):
        super().__init__()
        hidden = int(cfg.embed_dim * cfg.mlp_ratio)
        self.fc1 = nn.Linear(cfg.embed_dim, hidden)
        self.fc2 = nn.Linear(hidden, cfg.embed_dim)
        self.act = ACTIVATIONS[cfg.hidden_act]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class VisionBlock(nn.Module):
    def __init__(self, cfg: VisionConfig):
        super().__init__()
        self.norm1 = nn.LayerNorm(cfg.embed_dim, eps=1e-6)
        self.norm2 = nn.LayerNorm(cfg.embed_dim, eps=1e-6)
        self.attn = VisionAttention(cfg)
        self.mlp = VisionMlp(cfg)

    def forward(self, x, cos, sin, seqlens):
        x = x + self.attn(self.norm1(x), cos, sin, seqlens)
        return x + self.mlp(self.norm2(x))


class PatchMerger(nn.Module):
    """LayerNorm, then each 2x2 window's 4 consecutive patches -> one LLM token."""

    def __init__(self, cfg: VisionConfig):
        super().__init__()
        self.window_dim = cfg.embed_dim * cfg.spatial_merge_size**2
        self.ln_q = nn.LayerNorm(cfg.embed_dim, eps=1e-6)
        self.mlp = nn.Sequential(
            nn.Linear(self.window_dim, self.window_dim),
            nn.GELU(),
            nn.Linear(self.window_dim, cfg.out_dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.ln_q(x).view(-1, self.window_dim))


class VisionTower(nn.Module):
    def __init__(self, cfg: VisionConfig):
        super().__init__()
        self.cfg = cfg
        self.patch_embed = PatchEmbed(cfg)
        self.blocks = nn.ModuleList(VisionBlock(cfg) for _ in range(cfg.depth))
        self.merger = PatchMerger(cfg)

    def forward(self, pixel_values: torch.Tensor, grid_thw: torch.Tensor) -> torch.Tensor:
        """(N patches, patch_dim) -> (N / merge^2, LLM hidden)."""
        cfg = self.cfg
        x = self.patch_embed(pixel_values)
        cos, sin = vision_rotary(
            grid_thw, cfg.head_dim, cfg.spatial_merge_size, cfg.rope_theta, x.device
        )
        seqlens = [h * w for t, h, w in grid_thw.tolist() for _ in range(t)]
        if sum(seqlens) != x.shape[0]:
            raise ValueError(
                f"pixel_values has {x.shape[0]} patches but image_grid_thw describes {sum(seqlens)}"
            )
        for block in self.blocks:
            x = block(x, cos, sin, seqlens)
        return self.merger(x)
