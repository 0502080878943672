from pathlib import Path

import pytest

from relay import config
from relay.config import ConfigError, EventType, parse

TOKENS = {"RELAY_AUTH__BEARER_TOKENS": '["t1"]'}
EXAMPLE = Path(__file__).parents[2] / "config" / "relay.example.yaml"


def test_example_config_is_valid_and_documents_the_defaults() -> None:
    from_example = parse(EXAMPLE.read_text(), TOKENS)
    defaults = parse(None, TOKENS)
    assert from_example == defaults


def test_contract_keys_and_defaults() -> None:
    s = parse(None, TOKENS)
    assert (s.server.host, s.server.port, s.server.path) == ("0.0.0.0", 8080, "/webhook")
    assert s.server.max_body_bytes == 4 * 1024 * 1024
    assert (s.admin.host, s.admin.port) == ("0.0.0.0", 8081)
    assert s.kafka.bootstrap_servers == "localhost:9092"
    assert s.kafka.publish_timeout_seconds == 10
    assert s.kafka.request_timeout_ms == 5000
    assert s.topics.names() == {
        EventType.MESSAGE: "whatsapp.message",
        EventType.STATUS: "whatsapp.status",
        EventType.TEMPLATE: "whatsapp.template",
        EventType.ACCOUNT: "whatsapp.account",
        EventType.UNROUTED: "whatsapp.unrouted",
    }


def test_env_overrides_file_with_json_lists_and_scalars() -> None:
    text = "server:\n  port: 9000\nauth:\n  bearer_tokens: [from-file]\n"
    s = parse(
        text,
        {
            "RELAY_SERVER__PORT": "9100",
            "RELAY_AUTH__BEARER_TOKENS": '["a", "b"]',
            "RELAY_ROUTING__FIELDS": '{"smb_message_echoes": "message"}',
            "RELAY_KAFKA__SASL_PASSWORD": "12345",  # stays a string, not a number
            "UNRELATED": "x",
        },
    )
    assert s.server.port == 9100
    assert s.auth.bearer_tokens == ["a", "b"]
    assert s.routing.fields == {"smb_message_echoes": EventType.MESSAGE}
    assert s.kafka.sasl_password == "12345"


def test_secrets_from_files(tmp_path: Path) -> None:
    (tmp_path / "tokens").write_text("first\n\n  second  \n")
    (tmp_path / "verify").write_text("v-token\n")
    s = parse(
        None,
        {
            "RELAY_AUTH__BEARER_TOKENS_FILE": str(tmp_path / "tokens"),
            "RELAY_AUTH__VERIFY_TOKEN_FILE": str(tmp_path / "verify"),
        },
    )
    assert s.auth.bearer_tokens == ["first", "second"]
    assert s.auth.verify_token == "v-token"


