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
    assert "SUCCESS: 7 rules found" in run(
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


GRAFANA_DIR = ROOT / "deploy" / "grafana"
# Labels every series may carry beyond its own: the scrape's, and Ray Serve's replica.
TARGET_LABELS = {"job", "instance", "replica"}
SELECTOR = re.compile(r"\b(nlp_serve_\w+)(?:\{([^}]*)\})?")
MATCHER = re.compile(r"(\w+)\s*(?:=~|!~|!=|=)")


def dashboard_panels() -> list[dict[str, Any]]:
    return list(json.loads((GRAFANA_DIR / "dashboards" / "nlp-serve.json").read_text())["panels"])


def exposed_series() -> dict[str, set[str]]:
    """Every series name app/metrics.py exposes, with the labels it may carry."""
    from prometheus_client.metrics import MetricWrapperBase

    from app import metrics

    suffixes = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_sum", "_count")}
    exposed: dict[str, set[str]] = {}
    for value in vars(metrics).values():
        if isinstance(value, MetricWrapperBase):
            (family,) = value.describe()
            labels = set(value._labelnames)  # no public accessor (app/metrics.py says so too)
            for suffix in suffixes[family.type]:
                exposed[family.name + suffix] = labels | ({"le"} if suffix == "_bucket" else set())
    # collectors that build their families at scrape time (GPU memory)
    source = (ROOT / "app" / "metrics.py").read_text()
    for name, labels in re.findall(
        r'GaugeMetricFamily\(\s*"(\w+)",.*?labels=\[([^\]]*)\]', source, re.S
    ):
        exposed[name] = set(re.findall(r'"(\w+)"', labels))
    return exposed


def test_dashboard_panels_have_unique_ids_and_do_not_overlap() -> None:
    panels = dashboard_panels()
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), ids
    taken: dict[tuple[int, int], str] = {}
    for p in panels:
        grid = p["gridPos"]
        assert min(grid["w"], grid["h"]) > 0, p["title"]
        assert min(grid["x"], grid["y"]) >= 0, p["title"]
        assert grid["x"] + grid["w"] <= 24, p["title"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in taken, f"{p['title']} overlaps {taken[x, y]}"
                taken[x, y] = p["title"]
    rows = [p for p in panels if p["type"] == "row"]
    assert [r["title"] for r in rows] == ["Text generation"]
    for r in rows:
        assert r["gridPos"] == {"h": 1, "w": 24, "x": 0, "y": r["gridPos"]["y"]}
        assert r["panels"] == []  # its panels follow it, open
        assert r["collapsed"] is False


def test_dashboard_panels_query_the_provisioned_datasource_with_units_and_legends() -> None:
    datasources = yaml.safe_load(
        (GRAFANA_DIR / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )["datasources"]
    (uid,) = [d["uid"] for d in datasources if d["type"] == "prometheus"]
    for p in dashboard_panels():
        if p["type"] == "row":
            assert "targets" not in p, p["title"]
            continue
        assert p["type"] == "timeseries", p["title"]
        assert p["datasource"] == {"type": "prometheus", "uid": uid}, p["title"]
        assert p["fieldConfig"]["defaults"]["unit"], p["title"]
        assert p["targets"], p["title"]
        assert len({t["refId"] for t in p["targets"]}) == len(p["targets"]), p["title"]
        for target in p["targets"]:
            assert target["expr"], (p["title"], target)
            assert target["legendFormat"], (p["title"], target)


def test_every_metric_charted_or_alerted_on_is_one_the_app_exposes() -> None:
    exposed = exposed_series()
    queries = [(p["title"], t["expr"]) for p in dashboard_panels() for t in p.get("targets", [])]
    for group in yaml.safe_load((PROMETHEUS_DIR / "alerts.yml").read_text())["groups"]:
        queries += [(rule["alert"], rule["expr"]) for rule in group["rules"]]
    for where, expr in queries:
        for name, matchers in SELECTOR.findall(expr):
            assert name in exposed, f"{where}: {name} is not a metric of app/metrics.py"
            unknown = set(MATCHER.findall(matchers)) - exposed[name] - TARGET_LABELS
            assert not unknown, f"{where}: {name} has no label {unknown}"


def test_every_model_metric_is_on_the_dashboard() -> None:
    from app import metrics

    charted = " ".join(t["expr"] for p in dashboard_panels() for t in p.get("targets", []))
    for metric in metrics.MODEL_METRICS:
        (family,) = metric.describe()
        assert re.search(rf"\b{family.name}(_total|_bucket)?\b", charted), family.name
    # the generation metrics sit under their row
    panels = dashboard_panels()
    (start,) = [i for i, p in enumerate(panels) if p["title"] == "Text generation"]
    generation = " ".join(t["expr"] for p in panels[start + 1 :] for t in p["targets"])
    for metric in (metrics.TIME_TO_FIRST_TOKEN, metrics.INTER_TOKEN_SECONDS,
                   metrics.GENERATED_TOKENS, metrics.SEQUENCES_RUNNING, metrics.SEQUENCES_WAITING,
                   metrics.KV_CACHE_TOKENS, metrics.KV_CACHE_CAPACITY,
                   metrics.SEQUENCES_FINISHED):  # fmt: skip
        (family,) = metric.describe()
        assert family.name in generation, family.name
    assert 'stage=~"prefill|decode_step"' in generation


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
                                    "PodDisruptionBudget", "ConfigMap", "RayService",
                                    "NetworkPolicy", "NetworkPolicy", "NetworkPolicy"])  # fmt: skip


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
    in_cluster = yaml.safe_load(rayservice["spec"]["serveConfigV2"])
    alone = serve_config()
    # the one difference: on a machine of its own the proxies stay on loopback; in the cluster
    # the Serve Service reaches them on the pods' addresses (behind the NetworkPolicy)
    assert alone["http_options"].pop("host") == "127.0.0.1"
    assert in_cluster["http_options"].pop("host") == "0.0.0.0"
    assert in_cluster == alone
    import ray

    assert rayservice["spec"]["rayClusterConfig"]["rayVersion"] == ray.__version__


