"""The Qwen2 decoder: RMSNorm, GQA attention with q/k/v bias and M-RoPE, SwiGLU, a static KV cache.

q/k/v and gate/up are fused into one matmul each (``fused_from`` tells the loader which checkpoint
tensors fill which rows). The cache is written either at an int offset (a prefill chunk: attends
causally inside itself and to everything cached before it) or at a position tensor (a decode
step: attends to as many cache slots as its mask has columns, a few static lengths when
compiled: ``generate.attended_slots``), or not at all (``None``: a plain forward over a whole
prompt).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from model.config import TextConfig
from model.linear import Linear
from model.rope import apply_rotary

#: Devices whose masked prefills repeat the keys and values per query head (``Attention``):
#: CPU's fused kernel takes a mask and grouped heads together.
REPEAT_KV_DEVICES = {"cuda"}


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.float32:  # the reference's casts are no-ops: one op, weight included
            return F.rms_norm(x, x.shape[-1:], self.weight, self.eps)
        # Normalized in fp32, cast back, then scaled, like the reference.
        return self.weight * F.rms_norm(x.float(), x.shape[-1:], eps=self.eps).to(x.dtype)


class KVCache(nn.Module):
    """Preallocated keys and values of one layer (gpt-fast): (batch, kv_heads, len, head_dim)."""

    def __init__(self, k: torch.Tensor, v: torch.Tensor):
        super().__init__()
        self.register_buffer("k", k, persistent=False)
        self.register_buffer("v", v, persistent=False)

    @classmethod
    def empty(cls, batch: int, max_len: int, kv_heads: int, head_dim: int, dtype, device
              ) -> KVCache:
        shape = (batch, kv_heads, max_len, head_dim)
        return cls(torch.zeros(shape, dtype=dtype, device=device),
                   torch.zeros(shape, dtype=dtype, device=device))

    def rows(self, batch: int) -> KVCache:
        """The first ``batch`` rows, sharing this cache's memory (and its address)."""
        return KVCache(self.k[:batch], self.v[:batch])

    def update(self, pos: int | torch.Tensor, k: torch.Tensor, v: torch.Tensor):
        """Write at [pos, pos + L) and return the cache up to there; a tensor ``pos`` (the
        positions written, a decode step) returns the whole cache, so shapes never change."""
        if isinstance(pos, torch.Tensor):
            self.k.index_copy_(2, pos, k)
            self.v.index_copy_(2, pos, v)
            return self.k, self.v
        end = pos + k.shape[2]
        if end > self.k.shape[2]:
            raise ValueError(f"KV cache holds {self.k.shape[2]} tokens, {end} needed")
        self.k[:, :, pos:end] = k
        self.v[:, :, pos:end] = v
        return self.k[:, :, :end], self.v[:, :, :end]


