"""Typed configuration: one YAML file, `RELAY_<SECTION>__<KEY>` overrides, secrets from files.

The loader takes the file text and an environment mapping instead of reading `os.environ`
itself, so tests build any configuration without touching the process; `load()` at the edge
does the I/O. Every invalid key is reported in one `ConfigError`, never the first one only.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal, NamedTuple

import orjson
import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

ENV_PREFIX = "RELAY_"
DEFAULT_CONFIG_PATH = Path("config/relay.yaml")

# Shorter bearer tokens and app secrets are refused by `serve` and `check-config`.
MIN_CREDENTIAL_LENGTH = 16

# Room for the record's key, headers and batch framing on top of the body itself.
RECORD_OVERHEAD_BYTES = 64 * 1024


class EventType(StrEnum):
    MESSAGE = "message"
    STATUS = "status"
    TEMPLATE = "template"
    ACCOUNT = "account"
    UNROUTED = "unrouted"


Port = Annotated[int, Field(ge=0, le=65535)]
PositiveSeconds = Annotated[float, Field(gt=0)]


class _Section(BaseModel):
    # Unknown keys are errors: a typo must never silently fall back to a default.
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerConfig(_Section):
    host: str = "0.0.0.0"
    port: Port = 8080
    path: str = Field(default="/webhook", pattern=r"^/\S*$")
    max_body_bytes: int = Field(default=4 * 1024 * 1024, ge=1024, le=64 * 1024 * 1024)
    # The bounds below are what a hostile client controls; README "Security" explains each.
    body_read_timeout_seconds: PositiveSeconds = 10.0
    # A body must also keep arriving at this rate (after a short grace), so a stalled upload
    # of a small webhook is cut in about two seconds instead of holding its slot for ten.
    min_body_rate_bytes_per_second: int = Field(default=16 * 1024, ge=1)
    header_timeout_seconds: PositiveSeconds = 10.0
    max_header_bytes: int = Field(default=32 * 1024, ge=4096, le=1024 * 1024)
    # Longer than the upstream keep-alive of common proxies (ingress-nginx and AWS ALB: 60 s),
    # so the proxy closes an idle connection first and never sends on one closing under it.
    keepalive_timeout_seconds: PositiveSeconds = 75.0
    max_connections: int = Field(default=1000, ge=1)
    max_inflight_requests: int = Field(default=512, ge=1)
    # Body bytes held at once (counted as they arrive): what bounds memory.
    max_inflight_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)
    retry_after_seconds: int = Field(default=5, ge=0)
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    access_log: bool = False
    # Without the compiled HTTP parser and Kafka record code the relay runs several times
    # slower; refuse to start rather than degrade silently, unless told otherwise.
    require_c_extensions: bool = True

    @model_validator(mode="after")
    def _tls_pair(self) -> ServerConfig:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("tls_cert_file and tls_key_file go together")
        return self


class AdminConfig(_Section):
    host: str = "0.0.0.0"
    port: Port = 8081


class AuthConfig(_Section):
    bearer_tokens: list[Annotated[str, Field(min_length=1)]] = []
    app_secrets: list[Annotated[str, Field(min_length=1)]] = []
    verify_token: str | None = None
    # Where the three above were read from, when they came from `<key>_file`: a serving relay
    # reads these files again when they change and on SIGHUP (relay.credentials).
    bearer_tokens_file: Path | None = None
    app_secrets_file: Path | None = None
    verify_token_file: Path | None = None
    # How often those files are checked for a change (a few stat calls); 0: only on SIGHUP.
    watch_interval_seconds: float = Field(default=5.0, ge=0)
    # Development only (`make run`'s dev token): serve with credentials shorter than
    # MIN_CREDENTIAL_LENGTH.
    allow_weak_credentials: bool = False

    @model_validator(mode="after")
    def _ascii_only(self) -> AuthConfig:
        # Tokens are compared as bytes; a non-ASCII token could never match an HTTP header.
        for name in ("bearer_tokens", "app_secrets"):
            for index, value in enumerate(getattr(self, name)):
                if not value.isascii() or not value.isprintable():
                    raise ValueError(f"{name}[{index}] must be printable ASCII")
        return self

    def secret_files(self) -> dict[str, Path]:
        """`<key>: path` for each credential read from a file."""
        return {
            key: path
            for key in AUTH_FILE_KEYS
            if (path := getattr(self, f"{key}_file")) is not None
        }

    def serving_problems(self) -> list[str]:
        """What stops these credentials from guarding a public webhook."""
        if not (self.bearer_tokens or self.app_secrets):
            return [
                "auth: no credential configured: set auth.bearer_tokens or auth.app_secrets "
                "(an open webhook would publish anything anyone posts)"
            ]
        if self.allow_weak_credentials:
            return []
        return [
            f"auth.{name}[{index}]: shorter than {MIN_CREDENTIAL_LENGTH} characters, guessable "
            "on a public endpoint (set auth.allow_weak_credentials: true for development only)"
            for name, values in (
                ("bearer_tokens", self.bearer_tokens),
                ("app_secrets", self.app_secrets),
            )
            for index, value in enumerate(values)
            if len(value) < MIN_CREDENTIAL_LENGTH
        ]


class KafkaConfig(_Section):
    bootstrap_servers: str = "localhost:9092"
    client_id: str = "whatsapp-relay"
    # Long enough to ride out a broker crash or hang (Kafka takes ~9-13 s to fence the node;
    # measured in README, "Broker failures"), short enough for senders' own timeouts.
    publish_timeout_seconds: PositiveSeconds = 10.0
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "PLAIN"
    sasl_username: str | None = None
    sasl_password: str | None = None
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    compression_type: Literal["gzip", "snappy", "lz4", "zstd"] | None = None
    # 0: aiokafka keeps one produce request in flight per broker, so under load records batch
    # up behind it anyway; waiting longer only adds latency (see docs/benchmark.md).
    linger_ms: int = Field(default=0, ge=0)
    max_batch_size: int = Field(default=256 * 1024, ge=1024)
    # How long a broker may leave a request unanswered before it is given up on and retried
    # elsewhere once the cluster has moved on: bounds a hung broker's grip on its partitions.
    request_timeout_ms: int = Field(default=5000, ge=1000)
    metadata_max_age_ms: int = Field(default=300000, ge=1000)
    retry_backoff_ms: int = Field(default=100, ge=1)
    connections_max_idle_ms: int = Field(default=540000, ge=1000)
    readiness_interval_seconds: PositiveSeconds = 5.0
    restart_backoff_max_seconds: PositiveSeconds = 30.0
    # Refuse readiness while a topic would let a 200 rest on a single replica.
    require_durable_topics: bool = False

    @model_validator(mode="after")
    def _sasl_credentials(self) -> KafkaConfig:
        if self.security_protocol.startswith("SASL_") and not (
            self.sasl_username and self.sasl_password
        ):
            raise ValueError("SASL needs sasl_username and sasl_password")
        return self


# Kafka's own rule for topic names (kafka.common.internals.Topic): a name it would refuse must
# fail `check-config`, not every publish.
def _not_dots(name: str) -> str:
    if name in (".", ".."):
        raise ValueError("'.' and '..' are not topic names")
    return name


TopicName = Annotated[
    str,
    Field(min_length=1, max_length=249, pattern=r"^[a-zA-Z0-9._-]+$"),
    AfterValidator(_not_dots),
]


class TopicsConfig(_Section):
    message: TopicName = "whatsapp.message"
    status: TopicName = "whatsapp.status"
    template: TopicName = "whatsapp.template"
    account: TopicName = "whatsapp.account"
    unrouted: TopicName = "whatsapp.unrouted"
    partitions: int = Field(default=3, ge=1)
    # None: as many replicas as the cluster has brokers, up to 3. -1 lets the broker's
    # default.replication.factor decide, as kafka-topics.sh does (1 on stock Kafka).
    replication_factor: int | None = Field(default=None, ge=-1)
    # None: the replication factor minus one (2 with 3 replicas), at least 1.
    min_insync_replicas: int | None = Field(default=None, ge=1)
    max_message_bytes: int | None = Field(default=None, ge=1024)

    @model_validator(mode="after")
    def _replication(self) -> TopicsConfig:
        if self.replication_factor == 0:
            raise ValueError("replication_factor must be at least 1 (or -1, or null)")
        if (
            self.min_insync_replicas is not None
            and self.replication_factor is not None
            and self.replication_factor > 0
            and self.min_insync_replicas > self.replication_factor
        ):
            raise ValueError(
                "min_insync_replicas above replication_factor: Kafka would refuse every write"
            )
        return self

    def for_type(self, event_type: EventType) -> str:
        name: str = getattr(self, event_type.value)
        return name

    def names(self) -> dict[EventType, str]:
        return {event_type: self.for_type(event_type) for event_type in EventType}


class RoutingConfig(_Section):
    # Field name -> event type, on top of the defaults in `relay.classify`.
    fields: dict[str, EventType] = {}

    @model_validator(mode="after")
    def _messages_is_by_content(self) -> RoutingConfig:
        if "messages" in self.fields:
            raise ValueError(
                "'messages' is classified by what its value holds and cannot be rerouted"
            )
        return self


class ShutdownConfig(_Section):
    # Keep serving this long after SIGTERM while readiness already fails, so load balancers
    # stop sending before the listener closes. The Helm chart uses a preStop pause instead.
    drain_seconds: float = Field(default=0.0, ge=0)
    timeout_seconds: PositiveSeconds = 10.0


class SpoolConfig(_Section):
    """The opt-in durable spool (relay.spool, docs/design.md §9): off, a 200 means Kafka
    acknowledged; on, Kafka acknowledged or the records are fsynced in `directory`."""

    enabled: bool = False
    # One relay per directory (a lock file guards it); a local disk, not a network share.
    directory: Path = Path("/var/lib/whatsapp-relay/spool")
    # A request Kafka has not acknowledged by then goes to the spool; 0: every request does.
    after_seconds: float = Field(default=1.0, ge=0)
    # Bytes the segment files may hold; past it requests get 503 as without a spool.
    max_bytes: int = Field(default=1024 * 1024 * 1024, ge=64 * 1024)
    # A segment file is closed and a new one begun past this size; a drained segment is
    # deleted whole, so this is also how much a crash may publish twice.
    segment_bytes: int = Field(default=16 * 1024 * 1024, ge=4096)


class LogConfig(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["json", "text"] = "json"
    # Lines a client can cause (refused requests, malformed HTTP): at most one per kind in this
    # many seconds, then one counting the rest (relay.logs.RateLimitedLog); 0 logs every one.
    rate_limit_seconds: float = Field(default=1.0, ge=0, le=3600)


class Settings(_Section):
    server: ServerConfig = ServerConfig()
    admin: AdminConfig = AdminConfig()
    auth: AuthConfig = AuthConfig()
    kafka: KafkaConfig = KafkaConfig()
    topics: TopicsConfig = TopicsConfig()
    routing: RoutingConfig = RoutingConfig()
    shutdown: ShutdownConfig = ShutdownConfig()
    spool: SpoolConfig = SpoolConfig()
    log: LogConfig = LogConfig()

    @model_validator(mode="after")
    def _cross_checks(self) -> Settings:
        if (
            self.server.port
            and self.server.port == self.admin.port
            and (self.server.host == self.admin.host)
        ):
            raise ValueError("server.port and admin.port must differ")
        if self.spool.enabled and self.spool.after_seconds >= self.kafka.publish_timeout_seconds:
            raise ValueError(
                "spool.after_seconds must be below kafka.publish_timeout_seconds (a request "
                "goes to the spool when Kafka has not acknowledged it by then)"
            )
        names = list(self.topics.names().values())
        if len(set(names)) != len(names):
            raise ValueError("topic names must be distinct, one per event type")
        if (
            self.topics.max_message_bytes is not None
            and self.topics.max_message_bytes < self.record_size_limit
        ):
            raise ValueError(
                f"topics.max_message_bytes must be at least {self.record_size_limit} "
                "(server.max_body_bytes plus room for key and headers)"
            )
        return self

    def serving_problems(self) -> list[str]:
        """What stops this configuration from serving webhooks (the other commands, such as
        `topics create` and `tail`, need no webhook credential)."""
        return self.auth.serving_problems()

    @property
    def record_size_limit(self) -> int:
        """Largest record the relay may produce: what the producer and topics must accept."""
        return self.server.max_body_bytes + RECORD_OVERHEAD_BYTES

    def redacted(self) -> dict[str, Any]:
        """The effective configuration, safe to print or log."""
        data = self.model_dump(mode="json")
        auth = data["auth"]
        auth["bearer_tokens"] = [_REDACTED] * len(self.auth.bearer_tokens)
        auth["app_secrets"] = [_REDACTED] * len(self.auth.app_secrets)
        if self.auth.verify_token is not None:
            auth["verify_token"] = _REDACTED
        if self.kafka.sasl_password is not None:
            data["kafka"]["sasl_password"] = _REDACTED
        return data


_REDACTED = "***"

# Keys whose value may instead come from a file named by `<key>_file`, so that Kubernetes
# Secret mounts work. List keys take one value per non-empty line.
SECRET_FILE_KEYS: dict[tuple[str, str], bool] = {
    ("auth", "bearer_tokens"): True,
    ("auth", "app_secrets"): True,
    ("auth", "verify_token"): False,
    ("kafka", "sasl_password"): False,
}
# The auth section keeps its file paths (AuthConfig declares them): they are read again while
# serving. Other sections read theirs once, at start-up.
AUTH_FILE_KEYS = tuple(key for section, key in SECRET_FILE_KEYS if section == "auth")


class ConfigError(Exception):
    """Invalid configuration; `problems` names every bad key."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("invalid configuration:\n" + "\n".join(f"  - {p}" for p in problems))
        self.problems = problems


