from relay.publish import Readiness
from relay.topics import TopicCheck


def ready_readiness() -> Readiness:
    readiness = Readiness(lambda: True)
    readiness.accepting = True
    readiness.producer_problem = None
    readiness.update(TopicCheck())
    return readiness


def test_ready_only_when_kafka_answered_and_webhooks_can_connect() -> None:
    readiness = Readiness(lambda: True)
    assert readiness.reason == "starting"  # the public listener is not bound yet
    readiness.accepting = True
    readiness.producer_problem = None  # the producer started
    assert readiness.reason == "kafka not reached yet"
    readiness.update(TopicCheck(unreachable="kafka unreachable: no broker known"))
    assert readiness.reason == "kafka unreachable: no broker known"
    readiness.update(TopicCheck())  # the brokers answered, the topics exist
    assert readiness.reason is None
    assert readiness.kafka_ready
    assert readiness.degraded is None


def test_kafka_going_away_after_first_contact_keeps_it_ready_but_degraded() -> None:
    readiness = ready_readiness()
    readiness.update(TopicCheck(unreachable="kafka unreachable: TimeoutError"))
    assert readiness.reason is None  # every replica would flip at once: the relay answers
    assert not readiness.kafka_ready
    assert readiness.degraded == "kafka unreachable: TimeoutError"
    readiness.update(TopicCheck())
    assert readiness.kafka_ready
    assert readiness.degraded is None


def test_missing_or_refused_topics_turn_it_off_until_fixed() -> None:
    readiness = ready_readiness()
    readiness.update(TopicCheck(problem="topics missing: whatsapp.status"))
    assert readiness.reason == "topics missing: whatsapp.status"
    # Unreachable afterwards: the last known topic problem stands.
    readiness.update(TopicCheck(unreachable="kafka unreachable: x"))
    assert readiness.reason == "topics missing: whatsapp.status"
    readiness.update(TopicCheck())
    assert readiness.reason is None


def test_a_dead_producer_or_shutdown_turns_it_off_at_once() -> None:
    alive = True
    readiness = Readiness(lambda: alive)
    readiness.accepting = True
    readiness.producer_problem = None
    readiness.update(TopicCheck())
    alive = False
    assert readiness.reason == "kafka producer not running"
    assert not readiness.kafka_ready
    readiness.producer_problem = "kafka producer cannot start: refused"
    assert readiness.reason == "kafka producer cannot start: refused"
    alive = True
    readiness.shutting_down = True
    assert readiness.reason == "shutting down"
