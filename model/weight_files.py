"""Which safetensors files hold a checkpoint's weights. No torch here: a command checks them
before it imports torch (seconds)."""

from __future__ import annotations

from pathlib import Path

from model.config import read_json

INDEX_FILE = "model.safetensors.index.json"


def checkpoint_files(path: Path) -> list[Path]:
    """The safetensors files of a checkpoint directory: model.safetensors, else the index's
    shards, else every *.safetensors file.

    The single file comes first, as in transformers: ``save_pretrained`` without shards into a
    folder that held shards deletes them but leaves their index behind."""
    if not path.is_dir():
        raise FileNotFoundError(f"checkpoint directory {path} does not exist")
    single = path / "model.safetensors"
    if single.is_file():
        return [single]
    index = path / INDEX_FILE
    if index.is_file():
        weight_map = read_json(index).get("weight_map")
        if not isinstance(weight_map, dict):
            raise ValueError(f"{index} has no weight_map; download the checkpoint again")
        files = [path / name for name in sorted(set(weight_map.values()))]
        missing = [f.name for f in files if not f.is_file()]
        if missing:
            raise FileNotFoundError(f"{INDEX_FILE} in {path} lists missing shard(s): "
                                    f"{missing}; download the checkpoint again")
        return files
    found = sorted(p for p in path.glob("*.safetensors") if p.is_file())
    if not found:
        raise FileNotFoundError(f"no *.safetensors weights in {path}")
    return found
