"""The Helm chart: lint and render every CI scenario, validate the manifests offline against
the Kubernetes API schemas, and check what they promise about the relay.

helm comes from scripts/get-helm (go install through the Go module proxy, then cached);
kubeconform and its schemas from scripts/get-kubeconform (the Kubernetes schemas from the
kubernetes-validate wheel on PyPI, the ServiceMonitor/PrometheusRule CRDs from the
prometheus-operator Go module). Nothing is downloaded once the cache is warm. A cold first run
builds helm (a few minutes on 2 cores): `make test` has scripts/get-tools do that beside the
suite, and these tests (marked needs_tool) run last, so a cold build stays out of test timings.
"""

from __future__ import annotations

import base64
import functools
import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from relay import config as relay_config
from tests.chart import (
    CHART,
    REPO,
    Manifest,
    fetch_tool,
    helm,
    helm_home,
    kinds,
    only,
    parse,
    pod_volumes,
    relay_config_map,
    relay_container,
    relay_pod,
    render,
    render_text,
    rendered_relay_config,
    template_args,
)

SCENARIOS = sorted(path.name for path in (CHART / "ci").glob("*-values.yaml"))
# The oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and the newest with schemas.
KUBE_VERSIONS = ("1.27.0", "1.37.0")
SECRET_DIR = "/etc/whatsapp-relay/secrets"
# Distinctive values for every secret the chart handles, to hunt for them in the output.
SENTINELS = {
    "secrets.bearerTokens[0]": "sentinel-bearer-token-7f3a9c",
    "secrets.bearerTokens[1]": "sentinel-bearer-token-rotated-51d2",
    "secrets.appSecrets[0]": "sentinel-app-secret-c0ffee",
    "secrets.verifyToken": "sentinel-verify-token-e4b8",
    "secrets.kafkaSaslPassword": "sentinel-sasl-password-9d1e",
}

# A cold helm build takes minutes; every helm/kubeconform call below has its own bound too.
pytestmark = [pytest.mark.timeout(1200), pytest.mark.needs_tool("helm", "kubeconform")]

# --- tools -------------------------------------------------------------------------------


@functools.cache
def kubeconform_binary() -> str:
    return fetch_tool("get-kubeconform")


