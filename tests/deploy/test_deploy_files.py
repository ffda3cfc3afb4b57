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
from typing import Any

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
                  "NLP_SERVE_AUTO_CACHE_DIR=/models", "HF_HOME=/models"):  # fmt: skip
        assert cache in dockerfile
    # the build bakes every export the catalog needs, ONNX and OpenVINO alike, and the `auto`
    # decisions made on the build machine's CPU
    assert 'nlp-serve pull --models "$NLP_SERVE_MODELS" --export;' in dockerfile


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


# -- Kubernetes and Ray Serve (issue 15) -------------------------------------------------------

K8S_DIR = ROOT / "deploy" / "k8s"
K8S_VERSION = "1.37.0"  # the newest schemas kubernetes-validate 1.37.0 ships (offline)


def k8s_documents() -> list[tuple[str, dict[str, Any]]]:
    return [
        (f"{path.name}#{index}", doc)
        for path in sorted(K8S_DIR.glob("*.yaml"))
        for index, doc in enumerate(yaml.safe_load_all(path.read_text()))
        if doc
    ]


def documents_of(kind: str) -> list[dict[str, Any]]:
    return [doc for _, doc in k8s_documents() if doc["kind"] == kind]


def validate_core(doc: dict[str, Any]) -> None:
    """Against the Kubernetes schemas shipped in kubernetes-validate (strict: no unknown
    fields); never the network."""
    import kubernetes_validate

    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_every_k8s_manifest_matches_its_schema() -> None:
    import jsonschema

    rayservice_schema = json.loads(
        (ROOT / "tests" / "fixtures" / "schemas" / "kuberay_rayservice_v1.json").read_text()
    )
    kinds = []
    for where, doc in k8s_documents():
        kinds.append(doc["kind"])
        if doc["apiVersion"] == "ray.io/v1":
            jsonschema.Draft7Validator(rayservice_schema).validate(doc)
            cluster = doc["spec"]["rayClusterConfig"]
            for group in [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]:
                # the pruned CRD leaves pod templates to the Kubernetes schema
                template = {"metadata": {"name": where}, "template": group["template"]}
                validate_core({"apiVersion": "v1", "kind": "PodTemplate", **template})
        else:
            validate_core(doc)
    assert sorted(kinds) == sorted(["Deployment", "Service", "HorizontalPodAutoscaler",
                                    "PodDisruptionBudget", "ConfigMap", "RayService"])  # fmt: skip