class Attention(nn.Module):
    def __init__(self, cfg: TextConfig):
        super().__init__()
        self.heads, self.kv_heads, self.head_dim = (
            cfg.num_attention_heads,
            cfg.num_key_value_heads,
            cfg.head_dim,
        )
        q, kv = self.heads * self.head_dim, self.kv_heads * self.head_dim
        self.fused_from = {"qkv_proj": {"q_proj": q, "k_proj": kv, "v_proj": kv}}
        self.qkv_proj = Linear(cfg.hidden_size, q + 2 * kv)
        self.o_proj = Linear(q, cfg.hidden_size, bias=False)
        self.cache: KVCache | None = None

    def forward(self, x, cos, sin, pos: int | torch.Tensor | None, mask: torch.Tensor | None):
        b, n, _ = x.shape
        qk_heads = self.heads + self.kv_heads
        qkv = self.qkv_proj(x).view(b, n, qk_heads + self.kv_heads, self.head_dim).transpose(1, 2)
        # One rotation for q and k together.
        q, k = apply_rotary(qkv[:, :qk_heads], cos, sin).split([self.heads, self.kv_heads], dim=1)
        v = qkv[:, qk_heads:]
        if self.cache is not None and pos is not None:
            k, v = self.cache.update(pos, k, v)
            if mask is not None and mask.shape[-1] < k.shape[2]:  # an eager decode step
                k, v = k[:, :, : mask.shape[-1]], v[:, :, : mask.shape[-1]]
        # On CUDA, SDPA's fused kernels take either a mask or grouped query heads, not both; its
        # math kernel, the fallback, copies the keys and values to every head and scores in fp32.
        grouped = self.kv_heads != self.heads
        if n == 1 and mask is not None and grouped:
            # A decode step: each KV head's query heads become its query rows (the same products).
            rows = q.reshape(b, self.kv_heads, self.heads // self.kv_heads, self.head_dim)
            out = F.scaled_dot_product_attention(rows, k, v, attn_mask=mask)
            out = out.reshape(b, self.heads, 1, self.head_dim)
        else:
            if mask is not None and grouped and x.device.type in REPEAT_KV_DEVICES:
                # A masked prefill (a chunk after cached tokens, or left padding): the keys and
                # values once per query head, as grouped attention reads them, so the
                # memory-efficient kernel applies.
                rep = self.heads // self.kv_heads
                k, v, grouped = k.repeat_interleave(rep, 1), v.repeat_interleave(rep, 1), False
            # Without a mask the block is a causal prefill from position 0 (or a single token).
            out = F.scaled_dot_product_attention(
                q, k, v, attn_mask=mask, is_causal=mask is None and n > 1, enable_gqa=grouped,
            )  # fmt: skip
        return self.o_proj(out.transpose(1, 2).reshape(b, n, -1))


class Mlp(nn.Module):
    def __init__(self, cfg: TextConfig):
        super().__init__()
        inter = cfg.intermediate_size
        self.fused_from = {"gate_up_proj": {"gate_proj": inter, "up_proj": inter}}
        self.gate_up_proj = Linear(cfg.hidden_size, 2 * inter, bias=False)
        self.down_proj = Linear(inter, cfg.hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up_proj(x).chunk(2, dim=-1)
        return self.down_proj(F.silu(gate) * up)


class DecoderLayer(nn.Module):
    def __init__(self, cfg: TextConfig):
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.self_attn = Attention(cfg)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.mlp = Mlp(cfg)

    def forward(self, x, cos, sin, pos, mask):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, pos, mask)
        return x + self.mlp(self.post_attention_layernorm(x))


class TextModel(nn.Module):
    """Named like the checkpoint's ``model.*`` so weights load by name."""

    def __init__(self, cfg: TextConfig):
        super().__init__()
        self.cfg = cfg
        # No random init: the checkpoint fills it, and normal_ on the meta device would import
        # torch._dynamo (over a second) into every process that loads a model.
        self.embed_tokens = nn.Embedding(
            cfg.vocab_size, cfg.hidden_size, _weight=torch.empty(cfg.vocab_size, cfg.hidden_size)
        )
        self.layers = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.num_hidden_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)

    @property
    def cache_shape(self) -> tuple[int, int] | None:
        """(batch, length) of the allocated KV caches, or None."""
        cache = self.layers[0].self_attn.cache
        return None if cache is None else (cache.k.shape[0], cache.k.shape[2])

    def setup_cache(self, batch: int, max_len: int) -> None:
        weight = self.embed_tokens.weight
        for layer in self.layers:
            layer.self_attn.cache = KVCache.empty(
                batch, max_len, self.cfg.num_key_value_heads, self.cfg.head_dim,
                weight.dtype, weight.device,
            )  # fmt: skip

    def clear_cache(self) -> None:
        for layer in self.layers:
            layer.self_attn.cache = None

    def forward(
        self, embeds, cos, sin, pos: int | torch.Tensor | None = None, mask=None
    ):  # fmt: skip
        """``pos``: where ``embeds`` go in the cache (module docstring); None: no cache."""
        n = embeds.shape[1]
        if mask is None and isinstance(pos, int) and pos > 0 and n > 1:
            # A chunk after cached tokens: all of those, then causal inside the chunk. Additive
            # (0 or -inf) rather than bool, which SDPA would convert again in every layer.
            keep = torch.ones(n, pos + n, dtype=torch.bool, device=embeds.device).tril(pos)
            mask = torch.zeros(keep.shape, dtype=embeds.dtype, device=embeds.device)
            mask.masked_fill_(~keep, float("-inf"))
        x = embeds
        for layer in self.layers:
            x = layer(x, cos, sin, pos, mask)
        return self.norm(x)
