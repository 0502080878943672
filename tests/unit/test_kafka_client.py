"""The aiokafka adapter: its start-up self-check fails loudly when aiokafka changed."""

import pytest
from aiokafka.producer.sender import Sender

from relay import kafka_client
from relay.config import parse
from relay.kafka_client import KafkaClientError, Producer
from relay.metrics import Metrics
from relay.publish import Publisher
from relay.startup import StartupError


def test_the_installed_aiokafka_has_what_the_adapter_relies_on() -> None:
    assert kafka_client.self_check() == []


def test_a_renamed_internal_is_named_with_the_supported_versions(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delattr(Sender, "sender_task")
    problems = kafka_client.self_check()
    assert problems == ["Sender.sender_task is gone"]
    message = kafka_client.describe_problems(problems)
    assert "Sender.sender_task is gone" in message
    assert "aiokafka>=0.14,<0.15" in message


async def test_the_relay_refuses_to_start_on_an_aiokafka_it_does_not_know(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(kafka_client, "self_check", lambda: ["AIOKafkaClient.send() is gone"])
    settings = parse(None, {"RELAY_AUTH__BEARER_TOKENS": '["t1"]'})
    publisher = Publisher(settings, Metrics("test"))
    with pytest.raises(StartupError, match=r"AIOKafkaClient\.send\(\) is gone"):
        await publisher.start()


def test_a_producer_without_its_sender_is_refused() -> None:
    with pytest.raises(KafkaClientError, match="no `_sender`"):
        Producer(object())


class StartedWithoutSenderTask:
    """A producer that starts, but whose sender exposes no task: it must be stopped again."""

    def __init__(self) -> None:
        self._sender = Sender.__new__(Sender)
        self._sender._sender_task = None  # what the `sender_task` property returns
        self.stopped = False

    async def send(self, *args: object, **kwargs: object) -> None:
        raise AssertionError("never sent")

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        self.stopped = True


async def test_a_producer_whose_sender_has_no_task_is_stopped_and_fails_the_start() -> None:
    fake = StartedWithoutSenderTask()
    producer = Producer(fake)
    with pytest.raises(StartupError, match="the sender has no task after start"):
        await producer.start()
    assert fake.stopped
    assert not producer.alive
