"""The relay's pod as the chart renders it, run on one host the way the kubelet runs it.

`ChartPod` reads the rendered Deployment and turns its one container into a `RunSpec` for the
container engine: the image and args, the env, the user, group and fsGroup, the read-only root,
no capabilities, no privilege escalation, every volume mounted where the chart mounts it (the
ConfigMap and the Secret as the kubelet lays them out, read-only; emptyDir as a tmpfs of its
size limit). What a single host cannot honour (the Service, the pod network) is replaced by the
host network, on loopback ports the test chooses through the chart's own values.

The container's memory and CPU limits (`resources.limits`) become the engine's. A volume kind,
an env source or a security setting the chart may grow and this does not know fails the suite
instead of being dropped: the point is to run what the chart renders.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import aiohttp
import yaml
from multidict import CIMultiDict

from devsupport.container import Container, Mount, RunSpec
from devsupport.ports import LOOPBACK, free_ports
from devsupport.relay_process import http_get
from relay.config import EventType
from tests.chart import (
    Manifest,
    pod_volumes,
    relay_config_map,
    relay_container,
    relay_pod,
    render,
    workload,
)
from tests.relays import delete_topics
from tests.secret_mount import SecretMount

_QUANTITY = re.compile(r"(\d+)(Ki|Mi|Gi)?")
_UNITS = {None: 1, "Ki": 1024, "Mi": 1024**2, "Gi": 1024**3}
# ConfigMap volumes default to 0644 (the API's defaultMode); the chart sets Secrets' itself.
_CONFIG_MAP_MODE = 0o644


@dataclass(frozen=True)
class Probe:
    kind: str  # startup, liveness, readiness
    path: str
    port: int
    period: float
    timeout: float
    failure_threshold: int

    @property
    def window(self) -> float:
        """How long the kubelet waits before it counts the probe failed for good."""
        return self.period * self.failure_threshold


def _cpus(quantity: str | int | float) -> float:
    text = str(quantity)
    return int(text[:-1]) / 1000 if text.endswith("m") else float(text)


def _bytes(quantity: str) -> int:
    match = _QUANTITY.fullmatch(quantity)
    assert match, f"a size the suite does not read: {quantity}"
    return int(match.group(1)) * _UNITS[match.group(2)]


class ChartPod:
    """The pod of `manifests`; the Secret's files are `secret_files` (key -> content), written
    under `root` with the ConfigMap's, as the kubelet would."""

    def __init__(self, manifests: list[Manifest], secret_files: dict[str, str], root: Path) -> None:
        self.manifests = manifests
        self.kind = workload(manifests)["kind"]
        self.pod = relay_pod(manifests)
        self.container = relay_container(manifests)
        assert "command" not in self.container, "the chart runs the image's ENTRYPOINT"
        self.ports = {p["name"]: int(p["containerPort"]) for p in self.container["ports"]}
        security = {**self.pod.get("securityContext", {}), **self.container["securityContext"]}
        self.uid = int(security["runAsUser"])
        self.gid = int(security["runAsGroup"])
        self.fs_group = self.pod["securityContext"].get("fsGroup")
        self.security = security
        self.root = root
        self.secrets: SecretMount | None = None
        self.claims: dict[str, Path] = {}  # a persistent volume's name -> its directory here
        self._secret_files = secret_files
        self._mounts: list[Mount] = []
        self._tmpfs: dict[str, str] = {}
        volumes = pod_volumes(manifests)
        for mount in self.container["volumeMounts"]:
            self._mount(mount, volumes[mount["name"]])

    # -- what the chart says --------------------------------------------------------------

    @property
    def image(self) -> str:
        image: str = self.container["image"]
        return image

    @property
    def args(self) -> list[str]:
        return [str(a) for a in self.container["args"]]

    @property
    def config_file(self) -> str:
        """The configuration path the relay is started with (`serve --config PATH`)."""
        return self.args[self.args.index("--config") + 1]

    @property
    def grace_seconds(self) -> int:
        return int(self.pod["terminationGracePeriodSeconds"])

    @property
    def pre_stop(self) -> list[str]:
        command: list[str] = self.container["lifecycle"]["preStop"]["exec"]["command"]
        return command

    def probe(self, kind: str) -> Probe:
        spec = self.container[f"{kind}Probe"]
        get = spec["httpGet"]
        port = get["port"]
        return Probe(
            kind,
            get["path"],
            self.ports[port] if isinstance(port, str) else int(port),
            float(spec.get("periodSeconds", 10)),
            float(spec.get("timeoutSeconds", 1)),
            int(spec.get("failureThreshold", 3)),
        )

    def env(self) -> dict[str, str]:
        env = {}
        for item in self.container.get("env", []):
            assert set(item) == {"name", "value"}, f"an env source the suite cannot give: {item}"
            env[item["name"]] = str(item["value"])
        return env

    # -- how one host runs it ---------------------------------------------------------------

    def run_spec(self) -> RunSpec:
        security = self.security
        assert security.get("runAsNonRoot") is True
        assert self.uid != 0
        capabilities = security.get("capabilities", {})
        assert not capabilities.get("add"), "the chart adds no capability"
        assert not security.get("privileged", False)
        assert security.get("seccompProfile", {}).get("type") == "RuntimeDefault"
        limits = self.container.get("resources", {}).get("limits", {})
        return RunSpec(
            image=self.image,
            args=self.args,
            env=self.env(),
            user=f"{self.uid}:{self.gid}",
            group_add=[int(self.fs_group)] if self.fs_group is not None else [],
            read_only=bool(security.get("readOnlyRootFilesystem")),
            tmpfs=self._tmpfs,
            mounts=self._mounts,
            cap_drop_all="ALL" in capabilities.get("drop", []),
            no_new_privileges=security.get("allowPrivilegeEscalation") is False,
            memory_bytes=_bytes(limits["memory"]) if "memory" in limits else None,
            cpus=_cpus(limits["cpu"]) if "cpu" in limits else None,
        )

    def _mount(self, mount: Manifest, volume: Manifest) -> None:
        target = mount["mountPath"]
        assert "subPath" not in mount, "a subPath mount is never updated by the kubelet"
        read_only = bool(mount.get("readOnly", False))
        if "persistentVolumeClaim" in volume:
            # A claim of the StatefulSet's templates: a directory of this host that outlives
            # the container. The kubelet gives a volume to the pod's fsGroup, group-writable,
            # new files inheriting the group (setgid).
            claim = self.root / f"claim-{mount['name']}"
            claim.mkdir()
            if os.geteuid() == 0 and self.fs_group is not None:
                os.chown(claim, 0, int(self.fs_group))
                claim.chmod(0o2775)
            else:
                claim.chmod(0o777)
            self.claims[mount["name"]] = claim
            self._mounts.append(Mount(claim, target, read_only))
            return
        if "emptyDir" in volume:
            size = volume["emptyDir"].get("sizeLimit")
            self._tmpfs[target] = "rw,mode=1777" + (f",size={_bytes(size)}" if size else "")
            return
        if "configMap" in volume:
            source = volume["configMap"]
            data = relay_config_map(self.manifests)["data"]
            assert source["name"] == relay_config_map(self.manifests)["metadata"]["name"]
            files = self._items(source, data)
            mode = source.get("defaultMode", _CONFIG_MAP_MODE)
            self._project(mount["name"], files, mode, target, read_only)
            return
        if "secret" in volume:
            source = volume["secret"]
            files = self._items(source, self._secret_files)
            self.secrets = self._project(
                mount["name"], files, source.get("defaultMode", 0o644), target, read_only
            )
            return
        raise AssertionError(f"a volume the container suite does not know: {volume}")

    @staticmethod
    def _items(source: Manifest, data: dict[str, str]) -> dict[str, str]:
        items = source.get("items")
        if items is None:
            return dict(data)
        return {item["path"]: data[item["key"]] for item in items}

    def _project(
        self, name: str, files: dict[str, str], mode: int, target: str, read_only: bool
    ) -> SecretMount:
        # The kubelet makes projected files root-owned with the fsGroup as their group; only
        # root can do that here (a non-root engine user gets world-readable files instead).
        as_root = os.geteuid() == 0
        volume = SecretMount(
            self.root / name,
            mode=mode if as_root else mode | 0o444,
            group=int(self.fs_group) if as_root and self.fs_group is not None else None,
        )
        volume.write(files)
        self._mounts.append(Mount(volume.root, str(PurePosixPath(target)), read_only))
        return volume


