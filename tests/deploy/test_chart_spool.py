"""The chart with the durable spool (README, "The durable spool"): each pod a StatefulSet member
with its own claim, or the Deployment with an emptyDir; the spool directory is the volume, the
root file system stays read-only, and with the spool off the chart renders as before. The
rest of the chart's checks (tests/deploy/test_chart.py) run on ci/spool-values.yaml too.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import pytest

from relay import config as relay_config
from tests.chart import (
    Manifest,
    helm,
    only,
    relay_container,
    render,
    rendered_relay_config,
    template_args,
    workload,
)
from tests.deploy import test_chart as chart
from tests.deploy.test_chart import KUBE_VERSIONS, install_notes, kubeconform, render_error

pytestmark = [pytest.mark.timeout(600), pytest.mark.needs_tool("helm", "kubeconform")]
# The chart tests' fixtures, used here too.
helm_env = chart.helm_env
rendered = chart.rendered
SPOOL = "spool-values.yaml"


def spool_mount(manifests: list[Manifest]) -> dict[str, str]:
    (mount,) = [m for m in relay_container(manifests)["volumeMounts"] if m["name"] == "spool"]
    result: dict[str, str] = mount
    return result


def test_persistent_spool_makes_each_pod_a_statefulset_member_with_its_own_claim(
    rendered: dict[str, list[Manifest]],
) -> None:
    manifests = rendered[SPOOL]
    sts = only(manifests, "StatefulSet")
    assert "Deployment" not in [m["kind"] for m in manifests]
    assert sts["spec"]["replicas"] == 3
    assert sts["spec"]["serviceName"] == only(manifests, "Service")["metadata"]["name"]
    # Scaling down or deleting leaves the claims: an un-drained spool is not thrown away.
    assert sts["spec"]["persistentVolumeClaimRetentionPolicy"] == {
        "whenDeleted": "Retain",
        "whenScaled": "Retain",
    }
    (claim,) = sts["spec"]["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "spool"
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert claim["spec"]["storageClassName"] == "fast-local"
    # config.spool.max_bytes (2 GiB here) and a quarter more.
    assert claim["spec"]["resources"]["requests"]["storage"] == 2 * 1024**3 * 5 // 4
    pod = sts["spec"]["template"]["spec"]
    assert "spool" not in {v["name"] for v in pod["volumes"]}, "the claim is the volume"
    spread = pod["topologySpreadConstraints"]
    assert all(c["matchLabelKeys"] == ["controller-revision-hash"] for c in spread)


def test_the_relay_spools_into_the_mounted_volume_with_a_read_only_root(
    rendered: dict[str, list[Manifest]],
) -> None:
    manifests = rendered[SPOOL]
    settings = relay_config.parse(
        manifests_config_text(manifests), {}, read_file=lambda _: "token-0123456789abcdef"
    )
    assert settings.spool.enabled is True
    assert settings.spool.max_bytes == 2 * 1024**3
    assert PurePosixPath(spool_mount(manifests)["mountPath"]) == PurePosixPath(
        str(settings.spool.directory)
    )
    assert "readOnly" not in spool_mount(manifests)
    assert relay_container(manifests)["securityContext"]["readOnlyRootFilesystem"] is True
    # The image's user owns what it writes on the claim.
    assert workload(manifests)["spec"]["template"]["spec"]["securityContext"]["fsGroup"] == 10001


def manifests_config_text(manifests: list[Manifest]) -> str:
    (config_map,) = [
        m for m in manifests if m["kind"] == "ConfigMap" and "relay.yaml" in m.get("data", {})
    ]
    text: str = config_map["data"]["relay.yaml"]
    return text


def test_an_emptydir_spool_keeps_the_deployment_with_a_scratch_volume(
    helm_env: dict[str, str], tmp_path: Path
) -> None:
    sets = {"spool.volume": "emptyDir", "config.spool.max_bytes": "536870912"}
    manifests = render(helm_env, SPOOL, sets=sets)
    deployment = only(manifests, "Deployment")
    assert "StatefulSet" not in [m["kind"] for m in manifests]
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes["spool"] == {"name": "spool", "emptyDir": {"sizeLimit": 536870912 * 5 // 4}}
    assert rendered_relay_config(manifests)["spool"]["enabled"] is True
    assert spool_mount(manifests)["mountPath"] == "/var/lib/whatsapp-relay/spool"
    notes = install_notes(helm_env, SPOOL, sets=sets)
    assert "not the pod's deletion" in notes
    # Valid for the Kubernetes API, like every CI scenario.
    text = tmp_path / "manifests.yaml"
    args = template_args(SPOOL, sets=sets)
    text.write_text(helm(helm_env, *args, "--kube-version", KUBE_VERSIONS[-1]).stdout)
    result = kubeconform("-kubernetes-version", KUBE_VERSIONS[-1], "-summary", text)
    assert result.returncode == 0, result.stdout + result.stderr


def test_with_the_spool_off_there_is_no_spool_volume_and_no_statefulset(
    rendered: dict[str, list[Manifest]],
) -> None:
    for scenario, manifests in rendered.items():
        if scenario == SPOOL:
            continue
        assert "StatefulSet" not in [m["kind"] for m in manifests], scenario
        names = {
            v["name"] for v in only(manifests, "Deployment")["spec"]["template"]["spec"]["volumes"]
        }
        assert "spool" not in names, scenario
        assert "spool" not in rendered_relay_config(manifests), scenario


def test_autoscaling_targets_the_statefulset(helm_env: dict[str, str]) -> None:
    manifests = render(helm_env, SPOOL, sets={"autoscaling.enabled": "true"})
    hpa = only(manifests, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["kind"] == "StatefulSet"
    assert "replicas" not in only(manifests, "StatefulSet")["spec"]


def test_notes_say_how_to_drain_a_removed_pods_spool(helm_env: dict[str, str]) -> None:
    notes = install_notes(helm_env, SPOOL)
    assert "whatsapp_relay_spool_requests" in notes
    assert "scale back up to drain" in notes
    assert "exec sts/" in notes


@pytest.mark.parametrize("key", ["enabled", "directory"])
def test_the_chart_owns_where_the_spool_is(helm_env: dict[str, str], key: str) -> None:
    error = render_error(helm_env, "minimal-values.yaml", sets={f"config.spool.{key}": "x"})
    assert f"config.spool.{key} is set by the chart" in error


def test_a_spool_volume_kind_the_chart_does_not_know_is_refused(helm_env: dict[str, str]) -> None:
    assert "spool" in render_error(helm_env, SPOOL, sets={"spool.volume": "hostPath"})