# -- On the network: loopback by default, keys from a Secret, NetworkPolicies ----------------

LOOPBACK = "127.0.0.1"
KEY_SECRET = "nlp-serve-api-keys"
KEY_SETTINGS = ("NLP_SERVE_API_KEYS", "NLP_SERVE_ADMIN_API_KEYS")
RAY_NODE_TYPE = "ray.io/node-type"  # KubeRay labels every pod it makes: head or worker
NAMESPACE_NAME = "kubernetes.io/metadata.name"  # set by Kubernetes itself: cannot be borrowed


def compose_as_read_with_no_variables_set() -> dict[str, Any]:
    """docker-compose.yml with every ${NAME:-default} at its default (${NAME:?...} would stop
    compose; here it reads "set")."""
    text = (ROOT / "docker-compose.yml").read_text()
    text = re.sub(r"\$\{\w+:\?[^}]*\}", "set", text)
    text = re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", text)
    return dict(yaml.safe_load(re.sub(r"\$\{\w+\}", "", text)))


def test_compose_publishes_every_port_on_loopback_by_default() -> None:
    compose = compose_as_read_with_no_variables_set()
    published = [
        (name, port)
        for name, service in compose["services"].items()
        for port in service.get("ports", [])
    ]
    assert ("nlp-serve", f"{LOOPBACK}:8000:8000") in published
    for name, port in published:
        assert isinstance(port, str), (name, port)  # short syntax: the address is in the string
        assert port.count(":") == 2, (name, port)  # no port without an address: every interface
        assert port.split(":")[0] == LOOPBACK, (name, port)
    raw = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["nlp-serve"]
    assert raw["ports"] == ["${NLP_SERVE_PUBLISH_ADDRESS:-127.0.0.1}:8000:8000"]


def test_compose_passes_keys_and_allows_anonymous_use_only_on_loopback() -> None:
    raw = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["nlp-serve"]
    for name in KEY_SETTINGS:  # from the caller's environment, never written here
        assert raw["environment"][name] == "${" + name + ":-[]}", name
    env = compose_as_read_with_no_variables_set()["services"]["nlp-serve"]["environment"]
    assert json.loads(env["NLP_SERVE_API_KEYS"]) == []
    # the container listens on 0.0.0.0 (the image's NLP_SERVE_HOST), so with no keys it starts
    # only because anonymous use is allowed on purpose, which the loopback publish justifies
    assert "NLP_SERVE_HOST" not in env
    assert env["NLP_SERVE_ALLOW_ANONYMOUS"] == "true"
    text = (ROOT / "docker-compose.yml").read_text()
    assert "published on 127.0.0.1" in text  # the comment that says why
    # Prometheus scrapes /metrics with no key: it must stay public here
    assert str(env.get("NLP_SERVE_PROTECT_METRICS", "false")).lower() == "false"
    scrape = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())["scrape_configs"]
    (job,) = [j for j in scrape if j["job_name"] == "nlp-serve"]
    assert job["metrics_path"] == "/metrics"
    assert job["static_configs"][0]["targets"] == ["nlp-serve:8000"]


