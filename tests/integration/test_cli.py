"""The commands users type: serve, check-config, topics create, tail; and TLS on the listener."""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import time
from pathlib import Path

import aiohttp
import pytest
import trustme
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from devsupport import samples, topics
from devsupport.ports import LOOPBACK, free_port
from tests.relays import SECOND_TOKEN, TOKEN, Relays, SettingsFactory, run_cli, settings_env


def test_check_config_prints_the_effective_config_redacted() -> None:
    result = run_cli(
        "check-config",
        env={
            "RELAY_AUTH__BEARER_TOKENS": '["very-secret-token"]',
            "RELAY_SERVER__PORT": "9999",
        },
    )
    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout)
    assert printed["server"]["port"] == 9999
    assert printed["auth"]["bearer_tokens"] == ["***"]
    assert "very-secret-token" not in result.stdout


def test_bad_config_names_every_bad_key_and_nothing_listens(tmp_path: Path) -> None:
    port = free_port()
    path = tmp_path / "relay.yaml"
    path.write_text(f"server:\n  port: {port}\n  max_body_bytes: small\nkafka:\n  lingr_ms: 5\n")
    result = run_cli(
        "serve",
        "--config",
        str(path),
        env={"RELAY_SERVER__HOST": LOOPBACK, "RELAY_LOG__LEVEL": "LOUD"},
    )
    assert result.returncode == 2
    for key in ("server.max_body_bytes", "kafka.lingr_ms", "log.level"):
        assert key in result.stderr
    with socket.socket() as probe:
        assert probe.connect_ex((LOOPBACK, port)) != 0  # nothing was listening


def refused_start(extra_env: dict[str, str]) -> str:
    """`serve` with `extra_env` must exit 1 before its webhook port ever listens; its stderr."""
    port = free_port()
    env = {
        "RELAY_AUTH__BEARER_TOKENS": f'["{TOKEN}"]',
        "RELAY_SERVER__HOST": LOOPBACK,
        "RELAY_SERVER__PORT": str(port),
        "RELAY_ADMIN__HOST": LOOPBACK,
        "RELAY_ADMIN__PORT": str(free_port()),
        **extra_env,
    }
    result = run_cli("serve", env=env)
    assert result.returncode == 1
    with socket.socket() as probe:
        assert probe.connect_ex((LOOPBACK, port)) != 0
    return str(result.stderr)


def test_serve_refuses_to_run_without_the_c_extensions() -> None:
    stderr = refused_start({"AIOHTTP_NO_EXTENSIONS": "1"})
    assert "compiled extensions missing: aiohttp_c_parser" in stderr


def test_serve_refuses_an_aiokafka_that_lacks_what_the_relay_relies_on(tmp_path: Path) -> None:
    # An aiokafka release that renamed an internal the adapter uses, as sitecustomize makes it.
    (tmp_path / "sitecustomize.py").write_text(
        "import aiokafka.producer.sender as sender\ndel sender.Sender.sender_task\n"
    )
    stderr = refused_start({"PYTHONPATH": str(tmp_path)})
    assert "Sender.sender_task is gone" in stderr
    assert "install aiokafka>=0.14,<0.15" in stderr


def test_serve_refuses_an_aiohttp_that_behaves_otherwise(tmp_path: Path) -> None:
    # An aiohttp release whose responses no longer call the prepare hook: every name is there,
    # only the behaviour changed, as sitecustomize makes it.
    (tmp_path / "sitecustomize.py").write_text(
        "from aiohttp import web\n"
        "async def _start(self, request):\n"
        "    self._req = request\n"
        "    writer = self._payload_writer = request._payload_writer\n"
        "    await self._prepare_headers()\n"
        "    await self._write_headers()\n"
        "    return writer\n"
        "web.StreamResponse._start = _start\n"
    )
    stderr = refused_start({"PYTHONPATH": str(tmp_path)})
    assert "does not behave as the relay's connection layer (relay/edge.py) relies on" in stderr
    assert "the prepare hook was not called" in stderr
    assert "install aiohttp>=3.14.3,<3.15" in stderr.lower()


def test_serve_refuses_to_start_without_credentials() -> None:
    for command in ("serve", "check-config"):
        result = run_cli(command, env={"RELAY_AUTH__BEARER_TOKENS": "[]"})
        assert result.returncode == 2
        assert "no credential configured" in result.stderr


