"""docs/client.md's examples: each Python block compiles, imports only what the packages export,
and the ones that need no server run."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[3] / "docs" / "client.md"
BLOCKS = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.DOTALL)


def _imports(tree: ast.Module) -> list[tuple[str, str]]:
    return [
        (node.module or "", alias.name)
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    ]


def test_the_doc_has_its_examples() -> None:
    assert len(BLOCKS) >= 10


@pytest.mark.parametrize("block", [pytest.param(b, id=f"block-{i}") for i, b in enumerate(BLOCKS)])
def test_each_example_compiles_and_imports_what_is_exported(block: str) -> None:
    tree = ast.parse(block)
    for module, name in _imports(tree):
        if module.startswith("i2v_client"):
            exported = importlib.import_module(module)
            assert name in getattr(exported, "__all__", ()), f"{module} does not export {name}"
        else:
            assert hasattr(importlib.import_module(module), name), f"{module}.{name}"


def test_the_offline_example_runs() -> None:
    (block,) = [b for b in BLOCKS if "check_address(" in b]
    exec(compile(block, "client.md", "exec"), {})
