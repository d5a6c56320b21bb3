"""A bench model's fingerprint, kept in bench.json: a resume whose checkpoint or replay file
changed on disk since the run started (retrained in place, edited) would mix two models' results
in one run under one name."""

from __future__ import annotations

import hashlib
from pathlib import Path

#: The files of a checkpoint folder that loading reads (configs, tokenizer, chat template,
#: weights); others (a README, a trainer's logs) may change without changing the model.
CHECKPOINT_SUFFIXES = (".json", ".jinja", ".txt", ".model", ".safetensors")
#: Bytes read at each end of a large file: a weights file's header and first and last tensors.
#: Retraining changes every tensor, so both ends change; hashing gigabytes at each resume would
#: take minutes.
SAMPLE_BYTES = 1 << 20


def model_fingerprint(model: str) -> str | None:
    """A hex digest of what ``model`` names: a checkpoint folder's files (names, sizes, and each
    file whole or, when large, its ends), a replay file (or a trajectory's steps.jsonl) whole;
    None for a policy that reads no files (scripted)."""
    if model.startswith("replay:"):
        source = Path(model.removeprefix("replay:"))
        files = [source / "steps.jsonl" if source.is_dir() else source]
        return _digest(files, whole=True)
    folder = Path(model)
    if folder.is_dir():
        return _digest(sorted(p for p in folder.iterdir()
                              if p.suffix in CHECKPOINT_SUFFIXES and p.is_file()), whole=False)
    return None


def _digest(files: list[Path], whole: bool) -> str | None:
    digest = hashlib.sha256()
    try:
        for path in files:
            size = path.stat().st_size
            digest.update(f"{path.name}\0{size}\0".encode())
            with path.open("rb") as f:
                if whole or size <= 2 * SAMPLE_BYTES:
                    for block in iter(lambda: f.read(SAMPLE_BYTES), b""):
                        digest.update(block)
                else:
                    digest.update(f.read(SAMPLE_BYTES))
                    f.seek(size - SAMPLE_BYTES)
                    digest.update(f.read(SAMPLE_BYTES))
    except OSError:  # unreadable: the run itself says so, in words of its own
        return None
    return digest.hexdigest()
