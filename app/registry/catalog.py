"""Reading and validating a YAML catalog, with errors that name the entry and the field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from app.errors import CatalogError
from app.spec import Catalog, ModelSpec


def _describe_location(raw: Any, loc: tuple[int | str, ...]) -> str:
    """('models', 2, 'batching') -> "models[2] (name 'x') field 'batching'"."""
    if len(loc) >= 2 and loc[0] == "models" and isinstance(loc[1], int):
        index = loc[1]
        name = None
        entries = raw.get("models") if isinstance(raw, dict) else None
        if isinstance(entries, list) and index < len(entries) and isinstance(entries[index], dict):
            name = entries[index].get("name")
        entry = f"models[{index}]" + (f" (name {name!r})" if name else "")
        field = ".".join(str(part) for part in loc[2:])
        return f"{entry} field {field!r}" if field else entry
    return "field " + ".".join(str(part) for part in loc) if loc else "catalog"


def parse_catalog(raw: Any, origin: str = "catalog") -> Catalog:
    try:
        return Catalog.model_validate(raw)
    except ValidationError as exc:
        problems = [
            f"{_describe_location(raw, tuple(err['loc']))}: {err['msg']}" for err in exc.errors()
        ]
        raise CatalogError(
            f"{origin} is invalid:\n  " + "\n  ".join(problems) + "\nFix the catalog and restart."
        ) from None


def parse_entry(raw: Any) -> ModelSpec:
    """One catalog entry (the admin API's body), validated exactly like an entry of a file.

    Raises CatalogError naming each wrong field.
    """
    from app.registry.model import check_backend

    if not isinstance(raw, dict):
        raise CatalogError("a catalog entry must be a JSON object like a `models:` item")
    try:
        spec = ModelSpec.model_validate(raw)
    except ValidationError as exc:
        problems = [
            f"field {'.'.join(str(part) for part in err['loc'])!r}: {err['msg']}"
            if err["loc"]
            else str(err["msg"])
            for err in exc.errors()
        ]
        raise CatalogError(
            "catalog entry is invalid: " + "; ".join(problems) + " (docs/configuration.md)"
        ) from None
    try:
        check_backend(spec, 0)
    except CatalogError as exc:
        raise CatalogError(str(exc).replace("models[0] ", "catalog entry ", 1)) from None
    return spec


def load_catalog(path: Path) -> Catalog:
    if not path.is_file():
        raise CatalogError(
            f"model catalog {path} does not exist; pass --models PATH or set NLP_SERVE_MODELS"
        )
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise CatalogError(f"model catalog {path} is not valid YAML: {exc}") from None
    return parse_catalog(raw, origin=f"model catalog {path}")
