"""Stream safetensors weights into a model built on the meta device, one tensor at a time.

Each tensor goes from disk straight to the target device and dtype and replaces the meta
parameter of the same name, so the model never exists twice in memory. A module that fuses
several checkpoint matmuls into one (``fused_from = {fused: {part: rows}}``) gets its fused
parameter allocated once and each part copied into its rows.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from torch import nn

from model.weight_files import checkpoint_files

# transformers 5 saves Qwen2VLModel's submodules under model.*; the hub layout has them at the top.
_KEY_PREFIXES = (("model.visual.", "visual."), ("model.language_model.", "model."))


#: The embedding matrix's parameter, which a tied head shares.
EMBEDDING = "model.embed_tokens.weight"


def canonical_key(key: str) -> str:
    """Map either key layout onto ours (the hub's: visual.*, model.*, lm_head.*)."""
    for prefix, ours in _KEY_PREFIXES:
        if key.startswith(prefix):
            return ours + key[len(prefix) :]
    return key


def _recomputed(name: str) -> bool:
    """A rotary embedding's ``inv_freq`` buffer (``model.rotary_emb.inv_freq``,
    ``visual.rotary_pos_emb.inv_freq``), which some conversions save: it follows from
    config.json and is computed from it, so it is skipped, as transformers skips it."""
    return name.endswith(".inv_freq")


def _set_parameter(model: nn.Module, name: str, tensor: torch.Tensor) -> None:
    module_name, _, attr = name.rpartition(".")
    module = model.get_submodule(module_name)
    module._parameters[attr] = nn.Parameter(tensor, requires_grad=False)


def checkpoint_layout(model: nn.Module) -> dict[str, tuple[str, slice | None]]:
    """Checkpoint name -> (our parameter, its rows that tensor fills; None: all of it)."""
    layout: dict[str, tuple[str, slice | None]] = {
        n: (n, None) for n, _ in model.named_parameters()
    }
    for prefix, module in model.named_modules():
        for fused, parts in getattr(module, "fused_from", {}).items():
            for kind in ("weight", "bias"):
                target = f"{prefix}.{fused}.{kind}"
                if layout.pop(target, None) is None:
                    continue
                start = 0
                for part, rows in parts.items():
                    layout[f"{prefix}.{part}.{kind}"] = (target, slice(start, start + rows))
                    start += rows
    return layout


def _open(file: Path):
    try:
        return safe_open(str(file), framework="pt", device="cpu")
    except SafetensorError as exc:  # a header whose JSON parses but is not safetensors'
        raise ValueError(f"{file} cannot be read as safetensors ({exc}): it is corrupt; "
                         "download the checkpoint again") from None


def check_weights(model: nn.Module, path: Path, tie_word_embeddings: bool
                  ) -> dict[str, tuple[str, slice | None]]:
    """Check, from the safetensors headers alone (no tensor is read), that the checkpoint at
    ``path`` holds each of ``model``'s tensors at the shape config.json implies, and no other:
    a ValueError naming what does not fit otherwise. Returns the ``checkpoint_layout`` checked
    (less a tied head: a stored one is optional, ``_tied_head``)."""
    params = dict(model.named_parameters())
    expected = checkpoint_layout(model)
    if tie_word_embeddings:
        expected.pop("lm_head.weight", None)
    found: set[str] = set()
    unexpected: list[str] = []
    head: tuple[int, ...] | None = None
    for file in checkpoint_files(path):
        with _open(file) as f:
            for key in f.keys():
                name = canonical_key(key)
                if name == "lm_head.weight" and tie_word_embeddings:
                    head = tuple(f.get_slice(key).get_shape())
                    continue
                if _recomputed(name):
                    continue
                if name not in expected:
                    unexpected.append(key)
                    continue
                shape = tuple(f.get_slice(key).get_shape())
                target, rows = expected[name]
                full = params[target]
                want = (
                    tuple(full.shape) if rows is None else (rows.stop - rows.start, *full.shape[1:])
                )
                if shape != want:
                    raise ValueError(
                        f"shape mismatch for {key} in {file.name}: checkpoint has {shape}, "
                        f"config.json implies {want}"
                    )
                found.add(name)
    if unexpected:
        raise ValueError(f"unexpected tensors in {path}: {unexpected[:8]}")
    missing = sorted(set(expected) - found)
    if EMBEDDING in missing and head is not None:
        # A saver that keeps one name for a shared tensor (safetensors' save_model) may keep
        # the head's: it is the embedding matrix too, as transformers reads it.
        want = tuple(params[EMBEDDING].shape)
        if head != want:
            raise ValueError(f"shape mismatch for lm_head.weight in {path}: checkpoint has "
                             f"{head}, config.json implies {want}")
        missing.remove(EMBEDDING)
    if missing:
        raise ValueError(
            f"tensors missing from {path}: {missing[:8]}{' ...' if len(missing) > 8 else ''}"
        )
    return expected


def load_weights(
    model: nn.Module,
    path: Path,
    device: torch.device,
    dtype: torch.dtype,
    tie_word_embeddings: bool,
) -> None:
    """Fill ``model``'s (meta) parameters from the checkpoint at ``path``, once ``check_weights``
    found every tensor there at its shape.

    Tied embeddings, as transformers 5 reads them: the embedding matrix serves as the head,
    unless the checkpoint stores a head of its own with other values, which is then kept; a
    checkpoint that stores only the head has it serve as the embedding matrix too."""
    # Checked first: a checkpoint that does not fit fails before any weight is allocated.
    expected = check_weights(model, path, tie_word_embeddings)
    params = dict(model.named_parameters())
    stored_head: torch.Tensor | None = None
    for file in checkpoint_files(path):
        with _open(file) as f:
            for key in f.keys():
                name = canonical_key(key)
                if name == "lm_head.weight" and tie_word_embeddings:
                    stored_head = f.get_tensor(key)
                    continue
                if _recomputed(name):
                    continue
                target, rows = expected[name]
                tensor = f.get_tensor(key)
                tensor = tensor.to(
                    device=device, dtype=dtype if tensor.is_floating_point() else tensor.dtype
                )
                if rows is None:
                    _set_parameter(model, target, tensor)
                else:
                    full = params[target]
                    if full.is_meta:  # the first part allocates the fused parameter
                        full = params[target] = torch.empty(
                            full.shape, dtype=tensor.dtype, device=device
                        )
                        _set_parameter(model, target, full)
                    full[rows] = tensor
    if tie_word_embeddings:
        if model.model.embed_tokens.weight.is_meta:  # only the head was stored (check_weights)
            _set_parameter(model, EMBEDDING, stored_head.to(device=device, dtype=dtype))
        model.lm_head.weight = _tied_head(model.model.embed_tokens.weight, stored_head, path)


def _tied_head(embed: nn.Parameter, stored: torch.Tensor | None, path: Path) -> nn.Parameter:
    """The embedding matrix, or a head the checkpoint stores with other values (as transformers
    keeps it, with a warning that config.json should not say tie_word_embeddings)."""
    if stored is None:
        return embed
    if stored.shape != embed.shape:
        raise ValueError(f"shape mismatch for lm_head.weight in {path}: checkpoint has "
                         f"{tuple(stored.shape)}, config.json implies {tuple(embed.shape)}")
    stored = stored.to(device=embed.device, dtype=embed.dtype)
    return embed if torch.equal(stored, embed) else nn.Parameter(stored, requires_grad=False)