def test_every_invalid_key_is_named_at_once(tmp_path: Path) -> None:
    text = "server:\n  port: nope\n  bogus: 1\nkafka:\n  linger_ms: -1\n"
    env = {
        "RELAY_NOSUCH__KEY": "1",
        "RELAY_AUTH__APP_SECRETS_FILE": str(tmp_path / "missing"),
    }
    with pytest.raises(ConfigError) as caught:
        parse(text, env)
    text_of = "\n".join(caught.value.problems)
    for name in ("server.port", "server.bogus", "kafka.linger_ms", "nosuch", "app_secrets_file"):
        assert name in text_of
    assert len(caught.value.problems) == 5


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({**TOKENS, "RELAY_SERVER__PORT": "8081"}, "must differ"),
        ({**TOKENS, "RELAY_TOPICS__STATUS": "whatsapp.message"}, "distinct"),
        ({**TOKENS, "RELAY_TOPICS__MAX_MESSAGE_BYTES": "2000"}, "max_message_bytes"),
        ({**TOKENS, "RELAY_ROUTING__FIELDS": '{"messages": "status"}'}, "cannot be rerouted"),
        ({**TOKENS, "RELAY_KAFKA__SECURITY_PROTOCOL": "SASL_SSL"}, "SASL needs"),
        ({**TOKENS, "RELAY_SERVER__TLS_CERT_FILE": "/x.pem"}, "go together"),
        ({"RELAY_AUTH__BEARER_TOKENS": '["tök"]'}, "printable ASCII"),
        ({**TOKENS, "RELAY_ROUTING__FIELDS": '{"calls": "nowhere"}'}, "routing.fields.calls"),
        ({**TOKENS, "RELAY_TOPICS__REPLICATION_FACTOR": "0"}, "at least 1"),
        (
            {
                **TOKENS,
                "RELAY_TOPICS__REPLICATION_FACTOR": "2",
                "RELAY_TOPICS__MIN_INSYNC_REPLICAS": "3",
            },
            "refuse every write",
        ),
        ({**TOKENS, "RELAY_KAFKA__RETRY_BACKOFF_MS": "0"}, "kafka.retry_backoff_ms"),
    ],
)
def test_invalid_settings_are_refused(env: dict[str, str], fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        parse(None, env)


def test_kafka_client_settings_and_durability_keys() -> None:
    s = parse(
        None,
        {
            **TOKENS,
            "RELAY_KAFKA__METADATA_MAX_AGE_MS": "60000",
            "RELAY_KAFKA__CONNECTIONS_MAX_IDLE_MS": "120000",
            "RELAY_KAFKA__REQUIRE_DURABLE_TOPICS": "true",
            "RELAY_TOPICS__MIN_INSYNC_REPLICAS": "2",
        },
    )
    assert (s.kafka.metadata_max_age_ms, s.kafka.connections_max_idle_ms) == (60000, 120000)
    assert s.kafka.require_durable_topics is True
    assert s.topics.replication_factor is None  # as many as the cluster holds, up to 3
    assert s.topics.min_insync_replicas == 2


def test_serving_needs_a_credential_other_commands_do_not() -> None:
    bare = parse(None, {})  # enough for `topics create` and `tail`
    assert bare.serving_problems() == [
        "auth: no credential configured: set auth.bearer_tokens or auth.app_secrets "
        "(an open webhook would publish anything anyone posts)"
    ]
    strong = "0123456789abcdef"
    assert parse(None, {"RELAY_AUTH__BEARER_TOKENS": f'["{strong}"]'}).serving_problems() == []
    assert parse(None, {"RELAY_AUTH__APP_SECRETS": f'["{strong}"]'}).serving_problems() == []


def test_short_credentials_are_refused_for_serving_unless_allowed() -> None:
    env = {
        "RELAY_AUTH__BEARER_TOKENS": '["0123456789abcdef", "short-token"]',
        "RELAY_AUTH__APP_SECRETS": '["0123456789abcde"]',
    }
    problems = parse(None, env).serving_problems()
    assert [p.split(":")[0] for p in problems] == ["auth.bearer_tokens[1]", "auth.app_secrets[0]"]
    assert all("shorter than 16 characters" in p for p in problems)
    assert not any("short-token" in p for p in problems)  # never echo the secret
    allowed = {**env, "RELAY_AUTH__ALLOW_WEAK_CREDENTIALS": "true"}
    assert parse(None, allowed).serving_problems() == []


@pytest.mark.parametrize(
    "name", ["", ".", "..", "a" * 250, "has space", "slash/name", "t\u00f6pic", "colon:x"]
)
def test_topic_names_follow_kafkas_rules(name: str) -> None:
    with pytest.raises(ConfigError, match=r"topics\.status"):
        parse(None, {**TOKENS, "RELAY_TOPICS__STATUS": name})


def test_longest_legal_topic_name_is_accepted() -> None:
    name = "a." + "b" * 245 + "_-"
    assert parse(None, {**TOKENS, "RELAY_TOPICS__STATUS": name}).topics.status == name


def test_invalid_yaml_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="not valid YAML"):
        parse("server: [unclosed", TOKENS)


def test_redacted_hides_every_secret() -> None:
    s = parse(
        None,
        {
            "RELAY_AUTH__BEARER_TOKENS": '["tok-secret"]',
            "RELAY_AUTH__APP_SECRETS": '["app-secret"]',
            "RELAY_AUTH__VERIFY_TOKEN": "verify-secret",
            "RELAY_KAFKA__SASL_PASSWORD": "sasl-secret",
        },
    )
    dumped = str(s.redacted())
    for secret in ("tok-secret", "app-secret", "verify-secret", "sasl-secret"):
        assert secret not in dumped


def test_record_size_limit_covers_the_body_limit() -> None:
    s = parse(None, {**TOKENS, "RELAY_SERVER__MAX_BODY_BYTES": "1048576"})
    assert s.record_size_limit == 1048576 + config.RECORD_OVERHEAD_BYTES


def test_load_reads_the_named_file(tmp_path: Path) -> None:
    path = tmp_path / "relay.yaml"
    path.write_text("auth:\n  bearer_tokens: [x]\nserver:\n  port: 9999\n")
    assert config.load(path, {}).server.port == 9999
    with pytest.raises(ConfigError, match="config file"):
        config.load(tmp_path / "absent.yaml", {})