def values_for_test(
    *,
    image: str,
    bootstrap: str,
    topics: dict[str, str],
    port: int,
    admin_port: int,
) -> dict[str, Any]:
    """Values on top of a chart scenario for one host: the image just built, the suite's Kafka
    (one broker, so no durability requirement and one replica), the test's own topics, free
    ports on loopback (the container shares the host network; tests listen on loopback only,
    through the chart's own extraEnv), and a short preStop pause to keep the suite quick."""
    repository, _, tag = image.rpartition(":")
    return {
        "image": {"repository": repository, "tag": tag},
        # As README's install example: a Secret of yours with a token list and the verify token.
        "secrets": {
            "existingSecret": "whatsapp-relay-credentials",
            "existingSecretKeys": ["bearer_tokens", "verify_token"],
        },
        "config": {
            "server": {"port": port},
            "admin": {"port": admin_port},
            "kafka": {"bootstrap_servers": bootstrap, "require_durable_topics": False},
            "topics": {**topics, "replication_factor": 1, "min_insync_replicas": 1},
        },
        "extraEnv": [
            {"name": "RELAY_SERVER__HOST", "value": "127.0.0.1"},
            {"name": "RELAY_ADMIN__HOST", "value": "127.0.0.1"},
        ],
        "lifecycle": {"preStopSleepSeconds": 2},
    }


