"""The image, run as the chart's pod runs it (tests/container/pod.py): the probes, a webhook end
to end, a wrong token, credentials rotated through the mounted Secret, metrics, a root file system
nobody writes, and SIGTERM under load as the kubelet sends it.

One pod for the module, booted the way the kubelet boots it (the first checks are about that
boot); the SIGTERM test stops it, so it comes last. `pytest -s` prints the pod's figures (start-up,
memory at idle and under load, the shutdown).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

import pytest
from prometheus_client.parser import text_string_to_metric_families

from devsupport import failover, samples
from devsupport.ports import LOOPBACK
from devsupport.relay_process import http_get
from devsupport.topics import consume
from devsupport.topics import size as topic_size
from relay.config import EventType
from tests.container.conftest import BootPod
from tests.container.pod import Booted

# Marked needs_tool("helm") and given a longer timeout by tests/container/conftest.py.
TOKEN = failover.TOKEN  # what the steady load of the SIGTERM test sends
ROTATED_TOKEN = "container-rotated-token-0123456789"
VERIFY_TOKEN = "container-verify-token-abcdef"
SCENARIO = "production-values.yaml"
# The load of the SIGTERM test: requests a second, and for how long before the preStop hook.
RATE = 200
LOAD_SECONDS = 4.0


def _secret(*tokens: str) -> dict[str, str]:
    return {"bearer_tokens": "".join(f"{t}\n" for t in tokens), "verify_token": VERIFY_TOKEN}


@pytest.fixture(scope="module")
def booted(boot_pod: BootPod) -> Iterator[Booted]:
    with boot_pod(SCENARIO, secret_files=_secret(TOKEN)) as pod:
        yield pod


def test_the_pod_boots_as_its_probes_expect(booted: Booted) -> None:
    pod = booted.pod
    assert booted.healthz_after < pod.probe("startup").window
    # Not ready while the topics are missing (NOTES.txt: "pods stay unready until the topics
    # exist"), then ready once `topics create` made them.
    status, body = booted.readyz_before_topics
    assert status == 503
    assert b"topic" in body
    assert booted.topics_create.returncode == 0, booted.topics_create.stderr
    for name in booted.topics.values():
        assert f"{name}: created" in booted.topics_create.stdout
    for kind, expected in (("liveness", b'{"status":"ok"}'), ("readiness", b'{"status":"ready"}')):
        probe = pod.probe(kind)
        assert probe.port == pod.ports["admin"]
        assert http_get(f"http://{LOOPBACK}:{probe.port}{probe.path}", probe.timeout) == (
            200,
            expected,
        )


def test_the_process_runs_as_the_chart_says(booted: Booted) -> None:
    """The chart's user, group and fsGroup, no capability, no privilege escalation, seccomp,
    and the relay itself as the container's process 1 (so SIGTERM and SIGHUP reach it)."""
    status = dict(
        line.split(":\t", 1)
        for line in Path(f"/proc/{booted.container.pid()}/status").read_text().splitlines()
    )
    assert status["Uid"].split()[:2] == [str(booted.pod.uid)] * 2
    assert status["Gid"].split()[:2] == [str(booted.pod.gid)] * 2
    assert str(booted.pod.fs_group) in status["Groups"].split()
    assert int(status["CapEff"], 16) == 0
    assert int(status["CapBnd"], 16) == 0
    assert status["NoNewPrivs"].strip() == "1"
    assert status["Seccomp"].strip() == "2"  # a filter: the engine's default profile
    host = booted.container.inspect()["HostConfig"]
    assert isinstance(host, dict)
    assert host["Memory"] == booted.container.spec.memory_bytes == 512 * 1024**2  # the limit
    cmdline = Path(f"/proc/{booted.container.pid()}/cmdline").read_bytes().split(b"\0")
    assert b"whatsapp-relay" in cmdline[1] or b"whatsapp-relay" in cmdline[0]
    assert cmdline[-3:-1] == [b"--config", booted.pod.config_file.encode()]


def test_the_image_runs_the_relay_with_its_compiled_extensions(booted: Booted) -> None:
    (serving,) = [line for line in booted.log_lines() if line["msg"] == "relay serving"]
    runtime = serving["runtime"]
    assert isinstance(runtime, dict)
    assert runtime["event_loop"] == "uvloop"
    assert runtime["aiohttp_c_parser"] is True
    assert runtime["aiokafka_c_records"] is True
    assert str(runtime["python"]).startswith("3.11.")


