"""Imports only point down the layers (docs/architecture.md), lazy imports included."""

from __future__ import annotations

import ast
from pathlib import Path

APP = Path(__file__).resolve().parents[2] / "app"

# Higher imports lower or equal, never the other way.
LAYERS: dict[str, int] = {
    "spec": 0, "settings": 0, "errors": 0, "logs": 0, "__init__": 0,
    "runtimes": 1, "metrics": 1, "tracing": 1,
    "tasks": 2,
    "pipeline": 3,
    "batching": 4,
    "registry": 5,
    "core": 6,
    "auth": 7, "responses": 7, "schemas": 7, "routers": 7, "middleware": 7, "main": 7,
    "lifecycle": 7, "protocols": 7, "grpc_server": 7,
    "cli": 8, "server": 8, "eval": 8, "ray_serve": 8,
}  # fmt: skip


def layer_of(module: str) -> int:
    """'app.registry.model' -> the layer of 'registry'."""
    parts = module.split(".")
    return LAYERS[parts[1] if len(parts) > 1 else "__init__"]


def imported_app_modules(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "app":  # from app import metrics; __version__ is app itself
                found.update(f"app.{a.name}" if a.name in LAYERS else "app" for a in node.names)
            elif node.module.startswith("app."):
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("app."))
    return found


def test_every_app_module_has_a_layer() -> None:
    tops = {p.relative_to(APP).parts[0].removesuffix(".py") for p in APP.rglob("*.py")}
    assert tops <= set(LAYERS), f"give these a layer here and in the docs: {tops - set(LAYERS)}"


def test_imports_point_down() -> None:
    upward = []
    for path in sorted(APP.rglob("*.py")):
        module = "app." + ".".join(path.relative_to(APP).with_suffix("").parts)
        own = layer_of(module)
        upward += [
            f"{module} imports {target}"
            for target in sorted(imported_app_modules(path))
            if layer_of(target) > own
        ]
    assert not upward, upward