def test_serve_and_check_config_refuse_a_guessable_credential() -> None:
    weak = {"RELAY_AUTH__BEARER_TOKENS": '["short-token"]'}
    for command in ("serve", "check-config"):
        result = run_cli(command, env=weak)
        assert result.returncode == 2
        assert "auth.bearer_tokens[0]: shorter than 16 characters" in result.stderr
        assert "short-token" not in result.stderr
    allowed = run_cli("check-config", env={**weak, "RELAY_AUTH__ALLOW_WEAK_CREDENTIALS": "true"})
    assert allowed.returncode == 0, allowed.stderr


async def test_tail_and_topics_need_no_webhook_credential(
    make_settings: SettingsFactory,
) -> None:
    env = {**settings_env(make_settings()), "RELAY_AUTH__BEARER_TOKENS": "[]"}
    assert run_cli("topics", "create", env=env).returncode == 0
    result = run_cli("tail", "status", "--from-beginning", "--idle", "1", env=env)
    assert result.returncode == 0, result.stderr


async def test_topics_create_sizes_topics_for_the_body_limit(
    make_settings: SettingsFactory,
) -> None:
    settings = make_settings()
    env = {**settings_env(settings), "RELAY_TOPICS__PARTITIONS": "2"}
    first = run_cli("topics", "create", env=env)
    assert first.returncode == 0, first.stderr
    assert first.stdout.count(": created") == 5
    again = run_cli("topics", "create", env=env)
    assert again.returncode == 0
    assert again.stdout.count(": exists") == 5

    async with topics.admin_client(settings.kafka.bootstrap_servers) as admin:
        described = await admin.describe_topics([settings.topics.status])
        configs = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, settings.topics.status)]
        )
    assert len(described[0]["partitions"]) == 2
    entries = {entry[0]: entry[1] for entry in configs[0].resources[0][4]}
    assert int(entries["max.message.bytes"]) == settings.record_size_limit
    assert settings.record_size_limit > settings.server.max_body_bytes


async def test_tail_prints_key_headers_and_value(relays: Relays) -> None:
    relay = await relays()
    body = samples.body(samples.envelope(samples.message_change(sender="777")))
    assert (await relay.post(body)).status == 200
    result = run_cli(
        "tail", "message", "--from-beginning", "--max", "1", "--idle", "10",
        env=settings_env(relay.settings),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert f"key={samples.PHONE_NUMBER_ID}:777" in result.stdout
    assert "ce_type: whatsapp.message" in result.stdout
    assert body.decode() in result.stdout


async def test_serve_process_accepts_a_webhook(relays: Relays) -> None:
    relay = await relays(process=True)
    body = samples.body(samples.envelope(samples.account_change()))
    assert (await relay.post(body)).status == 200
    await asyncio.to_thread(relay.stop_process)  # SIGTERM: a clean exit
    log = relay.log()
    assert TOKEN not in log
    assert SECOND_TOKEN not in log
    startup = next(json.loads(line) for line in log.splitlines() if '"relay serving"' in line)
    assert startup["runtime"]["event_loop"] == "uvloop"
    assert startup["runtime"]["aiohttp_c_parser"] is True
    assert startup["runtime"]["aiokafka_c_records"] is True
    assert startup["kafka"]["produce_api_versions"]
    assert startup["config"]["auth"]["bearer_tokens"] == ["***", "***"]


@pytest.fixture(scope="module")
def tls_ca() -> trustme.CA:
    return trustme.CA()


async def test_tls_listener_serves_https(
    relays: Relays, tls_ca: trustme.CA, tmp_path: Path
) -> None:
    cert = tls_ca.issue_cert(LOOPBACK, "localhost")
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    relay = await relays(server={"tls_cert_file": str(cert_file), "tls_key_file": str(key_file)})
    client_context = ssl.create_default_context()
    tls_ca.configure_trust(client_context)
    body = samples.body(samples.envelope(samples.template_change()))
    url = f"https://{LOOPBACK}:{relay.port}/webhook"
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    async with aiohttp.ClientSession() as http:
        async with http.post(url, data=body, headers=headers, ssl=client_context) as response:
            assert response.status == 200
        # Plain HTTP on the TLS port gets no webhook through.
        plain = url.replace("https://", "http://")
        started = time.monotonic()
        with pytest.raises(aiohttp.ClientError):
            async with http.post(plain, data=body, headers=headers) as response:
                await response.read()
        assert time.monotonic() - started < 10