async def test_an_authenticated_webhook_lands_in_kafka_byte_for_byte(booted: Booted) -> None:
    body = samples.body(samples.envelope(samples.message_change(text=f"container {uuid.uuid4()}")))
    answer = await booted.post(body, TOKEN)
    assert answer.status == 200, answer.body
    assert json.loads(answer.body) == {"status": "accepted"}
    request_id = answer.headers["X-Request-Id"]
    (record,) = await consume(booted.bootstrap, booted.topics[EventType.MESSAGE], expect=1)
    assert record.value == body
    assert record.key == f"{samples.PHONE_NUMBER_ID}:16315551181".encode()
    headers_of = dict(record.headers)
    assert headers_of["ce_specversion"] == b"1.0"
    assert headers_of["ce_id"] == hashlib.sha256(body).hexdigest().encode() + b"-message"
    assert headers_of["ce_source"] == f"/waba/{samples.WABA_ID}".encode()
    assert headers_of["ce_type"] == b"whatsapp.message"
    assert headers_of["ce_subject"] == record.key
    assert headers_of["content-type"] == b"application/json"
    assert headers_of["wa-fields"] == b"messages"
    assert headers_of["relay-request-id"] == request_id.encode()
    assert "ce_time" in headers_of


async def test_a_wrong_token_gets_401_and_publishes_nothing(booted: Booted) -> None:
    topic = booted.topics[EventType.STATUS]
    before = await topic_size(booted.bootstrap, topic)
    body = samples.body(samples.envelope(samples.status_change()))
    answer = await booted.post(body, "wrong-token-0123456789")
    assert answer.status == 401
    assert json.loads(answer.body) == {"status": "unauthorized"}
    assert await topic_size(booted.bootstrap, topic) == before


def test_the_verification_handshake_reads_the_mounted_verify_token(booted: Booted) -> None:
    query = f"hub.mode=subscribe&hub.verify_token={VERIFY_TOKEN}&hub.challenge=1158201444"
    assert http_get(f"{booted.url}?{query}") == (200, b"1158201444")
    wrong = query.replace(VERIFY_TOKEN, "not-the-verify-token")
    assert http_get(f"{booted.url}?{wrong}")[0] == 403


async def _status_with(booted: Booted, token: str) -> int:
    return (
        await booted.post(samples.body(samples.envelope(samples.status_change())), token)
    ).status


async def _until(booted: Booted, token: str, status: int, within: float) -> None:
    async with asyncio.timeout(within):
        while await _status_with(booted, token) != status:
            await asyncio.sleep(0.2)


async def test_rotating_the_mounted_secret_switches_tokens_without_a_restart(
    booted: Booted,
) -> None:
    """README "Rotating credentials", with the files swapped as the kubelet swaps them."""
    secrets = booted.pod.secrets
    assert secrets is not None
    pid = booted.container.pid()
    # The relay checks its files every auth.watch_interval_seconds (5); allow for a busy machine.
    within = 20.0
    assert await _status_with(booted, ROTATED_TOKEN) == 401
    secrets.write(_secret(TOKEN, ROTATED_TOKEN))  # 1. add the new token
    await _until(booted, ROTATED_TOKEN, 200, within)
    assert await _status_with(booted, TOKEN) == 200  # both, for the switch
    secrets.write(_secret(ROTATED_TOKEN))  # 4. the old one goes
    await _until(booted, TOKEN, 401, within)
    assert await _status_with(booted, ROTATED_TOKEN) == 200
    secrets.write(_secret(TOKEN))  # back, for the tests after this one
    await _until(booted, TOKEN, 200, within)
    assert booted.container.pid() == pid, "no restart"
    reloads = [line for line in booted.log_lines() if line["msg"] == "credentials reloaded"]
    assert [line["bearer_tokens"] for line in reloads] == [2, 1, 1]


async def test_sighup_through_kubectl_exec_reads_the_files_at_once(booted: Booted) -> None:
    """README's `kubectl exec POD -- sh -c 'kill -HUP 1'`: the relay is process 1."""
    done = booted.container.exec("sh", "-c", "kill -HUP 1")
    assert done.returncode == 0, done.stderr
    async with asyncio.timeout(10):
        while not any(
            line.get("trigger") == "SIGHUP" for line in booted.log_lines()
        ):  # fmt: skip
            await asyncio.sleep(0.1)


def test_metrics_scrape(booted: Booted) -> None:
    status, body = booted.admin("/metrics")
    assert status == 200
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    requests = {
        s.labels["outcome"]: s.value
        for s in families["whatsapp_relay_requests"].samples
        if s.name.endswith("_total")
    }
    assert requests["accepted"] >= 1
    assert requests["unauthorized"] >= 1
    (build,) = families["whatsapp_relay_build_info"].samples
    assert build.value == 1
    assert families["process_resident_memory_bytes"].samples[0].value > 0