def parse(file_text: str | None, env: Mapping[str, str], *, read_file: Any = None) -> Settings:
    """Build settings from YAML text, environment overrides and secret files.

    `read_file` (a `Path -> str` callable) is injectable for tests; it defaults to reading
    from disk.
    """
    problems: list[str] = []
    data = _load_yaml(file_text, problems)
    _apply_env(data, env, problems)
    _resolve_secret_files(data, problems, read_file or _read_text)
    settings: Settings | None = None
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        problems.extend(_describe(error) for error in exc.errors())
    if problems or settings is None:
        raise ConfigError(problems)
    return settings


def load(path: Path | None, env: Mapping[str, str] | None = None) -> Settings:
    """Read the configuration file (if any) and the process environment."""
    env = os.environ if env is None else env
    if path is None and env.get("RELAY_CONFIG"):
        path = Path(env["RELAY_CONFIG"])
    if path is None and DEFAULT_CONFIG_PATH.exists():
        path = DEFAULT_CONFIG_PATH
    text = None
    if path is not None:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError([f"config file {path}: {exc.strerror or exc}"]) from exc
    return parse(text, env)


def _load_yaml(text: str | None, problems: list[str]) -> dict[str, Any]:
    if not text:
        return {}
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        problems.append(f"config file is not valid YAML: {exc}")
        return {}
    if data is None:
        return {}
    if not isinstance(data, dict):
        problems.append("config file must hold a mapping of sections")
        return {}
    return data


