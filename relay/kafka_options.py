"""Connection options shared by every Kafka client the relay builds (producer, the cluster
checks, admin, tail)."""

from __future__ import annotations

from typing import Any

from aiokafka.helpers import create_ssl_context

from relay.config import KafkaConfig


def connection_options(config: KafkaConfig) -> dict[str, Any]:
    options: dict[str, Any] = {
        "bootstrap_servers": config.bootstrap_servers,
        "client_id": config.client_id,
        "request_timeout_ms": config.request_timeout_ms,
        "metadata_max_age_ms": config.metadata_max_age_ms,
        "retry_backoff_ms": config.retry_backoff_ms,
        "connections_max_idle_ms": config.connections_max_idle_ms,
        "security_protocol": config.security_protocol,
    }
    if config.security_protocol in ("SSL", "SASL_SSL"):
        # Built here, not at import, so a bad file path is a start-up error with its name.
        options["ssl_context"] = create_ssl_context(
            cafile=config.ssl_cafile,
            certfile=config.ssl_certfile,
            keyfile=config.ssl_keyfile,
        )
    if config.security_protocol.startswith("SASL_"):
        options["sasl_mechanism"] = config.sasl_mechanism
        options["sasl_plain_username"] = config.sasl_username
        options["sasl_plain_password"] = config.sasl_password
    return options