def test_k8s_validation_catches_a_wrong_manifest() -> None:
    import jsonschema
    import kubernetes_validate

    deployment = documents_of("Deployment")[0]
    wrong = json.loads(json.dumps(deployment))
    wrong["spec"]["template"]["spec"]["containers"][0]["securityContext"]["readOnlyRootFS"] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        validate_core(wrong)
    rayservice = json.loads(json.dumps(documents_of("RayService")[0]))
    rayservice["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["replicas"] = "two"
    schema = json.loads(
        (ROOT / "tests" / "fixtures" / "schemas" / "kuberay_rayservice_v1.json").read_text()
    )
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft7Validator(schema).validate(rayservice)


def test_deployment_is_hardened_and_drains_before_it_stops() -> None:
    from app.settings import Settings

    pod = documents_of("Deployment")[0]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    # what the app writes goes to a mounted volume, never the read-only root
    assert {m["mountPath"] for m in container["volumeMounts"]} == {"/tmp"}
    # thread settings follow the CPU limit, which is set
    env = {e["name"]: e for e in container["env"]}
    for name in ("NLP_SERVE_TORCH_THREADS", "OMP_NUM_THREADS"):
        field = env[name]["valueFrom"]["resourceFieldRef"]
        assert field["resource"] == "limits.cpu"
        assert field["containerName"] == container["name"]
    assert container["resources"]["limits"]["cpu"]
    # exports are baked into the image's /models and read from there: a cache dir moved
    # elsewhere would make every pod export (and import torch) at start-up
    assert not [name for name in env if name.endswith("_CACHE_DIR")]
    # endpoints go before the listener closes; a request admitted last still finishes
    pre_stop_s = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert pre_stop_s > 0
    timeout_ms = int(env["NLP_SERVE_REQUEST_TIMEOUT_MS"]["value"])
    assert timeout_ms == Settings.model_fields["request_timeout_ms"].default
    drain_s = Settings.model_fields["drain_seconds"].default  # SIGTERM: /readyz 503, still serving
    assert pod["terminationGracePeriodSeconds"] > pre_stop_s + drain_s + timeout_ms / 1000
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"


def test_hpa_scales_on_the_queue_depth_the_adapter_serves() -> None:
    from app import metrics

    hpa = documents_of("HorizontalPodAutoscaler")[0]["spec"]
    deployment = documents_of("Deployment")[0]
    assert hpa["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    (metric,) = hpa["metrics"]
    assert metric["type"] == "Pods"
    name = metric["pods"]["metric"]["name"]
    adapter = yaml.safe_load(documents_of("ConfigMap")[0]["data"]["config.yaml"])
    (rule,) = adapter["rules"]
    assert rule["name"]["as"] == name
    assert re.fullmatch(rule["name"]["matches"], name)
    assert rule["seriesQuery"].startswith(metrics.QUEUE_DEPTH._name + "{")
    assert set(rule["resources"]["overrides"]) == {"namespace", "pod"}
    assert "<<.Series>>" in rule["metricsQuery"]
    assert "<<.LabelMatchers>>" in rule["metricsQuery"]
    assert hpa["minReplicas"] >= 2  # the PodDisruptionBudget below can then be honoured
    pdb = documents_of("PodDisruptionBudget")[0]["spec"]
    assert pdb["selector"] == deployment["spec"]["selector"]
    assert pdb["minAvailable"] < hpa["minReplicas"]


def serve_config() -> dict[str, Any]:
    return dict(yaml.safe_load((ROOT / "deploy" / "ray" / "serve.yaml").read_text()))


def test_ray_serve_config_is_valid_and_sized_for_batching() -> None:
    from ray.serve.schema import DeploymentSchema, ServeDeploySchema

    from app.ray_serve import build
    from app.registry.catalog import load_catalog
    from app.settings import Settings

    config = serve_config()
    ServeDeploySchema.model_validate(config)
    (application,) = config["applications"]
    assert application["import_path"] == "app.ray_serve:build"
    assert callable(build)
    (deployment,) = application["deployments"]
    # Ray's schema ignores unknown keys: a typo would pass silently
    assert set(deployment) <= set(DeploymentSchema.model_fields), set(deployment)
    DeploymentSchema.model_validate(deployment)
    catalog = load_catalog(ROOT / application["args"]["models"].removeprefix("/app/"))
    largest_batch = max(spec.batching.max_batch_size for spec in catalog.models)
    assert deployment["max_ongoing_requests"] >= 2 * largest_batch
    autoscaling = deployment["autoscaling_config"]
    assert autoscaling["target_ongoing_requests"] <= deployment["max_ongoing_requests"]
    assert autoscaling["min_replicas"] <= autoscaling["initial_replicas"]
    assert autoscaling["initial_replicas"] <= autoscaling["max_replicas"]
    actor = deployment["ray_actor_options"]
    env = actor["runtime_env"]["env_vars"]
    assert int(env["NLP_SERVE_TORCH_THREADS"]) == actor["num_cpus"]
    assert int(env["OMP_NUM_THREADS"]) == actor["num_cpus"]
    timeout_s = config["http_options"]["request_timeout_s"]
    assert timeout_s * 1000 > Settings.model_fields["request_timeout_ms"].default


def test_rayservice_runs_the_same_serve_config() -> None:
    rayservice = documents_of("RayService")[0]
    assert yaml.safe_load(rayservice["spec"]["serveConfigV2"]) == serve_config()
    import ray

    assert rayservice["spec"]["rayClusterConfig"]["rayVersion"] == ray.__version__