def _apply_env(data: dict[str, Any], env: Mapping[str, str], problems: list[str]) -> None:
    for name, raw in sorted(env.items()):
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue
        section, _, key = name[len(ENV_PREFIX) :].lower().partition("__")
        if not section or not key:
            problems.append(f"{name}: expected RELAY_<SECTION>__<KEY>")
            continue
        target = data.setdefault(section, {})
        if not isinstance(target, dict):
            problems.append(f"{name}: section {section} is not a mapping")
            continue
        target[key] = _env_value(raw)


def _env_value(raw: str) -> Any:
    # Lists and mappings come as JSON; scalars stay strings for pydantic to coerce, so that
    # a token that happens to look like a number is not turned into one.
    stripped = raw.strip()
    if stripped[:1] in ("[", "{"):
        try:
            return orjson.loads(stripped)
        except orjson.JSONDecodeError:
            return raw
    if stripped == "null":
        return None
    return raw


def _read_text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def _resolve_secret_files(data: dict[str, Any], problems: list[str], read_file: Any) -> None:
    for (section, key), is_list in SECRET_FILE_KEYS.items():
        block = data.get(section)
        if not isinstance(block, dict):
            continue
        file_key = f"{key}_file"
        file_name = block.get(file_key) if section == "auth" else block.pop(file_key, None)
        if file_name is None:
            continue
        if key in block and block[key] not in (None, [], ""):
            problems.append(f"{section}.{key} and {section}.{file_key} are both set")
            continue
        value = _read_secret(f"{section}.{file_key}", Path(str(file_name)), is_list, read_file)
        if isinstance(value, _Unreadable):
            problems.append(value.problem)
        else:
            block[key] = value


