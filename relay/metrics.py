"""Prometheus metrics, in a registry the application owns.

Every label set is bounded and created at zero up front, so dashboards and `rate()` see a
series from the first scrape rather than only after the first incident. The request path uses
the pre-resolved children in the dictionaries below instead of `labels()` lookups.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Gauge, PlatformCollector, ProcessCollector

from relay.classify import KNOWN_UNROUTED_FIELDS
from relay.config import EventType
from relay.loopmetrics import Counter, CounterChild, Histogram
from relay.outcomes import (
    AuthFailure,
    ConnectionEnd,
    Outcome,
    PublishError,
    ReloadResult,
    SpoolReason,
    SpoolRefusal,
)

PREFIX = "whatsapp_relay"

# The relay's latency lives between half a millisecond and a few seconds.
LATENCY_BUCKETS = (
    0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05,
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
BODY_BUCKETS = (256, 512, 1024, 2048, 4096, 8192, 16384, 65536, 262144, 1048576, 4194304)


# Unrouted changes are labelled by Meta field name: the known ones (relay.classify), names
# routed to unrouted by configuration, else this, so a sender cannot grow the label set.
OTHER_FIELD = "other"


class Metrics:
    """All of the relay's metrics, registered in `self.registry`."""

    def __init__(
        self,
        version: str,
        *,
        credentials: Iterable[str] = (),
        unrouted_fields: Iterable[str] = (),
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)

        requests = Counter(
            f"{PREFIX}_requests_total",
            "Requests on the public listener, by how they ended.",
            ["outcome"],
            registry=r,
        )
        duration = Histogram(
            f"{PREFIX}_request_duration_seconds",
            "Time from request received to answer ready, by outcome.",
            ["outcome"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.requests = {o: requests.labels(o.value) for o in Outcome}
        self.request_duration = {o: duration.labels(o.value) for o in Outcome}
        self.request_body_bytes = Histogram(
            f"{PREFIX}_request_body_bytes",
            "Size of accepted-for-reading webhook bodies.",
            buckets=BODY_BUCKETS,
            registry=r,
        )
        published = Counter(
            f"{PREFIX}_records_published_total",
            "Records acknowledged by Kafka, by event type.",
            ["event_type"],
            registry=r,
        )
        self.records_published = {t: published.labels(t.value) for t in EventType}
        publish_errors = Counter(
            f"{PREFIX}_publish_errors_total",
            "Records Kafka did not acknowledge in time or refused, by event type and error.",
            ["event_type", "error"],
            registry=r,
        )
        self.publish_errors = {
            (t, e): publish_errors.labels(t.value, e.value) for t in EventType for e in PublishError
        }
        self.publish_duration = Histogram(
            f"{PREFIX}_publish_duration_seconds",
            "Time from the first send of a request's records to the last acknowledgement.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.event_loop_lag = Histogram(
            f"{PREFIX}_event_loop_lag_seconds",
            "How late the event loop woke a task due every 100 ms: while it is late, every "
            "request waits as long.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        # The gauges below are read when scraped (`set_function`), from the state they
        # describe, so they can never drift from it.
        self.inflight = Gauge(
            f"{PREFIX}_inflight_requests",
            "Webhook requests being handled now.",
            registry=r,
        )
        self.inflight_limit = Gauge(
            f"{PREFIX}_inflight_limit",
            "The in-flight cap (server.max_inflight_requests); past it requests get 503.",
            registry=r,
        )
        self.kafka_ready = Gauge(
            f"{PREFIX}_kafka_ready",
            "1 when the producer runs, the broker answers and every topic exists.",
            registry=r,
        )
        self.ready = Gauge(
            f"{PREFIX}_ready",
            "1 when /readyz answers 200: Kafka ready and not shutting down.",
            registry=r,
        )
        auth_failures = Counter(
            f"{PREFIX}_auth_failures_total",
            "Requests refused with 401, by reason.",
            ["reason"],
            registry=r,
        )
        self.auth_failures = {a: auth_failures.labels(a.value) for a in AuthFailure}
        auth_success = Counter(
            f"{PREFIX}_auth_success_total",
            "Authenticated requests, by the index of the token or secret that matched.",
            ["credential"],
            registry=r,
        )
        self._auth_success = auth_success
        self.auth_success: dict[str, CounterChild] = {}
        self.add_credentials(credentials)
        reloads = Counter(
            f"{PREFIX}_credentials_reloaded_total",
            "Reloads of the credential files (auth.*_file), by result.",
            ["result"],
            registry=r,
        )
        self.credentials_reloaded = {res: reloads.labels(res.value) for res in ReloadResult}
        self.credentials_reload_ok = Gauge(
            f"{PREFIX}_credentials_last_reload_successful",
            "0 while the relay refuses the credential files on disk and keeps serving the "
            "previous credentials; 1 otherwise.",
            registry=r,
        )
        self.credentials_reload_ok.set(1)
        self.credentials_loaded_at = Gauge(
            f"{PREFIX}_credentials_last_reload_success_timestamp_seconds",
            "When the credentials in use were loaded (start-up or the last successful reload).",
            registry=r,
        )
        self.credentials_loaded_at.set_to_current_time()
        unrouted = Counter(
            f"{PREFIX}_unrouted_fields_total",
            "Changes routed to the unrouted topic, by field (known names, else 'other').",
            ["field"],
            registry=r,
        )
        self.unrouted_fields = {
            f: unrouted.labels(f) for f in (*KNOWN_UNROUTED_FIELDS, *unrouted_fields, OTHER_FIELD)
        }
        self.connections = Gauge(
            f"{PREFIX}_connections",
            "Open connections on the public listener.",
            registry=r,
        )
        self.connection_limit = Gauge(
            f"{PREFIX}_connection_limit",
            "The connection cap (server.max_connections).",
            registry=r,
        )
        closed = Counter(
            f"{PREFIX}_connections_closed_total",
            "Public connections the relay closed on its own, by reason.",
            ["reason"],
            registry=r,
        )
        self.connections_closed = {c: closed.labels(c.value) for c in ConnectionEnd}
        self.producer_restarts = Counter(
            f"{PREFIX}_producer_restarts_total",
            "Kafka producers rebuilt after the previous one died.",
            registry=r,
        )
        # A 200 rests on at least min(replication factor, min.insync.replicas) copies.
        replication = Gauge(
            f"{PREFIX}_topic_replication_factor",
            "Replicas of each event type's topic (its least replicated partition); 0 until read.",
            ["event_type"],
            registry=r,
        )
        self.topic_replication_factor = {t: replication.labels(t.value) for t in EventType}
        min_insync = Gauge(
            f"{PREFIX}_topic_min_insync_replicas",
            "min.insync.replicas of each event type's topic; 0 until read (or not readable).",
            ["event_type"],
            registry=r,
        )
        self.topic_min_insync_replicas = {t: min_insync.labels(t.value) for t in EventType}
        self._spool(r)
        build = Gauge(
            f"{PREFIX}_build_info",
            "Always 1; the relay's version as a label.",
            ["version"],
            registry=r,
        )
        build.labels(version).set(1)

    def _spool(self, r: CollectorRegistry) -> None:
        """The durable spool's (relay.spool); all zero while it is off."""
        self.spool_bytes = Gauge(
            f"{PREFIX}_spool_bytes",
            "Bytes of the spool's segment files: records not yet acknowledged by Kafka, and "
            "acknowledged ones whose segment is not deleted yet.",
            registry=r,
        )
        self.spool_max_bytes = Gauge(
            f"{PREFIX}_spool_max_bytes",
            "spool.max_bytes; 0 with the spool off.",
            registry=r,
        )
        self.spool_requests = Gauge(
            f"{PREFIX}_spool_requests",
            "Requests answered 200 from the spool whose records Kafka has not acknowledged yet.",
            registry=r,
        )
        self.spool_oldest_age = Gauge(
            f"{PREFIX}_spool_oldest_age_seconds",
            "How long ago the oldest request still in the spool was spooled; 0 when empty.",
            registry=r,
        )
        spooled = Counter(
            f"{PREFIX}_spool_spooled_total",
            "Requests answered 200 once fsynced in the spool, by why they went there.",
            ["reason"],
            registry=r,
        )
        self.spool_spooled = {reason: spooled.labels(reason.value) for reason in SpoolReason}
        self.spool_drained = Counter(
            f"{PREFIX}_spool_drained_total",
            "Spooled requests whose every record Kafka acknowledged.",
            registry=r,
        )
        self.spool_corrupt_frames = Counter(
            f"{PREFIX}_spool_corrupt_frames_total",
            "Damaged or torn frames found in the spool; each drops the rest of its segment.",
            registry=r,
        )
        refused = Counter(
            f"{PREFIX}_spool_refused_total",
            "Requests the spool did not take (each a 503), by reason.",
            ["reason"],
            registry=r,
        )
        self.spool_refused = {refusal: refused.labels(refusal.value) for refusal in SpoolRefusal}
        self.spool_drain_retries = Counter(
            f"{PREFIX}_spool_drain_retries_total",
            "Times the drainer gave up what it had in flight and sent it again (a send failed, "
            "or the producer died).",
            registry=r,
        )
        self.spool_commit_duration = Histogram(
            f"{PREFIX}_spool_commit_duration_seconds",
            "One group commit: writing the frames queued meanwhile and their fsync.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )

    def add_credentials(self, labels: Iterable[str]) -> None:
        """Children of the success counter for these credential labels (`Authenticator.labels`).
        Labels no longer configured after a reload keep theirs: it stops rising, which is what
        a dashboard watching a rotation wants to see (a removed series would be a gap)."""
        for label in labels:
            if label not in self.auth_success:
                self.auth_success[label] = self._auth_success.labels(label)

    def count_unrouted(self, field: str) -> None:
        child = self.unrouted_fields.get(field) or self.unrouted_fields[OTHER_FIELD]
        child.inc()
