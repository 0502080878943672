"""Development support: what the tests, the benchmark and the scripts share to run the relay
and Kafka on this machine. Not part of the product (the wheel ships only ``relay``).

One module per concern, each written once:

- ``ports``: free loopback ports;
- ``local_kafka``: ``scripts/local-kafka`` driven from Python (a broker or a cluster of its own);
- ``relay_process``: ``whatsapp-relay serve`` as a process, ready when its admin port says so;
- ``topics``: creating, describing and deleting topics with Kafka's admin API (the product's
  own ``relay.topics.create_topics`` stays the way to create the relay's configured topics).

``ports`` and ``relay_process`` use the standard library only. Nothing here does I/O at import
time.
"""
