"""The whatsapp-relay benchmark: `make bench`, or `python -m bench` from the repository root
(docs/benchmark.md).

One module per concern: cli (flags, result files) drives harness (the run, step by step), which
uses broker (the Kafka broker), session (one relay measured: the one under test, or the
--compare-cmd one, or the spooled one), spool (the spooled path's phases and group commits),
topics, relay_process (a relay's process), load (the Go load generator),
rates (--rates), reference (the bare aiohttp figure), procstat (/proc sampling), cpus (pinning),
promtext (the relay's /metrics), looplag (its event-loop lag per phase), reconcile (every record
read back), targets (the benchmark's targets and their ratios), report (the JSON result) and
table (the printed summary). payloads makes the request bodies and is the benchmark's own
classification oracle; bare_server is the reference endpoint.
"""
