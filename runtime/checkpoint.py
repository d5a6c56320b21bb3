"""Checking a checkpoint directory before a model loads it, so a user's mistake (a missing file,
an interrupted download) ends in one line that says what to fix instead of a loader traceback."""

from __future__ import annotations

import json
import struct
from pathlib import Path

from runtime.settings import RunError

DOWNLOAD_HINT = "download the checkpoint again (all of config.json, tokenizer.json and *.safetensors)"


def check_checkpoint(path: str | Path, weights: bool = True) -> Path:
    """``path`` as a Path when it holds a loadable checkpoint (``weights=False``: only what the
    processor reads); otherwise RunError naming the file and what to do. Its JSON settings are
    read as the loaders read them, and its weight files' headers, all without torch."""
    from model.config import Qwen2VLConfig
    from model.image_config import ImageProcessingConfig
    from model.weight_files import checkpoint_files

    path = Path(path)
    if not path.is_dir():
        raise RunError(f"{path} is not a checkpoint directory (it should hold config.json, "
                       "tokenizer.json and *.safetensors)")
    needed = ["tokenizer.json"] + (["config.json"] if weights else [])
    for name in needed:
        if not (path / name).is_file():
            raise RunError(f"{path} has no {name}; {DOWNLOAD_HINT}")
    try:
        ImageProcessingConfig.from_pretrained(path)
        if weights:
            Qwen2VLConfig.from_pretrained(path)
    except (OSError, ValueError) as exc:
        raise RunError(str(exc)) from None
    if weights:
        files = sorted(path.glob("*.safetensors"))
        broken = [f for f in files if f.is_symlink() and not f.exists()]
        if broken:  # a hub cache's snapshot whose blob never finished downloading
            raise RunError(f"{broken[0]} is a link to a file that does not exist (an "
                           f"unfinished download); {DOWNLOAD_HINT}")
        if not any(f.is_file() for f in files):
            raise RunError(f"{path} has no *.safetensors weights; {DOWNLOAD_HINT} (.bin weights "
                           "are not read: convert them with transformers' save_pretrained)")
        try:  # the files the loader reads: an index's shards, say
            files = checkpoint_files(path)
        except (OSError, ValueError) as exc:
            raise RunError(str(exc)) from None
        for file in files:
            _check_safetensors(file)
    return path


def _check_safetensors(file: Path) -> None:
    """A safetensors file is an 8-byte header length, a JSON header, then the tensors' bytes; a
    file shorter than its header says was cut off."""
    size = file.stat().st_size
    try:
        with open(file, "rb") as f:
            (length,) = struct.unpack("<Q", f.read(8))
            if 8 + length > size:
                raise ValueError("header")
            header = json.loads(f.read(length))
        end = max((t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"),
                  default=0)
    except (struct.error, ValueError, KeyError, TypeError, IndexError):
        raise RunError(f"{file} is not a readable safetensors file (corrupt or cut off); "
                       f"{DOWNLOAD_HINT}") from None
    if 8 + length + end > size:
        raise RunError(f"{file} is truncated ({size:,} of {8 + length + end:,} bytes); "
                       f"{DOWNLOAD_HINT}")


def check_torch_device(device: str | None) -> None:
    """Refuse a CUDA device that this machine's torch cannot use."""
    if device is None or not device.startswith("cuda"):
        return
    import torch

    if not torch.cuda.is_available():
        why = "torch was built without CUDA" if torch.version.cuda is None else "no GPU is visible"
        raise RunError(f"--device {device} needs CUDA, but {why}; use --device cpu (or leave "
                       "--device out to pick cuda only when present)")
    index = device.partition(":")[2]
    if index and (not index.isdecimal() or int(index) >= torch.cuda.device_count()):
        raise RunError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA "
                       "device(s), cuda:0 and up")
