"""Imports among the producer modules point one way (STYLE: "Dependencies point one way").

Tasks and handles depend on `fleet._client.Client`, which `Fleet` implements; nothing
below `fleet.app` imports it (or `fleet.aio`) at run time, and no function imports a
fleet module to dodge a cycle. Imports under `TYPE_CHECKING` are annotations only.
"""

from __future__ import annotations

import ast
from pathlib import Path

import fleet

PACKAGE = Path(fleet.__file__).parent
# Each module may import at run time only the ones listed after it.
LAYERS = [
    "_client",
    "invocation",
    "task",
    "_records",
    "_timeouts",
    "_runtime",
    "_prepare",
    "_inline",
    "_results",
    "_submit",
    "aio",
    "app",
]


def _runtime_imports(module: str) -> tuple[set[str], set[str]]:
    """(modules of LAYERS imported at module level, those imported inside functions)."""
    tree = ast.parse((PACKAGE / f"{module}.py").read_text(encoding="utf-8"))
    typing_only = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            typing_only |= {id(sub) for sub in ast.walk(node)}
    local = {
        id(sub)
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        for sub in ast.walk(node)
    }
    top: set[str] = set()
    inner: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in typing_only or not isinstance(node, ast.ImportFrom) or not node.module:
            continue
        if node.module == "fleet":
            names = {a.name for a in node.names}
        elif node.module.startswith("fleet."):
            names = {node.module.split(".")[1]}
        else:
            continue
        (inner if id(node) in local else top).update(names & set(LAYERS))
    return top, inner


def test_producer_modules_import_only_downwards() -> None:
    for level, module in enumerate(LAYERS):
        top, inner = _runtime_imports(module)
        upward = top - set(LAYERS[:level])
        assert not upward, f"fleet.{module} imports {sorted(upward)} (above it)"
        assert not inner, f"fleet.{module} imports {sorted(inner)} inside a function"
