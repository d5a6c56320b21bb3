"""The house, drawn from the code's own imports: layers point one way and the leaf stands alone.

Every ``import`` in every .py file of a top-level package counts, function-level and
``TYPE_CHECKING`` ones included, so a layer cannot lean on another by importing late.
``bench/`` and ``tests/`` may import anything.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: What each layer may import besides itself (DESIGN.md and notes: core is the shared leaf).
ALLOWED: dict[str, frozenset[str]] = {
    "core": frozenset(),
    "model": frozenset({"core"}),
    "actions": frozenset({"core"}),
    "envs": frozenset({"core"}),
    "tasks": frozenset({"envs", "core"}),
    "trajectories": frozenset({"core"}),
    "agent": frozenset({"actions", "model", "envs", "tasks", "trajectories", "core"}),
    "runtime": frozenset({"agent", "actions", "model", "envs", "tasks", "trajectories", "core"}),
    "cli": frozenset({"runtime", "agent", "actions", "model", "envs", "tasks", "trajectories",
                      "core"}),
}
OURS = frozenset(ALLOWED) | {"agent_cli"}


def imported_modules(source: str, module: str) -> list[tuple[int, str]]:
    """(line, absolute module) of every import in ``source``, the text of the module called
    ``module`` ("envs.android"); relative imports are resolved against it."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # from . import x / from ..y import z
                base = module.split(".")[:-node.level]
                found.append((node.lineno, ".".join([*base, node.module or ""]).strip(".")))
            elif node.module:
                found.append((node.lineno, node.module))
    return found


def layer_imports(layer: str) -> dict[str, set[str]]:
    """The layers of ours that ``layer`` imports, each with the places that import it."""
    files = [ROOT / "agent_cli.py"] if layer == "agent_cli" else sorted((ROOT / layer).rglob("*.py"))
    assert files, f"no sources for {layer}"
    seen: dict[str, set[str]] = {}
    for file in files:
        name = ".".join(file.relative_to(ROOT).with_suffix("").parts)
        for line, module in imported_modules(file.read_text(), name):
            top = module.split(".")[0]
            if top in OURS and top != layer:
                seen.setdefault(top, set()).add(f"{file.relative_to(ROOT)}:{line} ({module})")
    return seen


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_each_layer_imports_only_the_layers_below_it(layer):
    wrong = {top: places for top, places in layer_imports(layer).items()
             if top not in ALLOWED[layer]}
    assert not wrong, f"{layer} may import only {sorted(ALLOWED[layer])}, but imports " + \
        "; ".join(f"{top} at {', '.join(sorted(p))}" for top, p in sorted(wrong.items()))


def test_the_entry_point_imports_only_the_cli():
    assert set(layer_imports("agent_cli")) == {"cli"}


def test_there_are_no_cycles_between_packages():
    graph = {layer: set(layer_imports(layer)) for layer in OURS}
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> None:
        if node in path:
            cycle = path[path.index(node):] + [node]
            pytest.fail("import cycle: " + " -> ".join(cycle))
        if node in done:
            return
        for nxt in sorted(graph[node]):
            visit(nxt, path + [node])
        done.add(node)

    for layer in sorted(graph):
        visit(layer, [])


def test_every_top_level_package_has_a_rule():
    packages = {p.name for p in ROOT.iterdir() if (p / "__init__.py").is_file()}
    assert packages - {"tests", "bench"} == set(ALLOWED)


def test_the_checker_sees_late_typing_only_and_relative_imports():
    # A negative control: the rules would be empty words if these went unseen.
    source = ("def late():\n    from tasks.registry import get_task\n"
              "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..agent import loop\n"
              "from . import keys\n")
    modules = {m for _, m in imported_modules(source, "envs.android")}
    assert {"tasks.registry", "agent", "envs"} <= modules
