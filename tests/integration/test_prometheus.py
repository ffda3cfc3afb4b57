"""The real Prometheus (Debian's package) scrapes the real server; every PromQL expression in
the Grafana dashboard and the alert rules parses, and every dashboard panel returns data."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from app.runtimes.device import cuda_device_count
from bench.common import free_port, serve, wait_until_ready

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "nlp-serve.json"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
PROMETHEUS = shutil.which("prometheus")
# Grafana fills these in; Prometheus needs concrete values.
GRAFANA_VARIABLES = {"$__rate_interval": "30s", "$model": ".*"}


def substitute(expr: str) -> str:
    for name, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(name, value)
    return expr


def panel_queries() -> list[tuple[str, str]]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    # row headers have no targets
    return [(p["title"], substitute(t["expr"])) for p in panels for t in p.get("targets", [])]


def alert_queries() -> list[tuple[str, str]]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [(r["alert"], r["expr"]) for g in groups for r in g["rules"]]


@pytest.fixture(scope="module")
def stack(
    tiny_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, str]]:
    if PROMETHEUS is None:
        pytest.skip(
            "Debian's prometheus is not installed, so this test cannot run: `make test` "
            "installs it (apt-get install prometheus); install it by hand where that failed"
        )
    source = str(tiny_models["sentiment"])
    models: list[dict[str, Any]] = [
        {"name": "fast", "task": "sentiment", "source": source, "backend": "fake"},
        {"name": "slow", "task": "sentiment", "source": source, "backend": "fake",
         "backend_options": {"delay_ms": 300}, "batching": {"max_batch_size": 1, "max_wait_ms": 0}},
        # the Text generation row's panels: a causal LM under continuous batching
        {"name": "writer", "task": "generate", "source": str(tiny_models["causal-lm"]),
         "backend": "fake"},
    ]  # fmt: skip
    workdir = tmp_path_factory.mktemp("prometheus")
    with serve(models, NLP_SERVE_WARMUP="false") as server:
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(ALERTS)],
            "scrape_configs": [
                {"job_name": "nlp-serve",
                 "static_configs": [{"targets": [server.base.removeprefix("http://")]}]}
            ],
        }  # fmt: skip
        (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
        port = free_port()
        process = subprocess.Popen(
            [PROMETHEUS, f"--config.file={workdir / 'prometheus.yml'}",
             f"--storage.tsdb.path={workdir / 'data'}", f"--web.listen-address=127.0.0.1:{port}",
             "--log.level=warn"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )  # fmt: skip
        prometheus = f"http://127.0.0.1:{port}"
        try:
            wait_until_ready(f"{prometheus}/-/ready", 30, process)
            yield server.base, prometheus
        finally:
            process.terminate()
            process.wait(timeout=30)


def send_traffic(base: str, seconds: float) -> None:
    """Successes, client errors, a 404, generated text, and a request whose deadline passes in
    the queue."""
    stop = time.monotonic() + seconds
    generate = {"inputs": ["once upon", "a time"], "model": "writer", "max_new_tokens": 4,
                "ignore_eos": True}  # fmt: skip
    with httpx.Client(base_url=base, timeout=10) as client:
        while time.monotonic() < stop:
            assert client.post("/v1/sentiment", json={"inputs": ["good", "bad"]}).status_code == 200
            assert client.post("/v1/generate", json=generate).status_code == 200
            assert client.post("/v1/sentiment", json={"inputs": ""}).status_code == 422
            assert (
                client.post("/v1/sentiment", json={"inputs": "x", "model": "nope"}).status_code
                == 404
            )
            time.sleep(0.05)
    with httpx.Client(base_url=base, timeout=10) as client:  # one deadline drop on "slow"
        import threading

        busy = threading.Thread(
            target=client.post,
            args=("/v1/sentiment",),
            kwargs={"json": {"inputs": "a", "model": "slow"}},
        )
        busy.start()
        time.sleep(0.05)
        late = client.post("/v1/sentiment", json={"inputs": "b", "model": "slow"},
                           headers={"X-Request-Timeout-Ms": "50"})  # fmt: skip
        assert late.status_code == 504
        busy.join()


def query(prometheus: str, expr: str) -> dict[str, Any]:
    response = httpx.get(f"{prometheus}/api/v1/query", params={"query": expr}, timeout=10)
    body: dict[str, Any] = response.json()
    return body


def test_dashboards_and_alerts_against_real_prometheus(stack: tuple[str, str]) -> None:
    base, prometheus = stack
    send_traffic(base, seconds=4)
    # wait (bounded) until the drop and at least a few scrapes are in
    for _ in range(100):
        dropped = query(prometheus, "nlp_serve_items_dropped_total")["data"]["result"]
        scrapes = query(prometheus, 'count_over_time(up{job="nlp-serve"}[1m])')["data"]["result"]
        if dropped and scrapes and float(scrapes[0]["value"][1]) >= 6:
            break
        time.sleep(0.2)
    else:
        raise AssertionError("prometheus never scraped the traffic")
    empty = []
    for title, expr in panel_queries():
        body = query(prometheus, expr)
        assert body["status"] == "success", (title, expr, body)
        if not body["data"]["result"] and not (title == "GPU memory" and cuda_device_count() == 0):
            empty.append(title)
    assert not empty, f"dashboard panels with no data: {empty}"
    for name, expr in alert_queries():
        body = query(prometheus, expr)
        assert body["status"] == "success", (name, expr, body)
    rules = httpx.get(f"{prometheus}/api/v1/rules", timeout=10).json()["data"]["groups"]
    loaded = {r["name"]: r["health"] for g in rules for r in g["rules"]}
    assert set(loaded) == {name for name, _ in alert_queries()}
    assert set(loaded.values()) == {"ok"}