# --- booting it as the kubelet does ------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    status: int
    headers: CIMultiDict[str]  # names compared as HTTP compares them, without case
    body: bytes


@dataclass
class Booted:
    """The running pod, and what its boot looked like from the kubelet's side."""

    pod: ChartPod
    container: Container
    bootstrap: str
    topics: dict[EventType, str]
    healthz_after: float  # seconds from the container's start to the first /healthz 200
    readyz_before_topics: tuple[int, bytes]
    topics_create: subprocess.CompletedProcess[str]
    ready_after: float  # seconds from `topics create` to the first /readyz 200

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.pod.ports['http']}/webhook"

    def admin(self, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
        return http_get(f"http://{LOOPBACK}:{self.pod.ports['admin']}{path}", timeout)

    async def post(self, body: bytes, token: str) -> Answer:
        """A webhook with a bearer token, as the gateway sends it."""
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        async with (
            aiohttp.ClientSession() as http,
            http.post(self.url, data=body, headers=headers) as response,
        ):
            return Answer(response.status, CIMultiDict(response.headers), await response.read())

    def log_lines(self) -> list[dict[str, object]]:
        return [json.loads(line) for line in self.container.logs().splitlines() if line.strip()]


def _poll(probe_url: str, *, within: float, period: float, timeout: float) -> float | None:
    """Seconds until `probe_url` first answered 200 (polled every `period`), None if not within."""
    started = time.monotonic()
    while time.monotonic() - started < within:
        with contextlib.suppress(OSError):
            if http_get(probe_url, timeout)[0] == 200:
                return time.monotonic() - started
        time.sleep(period)
    return None


@contextlib.contextmanager
def boot(
    scenario: str,
    *,
    image: str,
    helm_env: dict[str, str],
    bootstrap: str,
    root: Path,
    secret_files: dict[str, str],
    values: dict[str, Any] | None = None,
) -> Iterator[Booted]:
    """The chart's `scenario` (plus `values_for_test`, plus `values`) rendered, its pod started
    as the kubelet starts it, and the startup probe passed; then `topics create` inside the
    container, as NOTES.txt tells an operator, and the pod ready. The container is removed and
    the topics deleted afterwards."""
    suffix = uuid.uuid4().hex[:10]
    topics = {t: f"test.{suffix}.{t.value}" for t in EventType}
    port, admin_port = free_ports(2)
    files = [root / "test-values.yaml", root / "scenario-test-values.yaml"]
    for_test = values_for_test(
        image=image,
        bootstrap=bootstrap,
        topics={t.value: name for t, name in topics.items()},
        port=port,
        admin_port=admin_port,
    )
    files[0].write_text(yaml.safe_dump(for_test))
    files[1].write_text(yaml.safe_dump(values or {}))
    pod = ChartPod(render(helm_env, scenario, *files), secret_files, root)
    assert pod.image == image, "the chart names the image that was built"
    container = Container(pod.run_spec(), f"whatsapp-relay-test-{suffix}")
    admin = f"http://{LOOPBACK}:{admin_port}"
    container.start()
    try:
        startup = pod.probe("startup")
        healthz_after = _poll(
            admin + startup.path,
            within=startup.window,
            period=startup.period,
            timeout=startup.timeout,
        )
        assert healthz_after is not None, (
            f"the startup probe never passed within {startup.window} s:\n{container.logs()}"
        )
        before = http_get(admin + "/readyz")
        # NOTES.txt step 4, as an operator runs it: `kubectl exec deploy/... -- whatsapp-relay
        # topics create --config <the chart's config file>`.
        created = container.exec("whatsapp-relay", "topics", "create", "--config", pod.config_file)
        ready_after = _poll(admin + "/readyz", within=30, period=0.2, timeout=2)
        assert ready_after is not None, f"never ready:\n{container.logs()}"
        print(
            f"\npod ({scenario}): /healthz after {healthz_after:.2f} s, ready {ready_after:.2f} s "
            f"after `topics create`; image {image}"
        )
        yield Booted(pod, container, bootstrap, topics, healthz_after, before, created,
                     ready_after)  # fmt: skip
    finally:
        container.remove()
        asyncio.run(delete_topics(bootstrap, prefix=f"test.{suffix}."))
