from relay.readiness import KafkaState, Readiness


def ready() -> tuple[Readiness, KafkaState]:
    kafka = KafkaState(producer_problem=None)
    kafka.checked(None, None)
    readiness = Readiness(kafka, lambda: True)
    readiness.accepting = True
    return readiness, kafka


def test_ready_only_when_kafka_answered_and_webhooks_can_connect() -> None:
    kafka = KafkaState()
    readiness = Readiness(kafka, lambda: True)
    assert readiness.reason == "starting"  # the public listener is not bound yet
    readiness.accepting = True
    kafka.producer_problem = None  # the producer started
    assert readiness.reason == "kafka not reached yet"
    assert kafka.checked("kafka unreachable: no broker known", None)
    assert readiness.reason == "kafka unreachable: no broker known"
    assert kafka.checked(None, None)  # the brokers answered, the topics exist
    assert readiness.reason is None
    assert readiness.kafka_ready
    assert readiness.degraded is None
    assert not kafka.checked(None, None)  # nothing changed


def test_kafka_going_away_after_first_contact_keeps_it_ready_but_degraded() -> None:
    readiness, kafka = ready()
    kafka.checked("kafka unreachable: TimeoutError", None)
    assert readiness.reason is None  # every replica would flip at once: the relay answers
    assert not readiness.kafka_ready
    assert readiness.degraded == "kafka unreachable: TimeoutError"
    kafka.checked(None, None)
    assert readiness.kafka_ready
    assert readiness.degraded is None


def test_missing_or_refused_topics_turn_it_off_until_fixed() -> None:
    readiness, kafka = ready()
    kafka.checked(None, "topics missing: whatsapp.status")
    assert readiness.reason == "topics missing: whatsapp.status"
    # Unreachable afterwards: the last known topic problem stands.
    kafka.checked("kafka unreachable: x", None)
    assert readiness.reason == "topics missing: whatsapp.status"
    kafka.checked(None, None)
    assert readiness.reason is None


def test_a_dead_producer_or_shutdown_turns_it_off_at_once() -> None:
    alive = True
    kafka = KafkaState(producer_problem=None)
    kafka.checked(None, None)
    readiness = Readiness(kafka, lambda: alive)
    readiness.accepting = True
    assert readiness.reason is None
    alive = False
    assert readiness.reason == "kafka producer not running"
    assert not readiness.kafka_ready
    kafka.producer_problem = "kafka producer cannot start: refused"
    assert readiness.reason == "kafka producer cannot start: refused"
    alive = True
    readiness.shutting_down = True
    assert readiness.reason == "shutting down"
