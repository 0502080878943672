"""The whatsapp-relay benchmark: `make bench`, or `python -m bench` from the repository root
(docs/benchmark.md).

One module per concern: cli (flags, result files) drives harness (the run, step by step), which
uses broker (the Kafka broker), topics, relay_process (the relay under test), load (the Go
load generator), reference (the bare aiohttp figure), procstat (/proc sampling), cpus (pinning),
promtext (the relay's /metrics), reconcile (every record read back), report (the JSON result)
and table (the printed summary). payloads makes the request bodies and is the benchmark's own
classification oracle; bare_server is the reference endpoint.
"""
