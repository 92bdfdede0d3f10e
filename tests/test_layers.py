"""The dependency rules of docs/architecture.md, checked on the source: every import in
the package, including those inside functions and under ``TYPE_CHECKING``.

net -> service -> hub -> core -> protocol, and store -> core: a layer never imports one
above it, and the core never imports trio (it is pure and tested synchronously). Only
the store talks to PostgreSQL (psycopg).
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "chatroom"

# layer -> modules (top-level names under chatroom, or third-party) it must not import
FORBIDDEN: dict[str, set[str]] = {
    "protocol": {"core", "hub", "store", "service", "net", "http", "cli", "client", "psycopg"},
    "core": {"trio", "hub", "store", "service", "net", "http", "cli", "client", "psycopg"},
    "hub": {"trio", "store", "service", "net", "http", "cli", "client", "psycopg"},
    "store": {"hub", "service", "net", "http", "cli", "client"},
    "service": {"net", "http", "cli", "client", "psycopg"},
}


def imported(tree: ast.AST) -> set[str]:
    """The absolute module names a module imports."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def breaks(layer: str, module: str) -> bool:
    parts = module.split(".")
    if parts[0] == "chatroom":
        return len(parts) > 1 and parts[1] in FORBIDDEN[layer]
    return parts[0] in FORBIDDEN[layer]


def violations() -> list[str]:
    found = []
    for layer in FORBIDDEN:
        for path in sorted((PACKAGE / layer).rglob("*.py")):
            for module in sorted(imported(ast.parse(path.read_text(), str(path)))):
                if breaks(layer, module):
                    found.append(f"{path.relative_to(PACKAGE.parent)} imports {module}")
    return found


def test_every_layer_imports_only_the_layers_below_it() -> None:
    assert violations() == []


def test_the_check_sees_imports_anywhere_in_a_module() -> None:
    source = "def f():\n    from chatroom.net import server\n    import trio.lowlevel\n"
    names = imported(ast.parse(source))
    assert breaks("service", next(n for n in names if n.startswith("chatroom.net")))
    assert breaks("core", "trio.lowlevel")
    assert not breaks("service", "chatroom.hub.base")
    assert not breaks("store", "chatroom.core.model")
