"""Development support: what the tests, the benchmark and the scripts share to run the relay
and Kafka on this machine. Not part of the product (the wheel ships only ``relay``).

One module per concern, each written once:

- ``ports``: free loopback ports;
- ``local_kafka``: ``scripts/local-kafka`` driven from Python (a broker or a cluster of its own);
- ``relay_process``: ``whatsapp-relay serve`` as a process, ready when its admin port says so;
- ``topics``: creating, describing, reading back, counting and deleting topics (the product's
  own ``relay.topics.create_topics`` stays the way to create the relay's configured topics);
- ``docker_install_check``: the Dockerfile replayed without Docker
  (``scripts/docker-install-check``);
- ``samples``: webhook bodies shaped like Meta's payloads;
- ``failover``: a relay under steady load while brokers crash and hang (the failover test and
  ``python -m bench.failover``).

``ports``, ``relay_process`` and ``docker_install_check`` use the standard library only, so that
any ``python3`` runs ``scripts/docker-install-check``; keep this file free of imports for the
same reason. Nothing here does I/O at import time.
"""