def test_image_listens_everywhere_and_never_allows_anonymous_use() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    instructions = "\n".join(
        line for line in dockerfile.splitlines() if not line.lstrip().startswith("#")
    )
    assert re.search(r"\bNLP_SERVE_HOST=0\.0\.0\.0\b", instructions)
    # a container started without keys refuses to start: intended; nor is a key baked in
    assert "NLP_SERVE_ALLOW_ANONYMOUS" not in instructions
    assert "NLP_SERVE_API_KEYS" not in instructions
    # the HEALTHCHECK asks a probe, which needs no key
    healthcheck = re.search(r"^HEALTHCHECK .*\\\n.*$", instructions, re.M)
    assert healthcheck
    assert re.search(r"http://127\.0\.0\.1:8000/(healthz|readyz)'", healthcheck.group(0))


def test_make_run_binds_loopback_and_the_readme_says_so() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^HOST \?= 127\.0\.0\.1$", makefile, re.M)
    assert "--host $(HOST)" in makefile
    assert "make run HOST=0.0.0.0" in makefile  # how to expose it, said where it is set
    readme = (ROOT / "README.md").read_text()
    first_block = readme.split("```bash\n", 1)[1].split("```", 1)[0]
    assert [line.split("#")[0].strip() for line in first_block.splitlines()] == [
        "make run",
        "make test",
    ]
    assert "127.0.0.1:8000" in first_block
    assert "0.0.0.0:8000" not in first_block


def assert_keys_from_the_secret(container: dict[str, Any]) -> None:
    env = {e["name"]: e for e in container.get("env", [])}
    for name in KEY_SETTINGS:
        assert "value" not in env[name], name  # never a key in a manifest
        assert env[name]["valueFrom"]["secretKeyRef"]["name"] == KEY_SECRET, name
    # without the client keys the pod does not start: never a start without keys
    assert env["NLP_SERVE_API_KEYS"]["valueFrom"]["secretKeyRef"].get("optional") is not True


def test_deployment_takes_its_keys_from_a_secret() -> None:
    pod = documents_of("Deployment")[0]["spec"]["template"]["spec"]
    for container in pod["containers"]:
        assert_keys_from_the_secret(container)
    # the Secret is created by hand, as the manifest says; none with keys in it is shipped
    assert not documents_of("Secret")
    text = (K8S_DIR / "nlp-serve.yaml").read_text()
    assert f"kubectl create secret generic {KEY_SECRET}" in text
    env = {e["name"]: e for e in pod["containers"][0]["env"]}
    for name in KEY_SETTINGS:
        assert f"--from-literal={env[name]['valueFrom']['secretKeyRef']['key']}=" in text
    # the probes ask the public routes on the main port
    container = pod["containers"][0]
    (port,) = container["ports"]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["path"] in ("/healthz", "/readyz"), probe
        assert container[probe]["httpGet"]["port"] in (port["name"], port["containerPort"])


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    assert not selector.get("matchExpressions"), selector  # kept to matchLabels here
    return all(labels.get(key) == value for key, value in selector.get("matchLabels", {}).items())


def ingress_rules_for(labels: dict[str, str]) -> list[dict[str, Any]]:
    """The ingress rules of every NetworkPolicy that selects a pod with these labels; asserts
    there is one (a pod no policy selects accepts every connection)."""
    policies = [
        policy["spec"]
        for policy in documents_of("NetworkPolicy")
        if selects(policy["spec"]["podSelector"], labels)
        and "Ingress" in policy["spec"].get("policyTypes", ["Ingress"])
    ]
    assert policies, f"no NetworkPolicy selects pods labelled {labels}"
    rules = [rule for policy in policies for rule in policy.get("ingress", [])]
    for rule in rules:
        assert rule.get("from"), f"a rule without `from` admits everyone: {rule}"
    return rules


def admits_port(rule: dict[str, Any], number: int, names: set[str]) -> bool:
    if not rule.get("ports"):
        return True  # no ports: every port
    for entry in rule["ports"]:
        port = entry.get("port")
        if port is None or port == number or port in names:
            return True
        if isinstance(port, int) and port <= number <= entry.get("endPort", port):
            return True
    return False


