"""model/ stands alone: no transformers at run time, no envs/actions/agent, cheap package import."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from runtime.tiny_checkpoint import make_tiny_checkpoint

ROOT = Path(__file__).resolve().parents[1]


def test_model_sources_import_nothing_from_the_rest_of_the_project():
    banned = ("envs", "actions", "agent", "tasks", "transformers")
    for file in (ROOT / "model").glob("*.py"):
        for node in ast.walk(ast.parse(file.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert name.split(".")[0] not in banned, f"{file.name} imports {name}"


def test_loading_and_generating_never_import_transformers(tmp_path):
    path = make_tiny_checkpoint(tmp_path)
    script = f"""
import sys
import model
assert "torch" not in sys.modules, "importing the model package must stay cheap"
from model import Qwen2VL, Qwen2VLProcessor
proc = Qwen2VLProcessor.from_pretrained({str(path)!r})
m = Qwen2VL.from_pretrained({str(path)!r}, device="cpu")
batch = proc(text=proc.apply_chat_template([{{"role": "user", "content": "hi"}}]))
out = m.generate(input_ids=batch["input_ids"], max_new_tokens=3)
assert out.shape[0] == 1 and 1 <= out.shape[1] <= 3
leaked = sorted(n for n in sys.modules if n.split(".")[0] == "transformers")
assert not leaked, leaked
"""
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