def kubeconform(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """scripts/kubeconform: strict, offline, with the cached Kubernetes and CRD schemas."""
    kubeconform_binary()  # fetch (once) with this interpreter's pip
    return subprocess.run(
        [str(REPO / "scripts" / "kubeconform"), *map(str, args)],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )


@pytest.fixture(scope="session")
def helm_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return helm_home(tmp_path_factory.mktemp("helm-home"))


def install_notes(env: dict[str, str], *values_files: str, **kwargs: Any) -> str:
    """NOTES.txt as `helm install` prints it; --dry-run=client needs no cluster."""
    args = template_args(*values_files, **kwargs)
    result = helm(env, "install", *args[1:], "--dry-run=client")
    return result.stdout.split("NOTES:", 1)[1]


def render_error(env: dict[str, str], *values_files: str, **kwargs: Any) -> str:
    result = helm(env, *template_args(*values_files, **kwargs), check=False)
    assert result.returncode != 0, "expected helm template to fail"
    return result.stderr


@pytest.fixture(scope="session")
def rendered(helm_env: dict[str, str]) -> dict[str, list[Manifest]]:
    return {scenario: render(helm_env, scenario) for scenario in SCENARIOS}


# --- helpers over manifests ----------------------------------------------------------------


def container_ports(container: Manifest) -> dict[str, int]:
    return {port["name"]: port["containerPort"] for port in container["ports"]}


def mounted_files(manifests: list[Manifest]) -> dict[str, tuple[str, str]]:
    """Container path -> (volume kind, name of the Secret/ConfigMap) for every projected key."""
    volumes = pod_volumes(manifests)
    files: dict[str, tuple[str, str]] = {}
    for mount in relay_container(manifests)["volumeMounts"]:
        volume = volumes[mount["name"]]
        for kind, name_key in (("secret", "secretName"), ("configMap", "name")):
            if kind in volume:
                source = volume[kind]
                for item in source.get("items", []):
                    path = str(PurePosixPath(mount["mountPath"]) / item["path"])
                    files[path] = (kind, source[name_key])
    return files


def walk_strings(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield str(key)
            yield from walk_strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from walk_strings(item)
    elif node is not None:
        yield str(node)


# --- lint, render, schemas -----------------------------------------------------------------


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_helm_lint(helm_env: dict[str, str], scenario: str) -> None:
    result = helm(
        helm_env, "lint", str(CHART), "--strict", "--values", str(CHART / "ci" / scenario)
    )
    assert "0 chart(s) failed" in result.stdout


def test_every_documented_scenario_exists() -> None:
    assert set(SCENARIOS) == {
        "minimal-values.yaml",
        "production-values.yaml",
        "external-kafka-sasl-values.yaml",
        "existing-secret-values.yaml",
        "spool-values.yaml",
    }


def test_validated_kubernetes_versions_match_the_chart() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text(encoding="utf-8"))
    oldest = re.fullmatch(r">=\s*(\d+\.\d+\.\d+)(-0)?", chart["kubeVersion"])
    assert oldest
    assert oldest.group(1) == KUBE_VERSIONS[0]


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_manifests_match_the_kubernetes_api_schemas(
    helm_env: dict[str, str], tmp_path: Path, scenario: str, kube_version: str
) -> None:
    manifests = tmp_path / "manifests.yaml"
    manifests.write_text(
        helm(helm_env, *template_args(scenario), "--kube-version", kube_version).stdout,
        encoding="utf-8",
    )
    result = kubeconform(
        "-kubernetes-version", kube_version, "-output", "json", "-summary", manifests
    )
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads(result.stdout)["summary"]
    # Every kind, the CRDs included, had a schema: nothing skipped, nothing unvalidated.
    assert summary["errors"] == 0, result.stdout
    assert summary["invalid"] == 0, result.stdout
    assert summary["skipped"] == 0, result.stdout
    assert summary["valid"] == len(parse(manifests.read_text(encoding="utf-8")))


def test_schema_validation_catches_a_bad_manifest(helm_env: dict[str, str], tmp_path: Path) -> None:
    text = render_text(helm_env, "production-values.yaml").replace(
        "scrapeTimeout:", "scrapeTimeoutTypo:"
    )
    bad = tmp_path / "bad.yaml"
    bad.write_text(text.replace("containerPort: 8081", 'containerPort: "8081"'), encoding="utf-8")
    result = kubeconform("-kubernetes-version", KUBE_VERSIONS[-1], bad)
    assert result.returncode != 0
    assert "ServiceMonitor" in result.stdout
    assert "Deployment" in result.stdout


# --- the relay's contract --------------------------------------------------------------------


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_rendered_config_is_valid_for_the_relay(
    rendered: dict[str, list[Manifest]], scenario: str
) -> None:
    """The relay's own loader accepts the ConfigMap, with every file it names mounted."""
    manifests = rendered[scenario]
    files = mounted_files(manifests)
    read: list[str] = []

    def read_file(path: Path) -> str:
        assert str(path) in files, f"config names {path}, which no volume provides"
        read.append(str(path))
        return "value-1\nvalue-2\n" if str(path).endswith("s") else "value"

    text = relay_config_map(manifests)["data"]["relay.yaml"]
    settings = relay_config.parse(text, {}, read_file=read_file)
    for path in (
        settings.kafka.ssl_cafile,
        settings.kafka.ssl_certfile,
        settings.kafka.ssl_keyfile,
    ):
        if path is not None:
            assert str(path) in files, f"{path} is not mounted"
    # Every secret file mounted is also used; nothing is mounted for show.
    assert {p for p in files if p.startswith(SECRET_DIR)} == set(read)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_the_relay_is_started_with_the_rendered_config(
    rendered: dict[str, list[Manifest]], scenario: str
) -> None:
    manifests = rendered[scenario]
    container = relay_container(manifests)
    assert "command" not in container, "the image's exec-form ENTRYPOINT must stay PID 1"
    assert container["args"][:2] == ["serve", "--config"]
    config_path = PurePosixPath(container["args"][2])
    pod = relay_pod(manifests)
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == str(config_path.parent)]
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    assert volume["configMap"]["name"] == relay_config_map(manifests)["metadata"]["name"]
    assert config_path.name in relay_config_map(manifests)["data"]


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_probes_point_at_the_relay_health_endpoints(
    rendered: dict[str, list[Manifest]], scenario: str
) -> None:
    manifests = rendered[scenario]
    container = relay_container(manifests)
    ports = container_ports(container)
    admin_port = rendered_relay_config(manifests)["admin"]["port"]
    expected = {
        "livenessProbe": "/healthz",  # never depends on Kafka
        "startupProbe": "/healthz",
        "readinessProbe": "/readyz",  # Kafka reachable, topics exist, not shutting down
    }
    for probe, path in expected.items():
        get = container[probe]["httpGet"]
        assert get["path"] == path
        assert ports[get["port"]] == admin_port, f"{probe} must use the admin listener"