def assert_outside_peer(peer: dict[str, Any]) -> None:
    """A peer outside the namespace: named pods of a named namespace, never an address range
    or every pod of a namespace."""
    assert set(peer) == {"namespaceSelector", "podSelector"}, peer
    assert set(peer["namespaceSelector"]["matchLabels"]) == {NAMESPACE_NAME}, peer
    assert peer["podSelector"]["matchLabels"], peer


def test_a_network_policy_admits_only_the_gateway_and_prometheus_to_nlp_serve() -> None:
    template = documents_of("Deployment")[0]["spec"]["template"]
    (port,) = template["spec"]["containers"][0]["ports"]
    rules = ingress_rules_for(template["metadata"]["labels"])
    peers = []
    for rule in rules:
        assert rule.get("ports"), f"a rule without ports admits every port: {rule}"
        assert {p["port"] for p in rule["ports"]} <= {port["name"], port["containerPort"]}, rule
        for peer in rule["from"]:
            assert_outside_peer(peer)
            peers.append(peer)
    pods = [json.dumps(peer["podSelector"]["matchLabels"]) for peer in peers]
    assert any("prometheus" in p for p in pods), pods  # /metrics is still scraped
    assert any("prometheus" not in p for p in pods), pods  # the gateway


def ray_pod_labels() -> list[dict[str, str]]:
    """The labels of the head's pods, then each worker group's: the template's and KubeRay's."""
    cluster = documents_of("RayService")[0]["spec"]["rayClusterConfig"]
    head = cluster["headGroupSpec"]["template"]["metadata"]["labels"]
    return [
        {**head, RAY_NODE_TYPE: "head"},
        *(
            {**group["template"]["metadata"]["labels"], RAY_NODE_TYPE: "worker"}
            for group in cluster["workerGroupSpecs"]
        ),
    ]


def is_own_ray_pods(peer: dict[str, Any]) -> bool:
    """The peer is the cluster's own Ray pods: same namespace, every Ray pod, no other pod."""
    deployment = documents_of("Deployment")[0]["spec"]["template"]["metadata"]["labels"]
    return (
        set(peer) == {"podSelector"}
        and all(selects(peer["podSelector"], labels) for labels in ray_pod_labels())
        and not selects(peer["podSelector"], deployment)
    )


def test_ray_pods_are_never_taken_for_nlp_serve_pods() -> None:
    # the Deployment's Service, PodDisruptionBudget and NetworkPolicy select app: nlp-serve
    selectors = [documents_of("Service")[0]["spec"]["selector"]]
    selectors.append(documents_of("PodDisruptionBudget")[0]["spec"]["selector"]["matchLabels"])
    deployment = documents_of("Deployment")[0]["spec"]["template"]["metadata"]["labels"]
    for policy in documents_of("NetworkPolicy"):
        if selects(policy["spec"]["podSelector"], deployment):
            selectors.append(policy["spec"]["podSelector"]["matchLabels"])
    for labels in ray_pod_labels():
        for selector in selectors:
            assert not selects({"matchLabels": selector}, labels), (selector, labels)


def test_ray_replicas_take_their_keys_from_the_same_secret() -> None:
    cluster = documents_of("RayService")[0]["spec"]["rayClusterConfig"]
    for group in [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]:
        for container in group["template"]["spec"]["containers"]:
            assert_keys_from_the_secret(container)


def test_only_the_clusters_own_ray_pods_reach_gcs_and_rays_internal_ports() -> None:
    head, *workers = ray_pod_labels()
    # from outside the cluster's own pods: the Serve proxies (8000, the gateway), metrics (8080,
    # Prometheus) and, on the head only, the dashboard (8265, the KubeRay operator)
    for labels, public in [(head, {8000, 8080, 8265}), *((w, {8000, 8080}) for w in workers)]:
        serve_from_outside = False
        for rule in ingress_rules_for(labels):
            outside = [peer for peer in rule["from"] if not is_own_ray_pods(peer)]
            if not outside:
                continue
            assert rule.get("ports"), f"every port from outside the Ray pods: {rule}"
            assert {p["port"] for p in rule["ports"]} <= public, rule
            for peer in outside:
                assert_outside_peer(peer)
            serve_from_outside |= admits_port(rule, 8000, {"serve"})
        assert serve_from_outside, f"the gateway cannot reach the proxies of {labels}"
    # the head's GCS: from the Ray pods only, and they do reach it
    gcs = [rule for rule in ingress_rules_for(head) if admits_port(rule, 6379, {"gcs"})]
    assert gcs
    for rule in gcs:
        assert all(is_own_ray_pods(peer) for peer in rule["from"]), rule


