"""The deploy files are valid: Prometheus config and rules (promtool, incl. rule unit tests),
the Dockerfile (hadolint), the compose file (compose-spec schema, mounted files exist), and the
Grafana dashboard (in step with its generator)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None,
    reason="promtool (Debian's prometheus package) is not installed: `make test` installs it",
)


def run(*cmd: str, cwd: Path = ROOT) -> str:
    result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


@needs_promtool
def test_prometheus_config_checks(tmp_path: Path) -> None:
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    # compose mounts the rules at /etc/prometheus/alerts.yml; point at the repo's copy
    config["rule_files"] = [str(PROMETHEUS_DIR / "alerts.yml")]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    assert "SUCCESS" in run(str(PROMTOOL), "check", "config", str(tmp_path / "prometheus.yml"))


@needs_promtool
def test_alert_rules_check_and_unit_tests() -> None:
    assert "SUCCESS: 6 rules found" in run(
        str(PROMTOOL), "check", "rules", "alerts.yml", cwd=PROMETHEUS_DIR
    )
    out = run(str(PROMTOOL), "test", "rules", "alerts_test.yml", cwd=PROMETHEUS_DIR)
    assert "SUCCESS" in out


def test_every_alert_has_for_summary_and_a_unit_test() -> None:
    rules = [
        r
        for g in yaml.safe_load((PROMETHEUS_DIR / "alerts.yml").read_text())["groups"]
        for r in g["rules"]
    ]
    cases = yaml.safe_load((PROMETHEUS_DIR / "alerts_test.yml").read_text())["tests"]
    tested = {t["alertname"] for case in cases for t in case["alert_rule_test"]}
    for rule in rules:
        assert rule.get("for"), rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
        assert rule["alert"] in tested, f"{rule['alert']} has no promtool unit test"
    operations = (ROOT / "docs" / "operations.md").read_text()
    for rule in rules:
        assert rule["alert"] in operations, f"docs/operations.md does not explain {rule['alert']}"


def test_dockerfile_lints_clean() -> None:
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    run(hadolint, "Dockerfile")


def test_dockerfile_installs_like_the_makefile() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "RUN scripts/install.sh /opt/venv" in dockerfile
    assert "scripts/install.sh $(VENV) --dev" in (ROOT / "Makefile").read_text()
    assert re.search(r"^USER \d+:\d+$", dockerfile, re.M)
    assert "HEALTHCHECK" in dockerfile
    assert "/healthz" in dockerfile


def test_image_is_pinned_and_its_code_read_only_to_the_service() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11\.\d+-slim-bookworm$", dockerfile, re.M)
    copies = re.findall(r"^COPY .*$", dockerfile, re.M)
    assert not [c for c in copies if "--chown" in c], copies  # code and catalogs owned by root
    assert "PYTHONDONTWRITEBYTECODE=1" in dockerfile  # nothing written next to the code
    for cache in ("NLP_SERVE_ONNX_CACHE_DIR=/models", "NLP_SERVE_OPENVINO_CACHE_DIR=/models",
                  "HF_HOME=/models"):  # fmt: skip
        assert cache in dockerfile


def test_compose_file_matches_the_compose_spec() -> None:
    import jsonschema

    schema = json.loads((ROOT / "tests" / "fixtures" / "schemas" / "compose_spec.json").read_text())
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    jsonschema.validators.validator_for(schema)(schema).validate(compose)
    services = compose["services"]
    assert set(services) == {"nlp-serve", "prometheus", "grafana"}
    for name, service in services.items():
        assert service.get("restart"), name
        assert service.get("healthcheck"), name
    assert set(compose["volumes"]) == {"model-store", "prometheus-data", "grafana-data"}


def test_compose_is_locked_down_by_default() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    service = services["nlp-serve"]
    assert service["read_only"] is True
    assert "/tmp" in service["tmpfs"]
    assert service["cap_drop"] == ["ALL"]
    for name in ("prometheus", "grafana"):
        for port in services[name]["ports"]:
            assert port.startswith("${MONITORING_BIND:-127.0.0.1}:"), (name, port)
    password = services["grafana"]["environment"]["GF_SECURITY_ADMIN_PASSWORD"]
    assert password.startswith("${GRAFANA_ADMIN_PASSWORD:?"), password  # required, no default


def test_compose_mounts_and_build_context_exist() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith((".", "/")):
                assert (ROOT / source).exists(), f"{name} mounts {source}, which does not exist"
        build = service.get("build")
        if build:
            assert (ROOT / build["context"] / "Dockerfile").is_file()
            assert (ROOT / build["args"]["MODELS"]).is_file()


def test_dashboard_json_is_what_the_generator_writes() -> None:
    sys.path.insert(0, str(ROOT / "deploy" / "grafana"))
    try:
        import build_dashboard
    finally:
        sys.path.pop(0)
    committed = (ROOT / "deploy" / "grafana" / "dashboards" / "nlp-serve.json").read_text()
    assert committed == build_dashboard.render(), "run python deploy/grafana/build_dashboard.py"
    provisioned = yaml.safe_load(
        (ROOT / "deploy/grafana/provisioning/dashboards/nlp-serve.yml").read_text()
    )
    assert provisioned["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"