class _Unreadable(NamedTuple):
    problem: str


def _read_secret(
    name: str, path: Path, is_list: bool, read_file: Any
) -> list[str] | str | _Unreadable:
    try:
        text: str = read_file(path)
    except OSError as exc:
        return _Unreadable(f"{name}: cannot read {path}: {exc.strerror or type(exc).__name__}")
    except UnicodeDecodeError:
        # The error's message quotes a byte of the file: never a part of a secret in a log.
        return _Unreadable(f"{name}: {path} is not UTF-8 text")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines if is_list else text.strip()


class SecretFileUnreadable(ConfigError):
    """A credential file could not be read at all (missing, no permission, not text)."""


def reread_auth(auth: AuthConfig, read_file: Any = None) -> AuthConfig:
    """`auth` with every credential that came from a file read again, validated as at
    start-up: all files or none. A file that held credentials may not become empty (that is a
    file half written, or a mount gone wrong, far more often than a decision to stop requiring
    that credential; and it would loosen authentication). Raises `SecretFileUnreadable` or
    `ConfigError`; no problem ever quotes a credential."""
    read_file = read_file or _read_text
    data = auth.model_dump()
    problems: list[str] = []
    unreadable = False
    for key, path in auth.secret_files().items():
        value = _read_secret(f"auth.{key}_file", path, key != "verify_token", read_file)
        if isinstance(value, _Unreadable):
            problems.append(value.problem)
            unreadable = True
            continue
        if not value and getattr(auth, key):
            problems.append(f"auth.{key}_file: {path} is empty now")
        data[key] = value
    reread: AuthConfig | None = None
    if not problems:
        try:
            reread = AuthConfig.model_validate(data)
        except ValidationError as exc:
            problems.extend(_describe(error, section="auth") for error in exc.errors())
    if reread is not None:
        problems.extend(reread.serving_problems())
    if problems or reread is None:
        raise (SecretFileUnreadable if unreadable else ConfigError)(problems)
    return reread


def _describe(error: Any, section: str | None = None) -> str:
    parts = [section] if section else []
    location = ".".join(str(part) for part in (*parts, *error["loc"])) or "config"
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = "unknown key"
    return f"{location}: {message}"
