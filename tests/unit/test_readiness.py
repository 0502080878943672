from relay.publish import Readiness


def test_ready_only_when_kafka_is_and_webhooks_can_connect() -> None:
    alive = True
    readiness = Readiness(lambda: alive)
    assert readiness.reason == "starting"  # the public listener is not bound yet
    readiness.accepting = True
    assert readiness.reason == "kafka producer not started"
    readiness.kafka_reason = None  # producer up, topics found
    assert readiness.reason is None
    assert readiness.kafka_ready


def test_a_dead_producer_or_shutdown_turns_it_off_at_once() -> None:
    alive = True
    readiness = Readiness(lambda: alive)
    readiness.kafka_reason, readiness.accepting = None, True
    alive = False
    assert readiness.reason == "kafka producer not running"
    assert not readiness.kafka_ready
    alive = True
    readiness.shutting_down = True
    assert readiness.reason == "shutting down"
