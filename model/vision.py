"""The Qwen2-VL vision tower: patch embed, 2D-rope ViT blocks with per-image attention, merger."""

from __future__ import annotations

from collections.abc import Callable

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


# An attention pattern over the packed patches: (q, k, v) of shape (1, heads, N, head_dim) -> same.
Attend = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def per_image_attention(seqlens: list[int]) -> Attend:
    """Block-diagonal attention: each image (frame) of ``seqlens`` patches attends only to itself."""

    def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return torch.cat(
            [
                F.scaled_dot_product_attention(qi, ki, vi)
                for qi, ki, vi in zip(q.split(seqlens, 2), k.split(seqlens, 2), v.split(seqlens, 2))
            ],
            dim=2,
        )

    return attend


class VisionAttention(nn.Module):
    def __init__(self, cfg: VisionConfig):
        super().__init__()
        self.num_heads = cfg.num_heads
        self.qkv = nn.Linear(cfg.embed_dim, 3 * cfg.embed_dim)
        self.proj = nn.Linear(cfg.embed_dim, cfg.embed_dim)

    def forward(
        self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, attend: Attend
    ) -> torch.Tensor:
        n = x.shape[0]
        q, k, v = self.qkv(x).view(n, 3, self.num_heads, -1).unbind(1)  # (N, heads, head_dim)
        # Rotate in fp32 like the reference, then back to the activation dtype.
        cos, sin = cos[:, None], sin[:, None]
        q = apply_rotary(q.float(), cos, sin).to(x.dtype)
        k = apply_rotary(k.float(), cos, sin).to(x.dtype)
        # (1, heads, N, head_dim): SDPA's fused CPU/GPU kernels want 4D inputs.
        q, k, v = (t.transpose(0, 1)[None] for t in (q, k, v))
        out = attend(q, k, v)
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


def layer_norm(dim: int) -> nn.Module:
    return nn.LayerNorm(dim, eps=1e-6)


class VisionBlock(nn.Module):
    """Pre-norm block; Qwen2.5-VL passes RMSNorm and its SwiGLU MLP in place of Qwen2-VL's."""

    def __init__(self, cfg: VisionConfig, norm=layer_norm, mlp=VisionMlp):
        super().__init__()
        self.norm1 = norm(cfg.embed_dim)
        self.norm2 = norm(cfg.embed_dim)
        self.attn = VisionAttention(cfg)
        self.mlp = mlp(cfg)

    def forward(self, x, cos, sin, attend: Attend):
        x = x + self.attn(self.norm1(x), cos, sin, attend)
        return x + self.mlp(self.norm2(x))


class PatchMerger(nn.Module):
    """LayerNorm (Qwen2.5-VL: RMSNorm), then each 2x2 window's 4 consecutive patches -> one LLM token."""

    def __init__(self, cfg: VisionConfig, norm=layer_norm):
        super().__init__()
        self.window_dim = cfg.embed_dim * cfg.spatial_merge_size**2
        self.ln_q = norm(cfg.embed_dim)
        self.mlp = nn.Sequential(
            nn.Linear(self.window_dim, self.window_dim),
            nn.GELU(),
            nn.Linear(self.window_dim, cfg.out_dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.ln_q(x).view(-1, self.window_dim))


class VisionTower(nn.Module):
    def __init__(self, cfg: VisionConfig, norm=layer_norm, mlp=VisionMlp):
        super().__init__()
        self.cfg = cfg
        self.patch_embed = PatchEmbed(cfg)
        self.blocks = nn.ModuleList(VisionBlock(cfg, norm, mlp) for _ in range(cfg.depth))
        self.merger = PatchMerger(cfg, norm)

    def embed_patches(self, pixel_values: torch.Tensor, grid_thw: torch.Tensor):
        """Patch embeddings, their 2D rotary cos/sin, and each image's (frame's) patch count."""
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
        return x, cos, sin, seqlens

    def forward(self, pixel_values: torch.Tensor, grid_thw: torch.Tensor) -> torch.Tensor:
        """(N patches, channels x temporal x patch x patch) -> (N / merge^2, LLM hidden)."""
        x, cos, sin, seqlens = self.embed_patches(pixel_values, grid_thw)
        attend = per_image_attention(seqlens)
        for block in self.blocks:
            x = block(x, cos, sin, attend)
        return self.merger(x)