def test_ray_dashboard_is_reachable_only_by_the_kuberay_operator() -> None:
    head = documents_of("RayService")[0]["spec"]["rayClusterConfig"]["headGroupSpec"]
    (container,) = head["template"]["spec"]["containers"]
    # The KubeRay operator deploys serveConfigV2 and reads the applications' status through the
    # dashboard, at the head Service's port named `dashboard`: it must be declared, and listen
    # on the pod's address (on 127.0.0.1 no Serve application would ever be deployed)
    assert {p["name"]: p["containerPort"] for p in container["ports"]}["dashboard"] == 8265
    assert head["rayStartParams"]["dashboard-host"] == "0.0.0.0"
    head_labels, *_ = ray_pod_labels()
    dashboard = [r for r in ingress_rules_for(head_labels) if admits_port(r, 8265, {"dashboard"})]
    operator = []
    for rule in dashboard:
        for peer in rule["from"]:
            if is_own_ray_pods(peer):
                continue
            assert_outside_peer(peer)
            assert peer["podSelector"]["matchLabels"] == {
                "app.kubernetes.io/component": "kuberay-operator"
            }, peer
            operator.append(peer)
    assert operator, "the KubeRay operator cannot reach the dashboard"


# -- gRPC on Kubernetes: deploy/k8s/grpc/ patches nlp-serve.yaml ------------------------------

GRPC_PATCH_DIR = K8S_DIR / "grpc"
GRPC_PATCHED_KINDS = {"Deployment", "Service", "NetworkPolicy"}
# Kubernetes' strategic merge keys (k8s.io/api's patchMergeKey) of the lists these patches
# touch; any other list is replaced whole, as the API server does with a list that has none
# (a NetworkPolicy's ingress, a rule's ports).
MERGE_KEYS = {
    ("spec", "template", "spec", "containers"): "name",
    ("spec", "template", "spec", "containers", "env"): "name",
    ("spec", "template", "spec", "containers", "ports"): "containerPort",
    ("spec", "ports"): "port",  # a Service's
}
PROBE_HANDLERS = {"exec", "httpGet", "tcpSocket", "grpc"}


def strategic_merge(
    base: dict[str, Any], patch: dict[str, Any], path: tuple[str, ...] = ()
) -> dict[str, Any]:
    """`patch` applied to `base` as `kubectl patch --type strategic` does, for what these
    patches use: maps merge, null deletes, lists merge by MERGE_KEYS or are replaced."""
    merged = dict(base)
    for key, value in patch.items():
        assert not key.startswith("$"), f"patch directive {key} at {path}: not handled here"
        where = (*path, key)
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = strategic_merge(merged[key], value, where)
        elif isinstance(value, list) and where in MERGE_KEYS and key in merged:
            merge_key = MERGE_KEYS[where]
            items = list(merged[key])
            for item in value:
                at = [i for i, old in enumerate(items) if old[merge_key] == item[merge_key]]
                if at:
                    items[at[0]] = strategic_merge(items[at[0]], item, where)
                else:
                    items.append(item)
            merged[key] = items
        else:
            merged[key] = value
    return merged


def grpc_patched() -> dict[str, dict[str, Any]]:
    """nlp-serve.yaml's objects with deploy/k8s/grpc/'s patches applied, by kind."""
    manifest = (K8S_DIR / "nlp-serve.yaml").read_text()
    base = {doc["kind"]: doc for doc in yaml.safe_load_all(manifest)}
    patched = {}
    for path in sorted(GRPC_PATCH_DIR.glob("*.yaml")):
        (patch,) = list(yaml.safe_load_all(path.read_text()))
        target = base[patch["kind"]]  # an object of the base, by kind and name
        assert (patch["apiVersion"], patch["metadata"]["name"]) == (
            target["apiVersion"], target["metadata"]["name"]), path.name  # fmt: skip
        assert path.stem == patch["kind"].lower(), path.name  # `kubectl patch <kind>` in the loop
        patched[patch["kind"]] = strategic_merge(target, patch)
    assert set(patched) == GRPC_PATCHED_KINDS
    return patched


