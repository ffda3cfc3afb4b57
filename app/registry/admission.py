"""What the admin API may load: the operator's allowed sources, and only what fits in memory.

An admin key can load models at run time, but it is not whoever deployed the server: the
catalog file may name any source, an admin entry only

- a local folder under one of NLP_SERVE_ADMIN_SOURCE_ROOTS (an absolute path; `..` and links
  are resolved before the check),
- a hub id matching one of NLP_SERVE_ADMIN_HUB_PATTERNS (shell-style, e.g. `my-org/*`),
- a `python:` module in NLP_SERVE_ADMIN_PYTHON_MODULES.

Refusals never depend on what exists outside those roots, so an admin key cannot map the
server's filesystem. Before any weights are read, their size (from the file sizes of the local
folder or of the hub cache) is compared with the memory left to the process (the cgroup limit
where there is one, else MemAvailable): a load or a replace that would not fit is refused.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from app.errors import InvalidInput, ModelLoadError
from app.registry.sources import PYTHON_PREFIX, looks_like_hub_id
from app.settings import Settings
from app.spec import ModelSpec

# Files whose bytes become model memory: weights (safetensors, pickle, ONNX, OpenVINO IR).
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".onnx", ".onnx_data")
CGROUP = Path("/sys/fs/cgroup")


class SourceKind(StrEnum):
    LOCAL = "local"
    HUB = "hub"
    PYTHON = "python"


@dataclass(frozen=True)
class Admitted:
    spec: ModelSpec
    kind: SourceKind


def _refuse(spec: ModelSpec, why: str, setting: str) -> InvalidInput:
    return InvalidInput(
        f"model {spec.name!r}: the admin API may not load source {spec.source!r}: {why}. "
        f"The operator allows sources with {setting}"
    )


def admit_source(spec: ModelSpec, settings: Settings) -> Admitted:
    """The entry, with a local source made absolute and resolved, if the operator allows it."""
    source = spec.source
    if source.startswith(PYTHON_PREFIX):
        if source.removeprefix(PYTHON_PREFIX) not in settings.admin_python_modules:
            raise _refuse(spec, "not an allowed module", "NLP_SERVE_ADMIN_PYTHON_MODULES")
        return Admitted(spec, SourceKind.PYTHON)
    if source.startswith(("/", ".", "~")) or not looks_like_hub_id(source):
        path = Path(source).expanduser()
        if not path.is_absolute():
            raise _refuse(spec, "give an absolute path", "NLP_SERVE_ADMIN_SOURCE_ROOTS")
        resolved = path.resolve()  # .. and links first: /allowed/../etc is not under /allowed
        roots = [Path(root).expanduser().resolve() for root in settings.admin_source_roots]
        if not any(resolved.is_relative_to(root) for root in roots):
            raise _refuse(spec, "not under an allowed root", "NLP_SERVE_ADMIN_SOURCE_ROOTS")
        return Admitted(spec.model_copy(update={"source": str(resolved)}), SourceKind.LOCAL)
    if not any(fnmatch.fnmatchcase(source, pattern) for pattern in settings.admin_hub_patterns):
        raise _refuse(spec, "not an allowed hub id", "NLP_SERVE_ADMIN_HUB_PATTERNS")
    return Admitted(spec, SourceKind.HUB)


def weight_bytes(model_dir: Path) -> int:
    """Bytes of the folder's weight files (what loading them reads into memory)."""
    return sum(
        p.stat().st_size for p in model_dir.iterdir() if p.is_file() and p.suffix in WEIGHT_SUFFIXES
    )


def _cgroup_bytes_left(root: Path = CGROUP) -> int | None:
    """memory.max - memory.current of this cgroup (v2), or None without a limit."""
    try:
        limit = (root / "memory.max").read_text().strip()
        used = int((root / "memory.current").read_text().strip())
    except (OSError, ValueError):
        return None
    return None if limit == "max" else max(0, int(limit) - used)


def _mem_available(meminfo: Path = Path("/proc/meminfo")) -> int | None:
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def memory_left() -> int | None:
    """Bytes this process may still take: the tighter of the cgroup's room and MemAvailable."""
    known = [b for b in (_cgroup_bytes_left(), _mem_available()) if b is not None]
    return min(known) if known else None


def check_fits(spec: ModelSpec, model_dir: Path, settings: Settings) -> None:
    """Refuse a model whose weights (times NLP_SERVE_ADMIN_MEMORY_FACTOR) exceed the memory
    left, before they are read."""
    factor = settings.admin_memory_factor
    needed = int(weight_bytes(model_dir) * factor)
    left = memory_left()
    if left is not None and needed > left:
        raise ModelLoadError(
            f"model {spec.name!r} needs about {needed / 2**30:.2f} GiB ({factor}x its weights) "
            f"and {left / 2**30:.2f} GiB is left to the server; unload a model first, or give "
            "the server more memory"
        )