@pytest.mark.parametrize(
    "sets",
    [{}, {"config.server.port": "9000", "config.admin.port": "9100"}],
    ids=["default-ports", "custom-ports"],
)
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_ports_match_the_rendered_config(
    helm_env: dict[str, str], scenario: str, sets: dict[str, str]
) -> None:
    manifests = render(helm_env, scenario, sets=sets)
    config = rendered_relay_config(manifests)
    ports = container_ports(relay_container(manifests))
    assert ports == {"http": config["server"]["port"], "admin": config["admin"]["port"]}
    if sets:
        assert ports == {"http": 9000, "admin": 9100}
    assert config["server"]["host"] == config["admin"]["host"] == "0.0.0.0"

    service = only(manifests, "Service")
    service_ports = {port["name"]: port for port in service["spec"]["ports"]}
    assert set(service_ports) == {"http", "admin"}
    for name, port in service_ports.items():
        assert port["targetPort"] == name, "targets the container port of the same name"

    for ingress in (m for m in manifests if m["kind"] == "Ingress"):
        for rule in ingress["spec"]["rules"]:
            (path,) = rule["http"]["paths"]
            assert path["path"] == config["server"]["path"], "the webhook path only"
            assert path["backend"]["service"]["name"] == service["metadata"]["name"]
            assert path["backend"]["service"]["port"]["name"] == "http"
    for monitor in (m for m in manifests if m["kind"] == "ServiceMonitor"):
        (endpoint,) = monitor["spec"]["endpoints"]
        assert endpoint["port"] == "admin"
        assert endpoint["path"] == "/metrics"
    for policy in (m for m in manifests if m["kind"] == "NetworkPolicy"):
        allowed = {p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"]}
        assert allowed == {"http", "admin"}


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_graceful_shutdown_fits_in_the_grace_period(
    rendered: dict[str, list[Manifest]], scenario: str
) -> None:
    manifests = rendered[scenario]
    pod = relay_pod(manifests)
    container = relay_container(manifests)
    command = container["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    shutdown = rendered_relay_config(manifests)["shutdown"]
    needed = float(command[1]) + shutdown["drain_seconds"] + shutdown["timeout_seconds"]
    assert pod["terminationGracePeriodSeconds"] > needed


def test_grace_period_is_computed_by_default(rendered: dict[str, list[Manifest]]) -> None:
    pod = only(rendered["minimal-values.yaml"], "Deployment")["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] == 5 + 0 + 10 + 5


def test_too_short_grace_period_fails(helm_env: dict[str, str]) -> None:
    error = render_error(
        helm_env, "minimal-values.yaml", sets={"terminationGracePeriodSeconds": "15"}
    )
    assert "terminationGracePeriodSeconds (15) must be above" in error


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_restricted_security_context(rendered: dict[str, list[Manifest]], scenario: str) -> None:
    manifests = rendered[scenario]
    pod = relay_pod(manifests)
    container = relay_container(manifests)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    context = container["securityContext"]
    assert context["allowPrivilegeEscalation"] is False
    assert context["readOnlyRootFilesystem"] is True
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    pod_tmp = "/tmp"  # noqa: S108 (the pod's /tmp, not a temporary file here)
    (tmp,) = [m for m in container["volumeMounts"] if m["mountPath"] == pod_tmp]
    (volume,) = [v for v in pod["volumes"] if v["name"] == tmp["name"]]
    assert "emptyDir" in volume


def test_resources_unset_by_default(rendered: dict[str, list[Manifest]]) -> None:
    assert "resources" not in relay_container(rendered["minimal-values.yaml"])
    assert relay_container(rendered["production-values.yaml"])["resources"]["requests"]


def test_optional_resources_are_off_by_default(rendered: dict[str, list[Manifest]]) -> None:
    manifests = rendered["minimal-values.yaml"]
    assert kinds(manifests) == ["ConfigMap", "Deployment", "Secret", "Service", "ServiceAccount"]
    pod = relay_pod(manifests)
    assert "topologySpreadConstraints" not in pod


def test_production_scenario_turns_everything_on(rendered: dict[str, list[Manifest]]) -> None:
    manifests = rendered["production-values.yaml"]
    assert kinds(manifests) == [
        "ConfigMap",
        "ConfigMap",
        "Deployment",
        "HorizontalPodAutoscaler",
        "Ingress",
        "NetworkPolicy",
        "PodDisruptionBudget",
        "PrometheusRule",
        "Service",
        "ServiceAccount",
        "ServiceMonitor",
    ]
    deployment = only(manifests, "Deployment")
    assert "replicas" not in deployment["spec"], "the HPA owns the replica count"
    assert deployment["spec"]["template"]["spec"]["topologySpreadConstraints"]
    ingress = only(manifests, "Ingress")
    assert ingress["spec"]["tls"][0]["hosts"] == ["relay.example.com"]
    body_limit = ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-body-size"]
    max_body = rendered_relay_config(manifests)["server"]["max_body_bytes"]
    assert int(body_limit.removesuffix("m")) * 1024 * 1024 >= max_body
    # A pod refuses readiness until no topic lets a 200 rest on a single replica.
    assert rendered_relay_config(manifests)["kafka"]["require_durable_topics"] is True
    assert rendered_relay_config(manifests)["topics"]["min_insync_replicas"] == 2


def test_prometheus_rule_carries_the_alerts_file(rendered: dict[str, list[Manifest]]) -> None:
    rule = only(rendered["production-values.yaml"], "PrometheusRule")
    alerts = yaml.safe_load((CHART / "files" / "alerts.yaml").read_text(encoding="utf-8"))
    assert rule["spec"]["groups"] == alerts["groups"]
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"


def test_dashboard_config_map_has_the_sidecar_label(rendered: dict[str, list[Manifest]]) -> None:
    (dashboard,) = [
        m
        for m in rendered["production-values.yaml"]
        if m["kind"] == "ConfigMap" and m["metadata"]["name"].endswith("-dashboard")
    ]
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert dashboard["metadata"]["annotations"]["grafana_folder"] == "WhatsApp"
    (content,) = dashboard["data"].values()
    shipped = json.loads((CHART / "files" / "dashboard.json").read_text(encoding="utf-8"))
    assert json.loads(content) == shipped


def test_config_change_rolls_the_pods(helm_env: dict[str, str]) -> None:
    def annotations(**sets: str) -> dict[str, str]:
        manifests = render(helm_env, "minimal-values.yaml", sets=sets)
        result: dict[str, str] = only(manifests, "Deployment")["spec"]["template"]["metadata"][
            "annotations"
        ]
        return result

    before = annotations()
    assert annotations() == before, "rendering is deterministic"
    changed = annotations(**{"config.log.level": "DEBUG"})
    assert changed["checksum/config"] != before["checksum/config"]
    rotated = annotations(**{"secrets.bearerTokens[0]": "another-token"})
    assert rotated["checksum/secret"] != before["checksum/secret"]


# --- secrets ---------------------------------------------------------------------------------


def test_no_secret_value_appears_outside_secrets(helm_env: dict[str, str]) -> None:
    sets = {
        **SENTINELS,
        "config.kafka.security_protocol": "SASL_SSL",
        "config.kafka.sasl_username": "relay-user",
    }
    manifests = render(helm_env, "minimal-values.yaml", sets=sets)
    secret = only(manifests, "Secret")
    decoded = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    for value in SENTINELS.values():
        assert any(value in item for item in decoded.values()), f"{value} missing from the Secret"
    forbidden = set(SENTINELS.values())
    forbidden |= {base64.b64encode(v.encode()).decode() for v in SENTINELS.values()}
    for manifest in manifests:
        if manifest["kind"] == "Secret":
            continue
        text = "\n".join(walk_strings(manifest))
        for value in forbidden:
            assert value not in text, f"{manifest['kind']} leaks a secret"
    # ... and not in NOTES.txt either.
    notes_text = install_notes(helm_env, "minimal-values.yaml", sets=sets)
    assert not any(value in notes_text for value in forbidden)


def test_secret_files_hold_one_value_per_line(helm_env: dict[str, str]) -> None:
    manifests = render(helm_env, "external-kafka-sasl-values.yaml")
    data = {k: base64.b64decode(v).decode() for k, v in only(manifests, "Secret")["data"].items()}
    assert data["bearer_tokens"].splitlines() == ["ci-sasl-token-current", "ci-sasl-token-next"]
    assert data["app_secrets"].splitlines() == ["ci-sasl-app-secret"]
    assert data["verify_token"] == "ci-sasl-verify-token"
    assert data["kafka_sasl_password"] == "ci-sasl-password"


def test_existing_secret_is_used_as_is(rendered: dict[str, list[Manifest]]) -> None:
    manifests = rendered["existing-secret-values.yaml"]
    assert "Secret" not in kinds(manifests), "the chart must not create or own the user's Secret"
    files = mounted_files(manifests)
    secret_files = {path: source for path, source in files.items() if path.startswith(SECRET_DIR)}
    assert secret_files == {
        f"{SECRET_DIR}/bearer_tokens": ("secret", "relay-credentials"),
        f"{SECRET_DIR}/kafka_sasl_password": ("secret", "relay-credentials"),
    }
    config = rendered_relay_config(manifests)
    assert config["auth"] == {"bearer_tokens_file": f"{SECRET_DIR}/bearer_tokens"}
    assert config["kafka"]["sasl_password_file"] == f"{SECRET_DIR}/kafka_sasl_password"
    annotations = only(manifests, "Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert "checksum/secret" not in annotations


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_secret_files_are_mounted_so_kubernetes_updates_them(
    rendered: dict[str, list[Manifest]], scenario: str
) -> None:
    """The relay follows its credential files as the kubelet rewrites them (README, "Rotating
    credentials"); a subPath mount is never updated, so none may mount a Secret or ConfigMap."""
    manifests = rendered[scenario]
    volumes = pod_volumes(manifests)
    mounts = relay_container(manifests)["volumeMounts"]
    for mount in mounts:
        volume = volumes[mount["name"]]
        if "secret" in volume or "configMap" in volume or "projected" in volume:
            assert "subPath" not in mount, f"{scenario}: {mount['name']} is a subPath mount"
            assert "subPathExpr" not in mount, f"{scenario}: {mount['name']}"
    (secrets,) = [m for m in mounts if m["mountPath"] == SECRET_DIR]
    assert "secret" in volumes[secrets["name"]]
    config = rendered_relay_config(manifests)
    assert "watch_interval_seconds" not in config["auth"], "the relay's default (watching) holds"


def test_only_provided_secrets_are_referenced(rendered: dict[str, list[Manifest]]) -> None:
    config = rendered_relay_config(rendered["minimal-values.yaml"])
    assert config["auth"] == {"bearer_tokens_file": f"{SECRET_DIR}/bearer_tokens"}
    assert "sasl_password_file" not in config["kafka"]


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        ({"secrets.bearerTokens": "null"}, "set secrets.bearerTokens or secrets.appSecrets"),
        ({"config.auth.bearer_tokens[0]": "leak"}, "config.auth must stay empty"),
        ({"config.kafka.sasl_password": "leak"}, "config.kafka.sasl_password is set by the chart"),
        (
            {"config.kafka.security_protocol": "SASL_SSL", "config.kafka.sasl_username": "u"},
            "set secrets.kafkaSaslPassword",
        ),
        (
            {"secrets.existingSecret": "mine", "secrets.existingSecretKeys[0]": "verify_token"},
            "existingSecretKeys must list bearer_tokens or app_secrets",
        ),
        ({"config.server.port": "8081"}, "must differ"),
    ],
    ids=[
        "no-credential",
        "secret-in-config",
        "sasl-in-config",
        "sasl-no-password",
        "no-key",
        "ports",
    ],
)
def test_misconfiguration_fails_at_install_time(
    helm_env: dict[str, str], sets: dict[str, str], message: str
) -> None:
    assert message in render_error(helm_env, "minimal-values.yaml", sets=sets)


# Blocks handed to Kubernetes as they are: documented as a whole, not key by key.
VERBATIM_BLOCKS = {"strategy", "probes", "podSecurityContext", "securityContext"}


def test_every_value_is_commented() -> None:
    lines = (CHART / "values.yaml").read_text(encoding="utf-8").splitlines()
    undocumented = []
    previous = ""
    block = ""
    for line in lines:
        stripped = line.strip()
        key = re.match(r"^( {0,4})([A-Za-z_]\w*):", line)
        if key and not key.group(1):
            block = key.group(2)
        documented = "#" in line or previous.startswith("#")
        if key and block not in VERBATIM_BLOCKS and not documented:
            undocumented.append(line)
        if stripped:
            previous = stripped
    assert not undocumented


def test_values_schema_rejects_typos(helm_env: dict[str, str]) -> None:
    error = render_error(helm_env, "minimal-values.yaml", sets={"ingres.enabled": "true"})
    assert "ingres" in error


# --- selectors and upgrades ------------------------------------------------------------------


def selectors(manifests: list[Manifest]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for m in manifests:
        kind, spec = m["kind"], m.get("spec", {})
        if kind in {"Deployment", "PodDisruptionBudget", "ServiceMonitor", "Service"}:
            found[kind] = spec["selector"]
        elif kind == "NetworkPolicy":
            found[kind] = spec["podSelector"]
        if kind == "Deployment":
            constraints = spec["template"]["spec"].get("topologySpreadConstraints", [])
            found["topologySpread"] = [c["labelSelector"] for c in constraints]
    return found


def test_selectors_are_stable_across_chart_versions(
    helm_env: dict[str, str], tmp_path: Path
) -> None:
    bumped = tmp_path / "whatsapp-relay"
    shutil.copytree(CHART, bumped)
    chart_file = bumped / "Chart.yaml"
    chart = yaml.safe_load(chart_file.read_text(encoding="utf-8"))
    chart["version"] = "99.1.0"
    chart["appVersion"] = "99.2.0"
    chart_file.write_text(yaml.safe_dump(chart), encoding="utf-8")

    old = render(helm_env, "production-values.yaml", sets={"image.tag": ""})
    new = render(helm_env, "production-values.yaml", sets={"image.tag": ""}, chart=bumped)
    assert relay_container(old)["image"] != relay_container(new)["image"]
    assert selectors(old) == selectors(new)
    assert selectors(old)["topologySpread"]
    assert set(selectors(old)) == {
        "topologySpread",
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "ServiceMonitor",
        "NetworkPolicy",
    }
    labels_in_selectors = {
        key for selector in selectors(old).values() for key in walk_strings(selector)
    }
    assert "helm.sh/chart" not in labels_in_selectors
    assert "app.kubernetes.io/version" not in labels_in_selectors
    deployment = only(old, "Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert only(old, "Service")["spec"]["selector"].items() <= pod_labels.items()


# --- NOTES -----------------------------------------------------------------------------------


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_notes_tell_how_to_reach_the_relay_and_which_keys_it_needs(
    helm_env: dict[str, str], rendered: dict[str, list[Manifest]], scenario: str
) -> None:
    notes = install_notes(helm_env, scenario)
    manifests = rendered[scenario]
    config = rendered_relay_config(manifests)
    path = config["server"]["path"]
    ingresses = [m for m in manifests if m["kind"] == "Ingress"]
    if ingresses:
        assert f"https://relay.example.com{path}" in notes
    else:
        assert f"port-forward svc/{only(manifests, 'Service')['metadata']['name']}" in notes
    config_keys = {
        "bearer_tokens": ("auth", "bearer_tokens_file"),
        "app_secrets": ("auth", "app_secrets_file"),
        "verify_token": ("auth", "verify_token_file"),
        "kafka_sasl_password": ("kafka", "sasl_password_file"),
    }
    for key, (section, config_key) in config_keys.items():
        used = config_key in config[section]
        assert (f"\n     {key} " in notes) == used, key
    assert "/readyz" in notes
    assert "topics create" in notes
    # A Secret of the user's: only its Kafka password needs a restart after a change; the relay
    # follows its auth files (README, "Rotating credentials").
    secrets = yaml.safe_load((CHART / "ci" / scenario).read_text()).get("secrets", {})
    own = bool(secrets.get("existingSecret"))
    assert ("no restart" in notes) == own
    restart = own and "kafka_sasl_password" in secrets.get("existingSecretKeys", [])
    assert ("rollout restart" in notes) == restart
