"""The package's shape, checked from the source: who may import what.

DEVELOPERS.md states the rules; this test reads every module's imports (its AST, top level
and inside functions alike) and fails on the first one broken:

* a heavy dependency is imported only by the room that owns it (tree-sitter by the parser,
  LanceDB by the store, torch & co. by the models, watchdog by the watcher);
* imports point one way: the faces (cli, server, watch, hooks, evaluate) use the front door
  (index) and what is below it; nothing below a face imports a face, and nothing but cli
  imports the faces;
* every package folder is in pyproject's package list, so an installed wheel has it.
"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT / "coderag"

#: third-party module → the coderag modules (dotted, prefix match) allowed to import it
OWNERS = {
    "tree_sitter": ("coderag.chunking.parse",),
    "lancedb": ("coderag.store",),
    "torch": ("coderag.models",),
    "transformers": ("coderag.models",),
    "sentence_transformers": ("coderag.models",),
    "watchdog": ("coderag.watch",),
    "starlette": ("coderag.server",),
    "uvicorn": ("coderag.server",),
    "mcp": ("coderag.server.mcp",),
}
#: the faces, and who may import them (besides themselves)
FACES = ("coderag.cli", "coderag.server", "coderag.watch", "coderag.hooks", "coderag.evaluate")
FACE_USERS = {
    "coderag.server": ("coderag.cli", "coderag.hooks", "coderag.server"),  # hooks use the client
    "coderag.watch": ("coderag.cli", "coderag.server", "coderag.watch"),  # a served watcher
    "coderag.hooks": ("coderag.cli", "coderag.hooks"),
    "coderag.evaluate": ("coderag.cli", "coderag.evaluate"),
    "coderag.cli": ("coderag.cli", "coderag.__main__"),
}


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(ROOT).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _imports(name: str, path: Path) -> set[str]:
    """Every module ``name`` imports, absolute and dotted (relative imports resolved)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            found.add(mod)
            # `from . import x` / `from .pkg import mod` may name submodules
            found.update(f"{mod}.{a.name}" for a in node.names)
    return found


MODULES = _modules()


def _within(name: str, prefixes) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_heavy_dependencies_stay_in_their_room(name):
    for imported in _imports(name, MODULES[name]):
        top = imported.split(".")[0]
        if top in OWNERS:
            assert _within(name, OWNERS[top]), f"{name} imports {imported}"


@pytest.mark.parametrize("name", sorted(MODULES))
def test_imports_point_one_way(name):
    for imported in _imports(name, MODULES[name]):
        for face, users in FACE_USERS.items():
            if _within(imported, (face,)) and imported in MODULES | {face: None}:
                assert _within(name, users), f"{name} imports the face {imported}"


def test_the_rules_name_real_modules():
    """A rule about a module that no longer exists protects nothing."""
    for owners in OWNERS.values():
        for owner in owners:
            assert any(_within(m, (owner,)) for m in MODULES), owner
    for face in FACES:
        assert face in MODULES, face


def test_every_package_is_installed():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    listed = set(config["tool"]["setuptools"]["packages"])
    folders = {".".join(p.parent.relative_to(ROOT).parts) for p in PKG.rglob("__init__.py")}
    assert folders <= listed, f"missing from pyproject's packages: {sorted(folders - listed)}"