def test_strategic_merge_merges_by_key_deletes_null_and_replaces_other_lists() -> None:
    probe = {"httpGet": {"path": "/"}, "periodSeconds": 5}
    base = {
        "spec": {"ports": [{"port": 80, "name": "http"}], "ingress": [{"a": 1}], "probe": probe}
    }
    patch = {
        "spec": {
            "ports": [{"port": 81, "name": "grpc"}, {"port": 80, "appProtocol": "x"}],
            "ingress": [{"b": 2}],
            "probe": {"httpGet": None, "grpc": {"port": 81}},
        }
    }
    assert strategic_merge(base, patch) == {
        "spec": {
            "ports": [
                {"port": 80, "name": "http", "appProtocol": "x"},
                {"port": 81, "name": "grpc"},
            ],
            "ingress": [{"b": 2}],
            "probe": {"periodSeconds": 5, "grpc": {"port": 81}},
        }
    }


def test_grpc_is_off_in_the_default_manifest() -> None:
    container = documents_of("Deployment")[0]["spec"]["template"]["spec"]["containers"][0]
    assert "NLP_SERVE_GRPC_PORT" not in {e["name"] for e in container["env"]}
    assert [p["name"] for p in container["ports"]] == ["http"]
    assert [p["name"] for p in documents_of("Service")[0]["spec"]["ports"]] == ["http"]
    # the patches are not manifests of their own: every manifest test reads deploy/k8s/*.yaml
    assert not [where for where, _ in k8s_documents() if where.startswith("grpc")]


def test_grpc_patches_give_valid_manifests() -> None:
    for kind, doc in grpc_patched().items():
        validate_core(doc)  # strict: a misspelt field in a patch fails here
        if kind == "Deployment":
            for container in doc["spec"]["template"]["spec"]["containers"]:
                assert_keys_from_the_secret(container)
                for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                    # the schema cannot say it: a probe has exactly one handler
                    assert len(PROBE_HANDLERS & set(container[probe])) == 1, (probe, container)


def test_grpc_listens_where_the_probe_and_the_service_look() -> None:
    from app.grpc_server import HEALTH_SERVICE, PROBE_METHODS, SERVICE
    from app.settings import Settings

    patched = grpc_patched()
    (container,) = patched["Deployment"]["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in container["env"]}
    port = int(env["NLP_SERVE_GRPC_PORT"]["value"])
    assert Settings(grpc_port=port, _env_file=None).grpc_port == port  # type: ignore[call-arg]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": 8000, "grpc": port}
    # readiness: gRPC health, natively, on that port (a number: grpc probes take no names), for
    # a service the server's health answers, with no key (the kubelet sends no metadata)
    readiness = container["readinessProbe"]
    assert set(readiness) & PROBE_HANDLERS == {"grpc"}
    assert readiness["grpc"]["port"] == port
    assert readiness["grpc"].get("service", "") in ("", SERVICE)
    assert f"/{HEALTH_SERVICE}/Check" in PROBE_METHODS
    # liveness and startup stay on HTTP's probes, which never depend on gRPC
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["startupProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    service = {p["name"]: p for p in patched["Service"]["spec"]["ports"]}
    assert service["http"] == documents_of("Service")[0]["spec"]["ports"][0]  # unchanged
    assert service["grpc"]["targetPort"] in ("grpc", port)
    assert service["grpc"]["appProtocol"] == "grpc"


def test_grpc_is_admitted_from_the_gateway_and_http_stays_as_it_was() -> None:
    labels = documents_of("Deployment")[0]["spec"]["template"]["metadata"]["labels"]
    base_rules = ingress_rules_for(labels)
    policy = grpc_patched()["NetworkPolicy"]["spec"]
    assert selects(policy["podSelector"], labels)
    assert policy["policyTypes"] == ["Ingress"]
    container = grpc_patched()["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}

    def peers(rules: list[dict[str, Any]], name: str) -> list[str]:
        admitted = [rule for rule in rules if admits_port(rule, ports[name], {name})]
        return sorted(
            json.dumps(peer, sort_keys=True) for rule in admitted for peer in rule["from"]
        )

    for rule in policy["ingress"]:
        assert rule.get("ports"), f"a rule without ports admits every port: {rule}"
        assert {p["port"] for p in rule["ports"]} <= {*ports, *ports.values()}, rule
        for peer in rule["from"]:
            assert_outside_peer(peer)
    assert peers(policy["ingress"], "http") == peers(base_rules, "http")  # nobody gained or lost
    gateway = [p for p in peers(base_rules, "http") if "prometheus" not in p]
    assert gateway, "the base admits a gateway"
    # gRPC: the gateway, as for HTTP; Prometheus scrapes /metrics over HTTP only
    assert peers(policy["ingress"], "grpc") == gateway