def test_nothing_is_written_outside_tmp(booted: Booted) -> None:
    """The root file system is read-only (the chart's securityContext), and the relay writes
    nothing at all, not even to its /tmp."""
    container = booted.container
    # The engine makes the mount points and the working directory before the root turns
    # read-only; nothing else may differ from the image.
    made_for_the_run = {"/app", *container.spec.tmpfs}
    for target in (m.target for m in container.spec.mounts):
        path = PurePosixPath(target)
        made_for_the_run |= {str(path), *(str(p) for p in path.parents if str(p) != "/")}
    changed = {line.split(maxsplit=1)[1] for line in container.diff()}
    assert changed <= made_for_the_run, sorted(changed - made_for_the_run)
    refused = container.exec("sh", "-c", "echo x > /app/written")
    assert refused.returncode != 0
    assert "Read-only file system" in refused.stderr
    listed = container.exec("find", "/tmp", "-mindepth", "1")  # noqa: S108 (the container's)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout == ""


def test_the_image_keeps_no_build_secret_and_no_build_cache(booted: Booted) -> None:
    """The CA bundle handed to pip at build time (scripts/build-image) was mounted for the
    install steps only; pip's cache was a cache mount."""
    for path in ("/run/secrets/ca-bundle", "/root/.cache/pip", "/src"):  # /src: the build's
        assert booted.container.exec("test", "!", "-e", path).returncode == 0, f"{path} is there"
    assert "PIP_CERT" not in booted.container.exec("env").stdout


def test_the_log_is_json_and_never_holds_a_credential(booted: Booted) -> None:
    text = booted.container.logs()
    for secret in (TOKEN, ROTATED_TOKEN, VERIFY_TOKEN, "wrong-token-0123456789"):
        assert secret not in text
    lines = booted.log_lines()  # every line parses
    assert lines
    assert not [line for line in lines if line["level"] in ("ERROR", "CRITICAL")]


async def test_sigterm_under_load_exits_0_within_the_grace_period_with_every_200_in_kafka(
    booted: Booted,
) -> None:
    """Last: it stops the pod. The kubelet's order: the preStop hook runs while traffic still
    arrives (endpoints are being removed), then SIGTERM, then at most the rest of
    terminationGracePeriodSeconds before SIGKILL."""
    pod, container = booted.pod, booted.container
    idle_mib = container.rss_mib()
    load = failover.SteadyLoad(booted.url, RATE, token=TOKEN, request_timeout=10)
    stop = asyncio.Event()
    running = asyncio.create_task(load.run(stop))
    peak_mib = idle_mib
    started = time.monotonic()
    while time.monotonic() - started < LOAD_SECONDS:
        await asyncio.sleep(0.25)
        peak_mib = max(peak_mib, container.rss_mib())
    hook = await asyncio.to_thread(container.exec, *pod.pre_stop)
    assert hook.returncode == 0, f"preStop {pod.pre_stop}: {hook.stderr}"
    pre_stop_seconds = time.monotonic() - started - LOAD_SECONDS
    peak_mib = max(peak_mib, container.rss_mib())
    container.signal(signal.SIGTERM)
    terminated = time.monotonic()
    bound = pod.grace_seconds - pre_stop_seconds
    exit_code = await asyncio.to_thread(container.wait, bound + 5)
    stopped_after = time.monotonic() - terminated
    stop.set()
    await running

    assert exit_code == 0, container.logs()
    assert stopped_after < bound
    answered = [a.status for a in load.answers]
    assert answered.count(200) >= RATE * LOAD_SECONDS / 2, f"too few 200s: {len(answered)} sent"
    # After SIGTERM: 503 + Retry-After on open connections, refused connections once the
    # listener closed (0); nothing else.
    assert set(answered) <= {200, 503, 0}
    assert not [a.error for a in load.answers if a.status == 503 and a.error]
    acked = [a.body for a in load.answers if a.status == 200]
    held = await failover.read_back(booted.bootstrap, booted.topics.values())
    missing = [body for body in acked if held[body] == 0]
    assert not missing, f"{len(missing)} of {len(acked)} acknowledged webhooks not in Kafka"
    (stopped,) = [line for line in booted.log_lines() if line["msg"] == "stopped"]
    assert stopped["producer_flushed"] is True
    print(
        f"\npod: RSS {idle_mib:.1f} MiB idle, {peak_mib:.1f} MiB peak at {RATE}/s; "
        f"{len(acked)} of {len(answered)} answered 200; SIGTERM to exit 0 in {stopped_after:.2f} s "
        f"(bound {bound:.1f} s)"
    )
    # The memory the chart's documentation suggests requesting (values.yaml `resources`).
    assert peak_mib < 128
