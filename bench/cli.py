"""The whatsapp-relay benchmark: throughput, latency and cost on one pinned core, and no data lost.

    .venv/bin/python -m bench            # full run (make bench), about two and a half minutes
    .venv/bin/python -m bench --smoke    # a few seconds, still reconciles (make test)

Steps: generate realistic payloads; build the Go load generator; get a broker
(KAFKA_BOOTSTRAP_SERVERS, else a private scripts/local-kafka instance); create fresh topics with
3 partitions; start the relay as production runs it, pinned to cpu 0 (`taskset -c 0`), with the
broker and the load generator on cpu 1; run a closed loop (maximum throughput) and open loops
at fixed rates or fractions of that maximum (latency measured from each request's due time),
with the relay's event-loop lag per phase from /metrics; stop the relay; run the same closed
loop against another version (--compare-cmd, if given) and against a bare aiohttp server (the
reference, skipped in smoke runs); consume every topic from the beginning and reconcile the
records found against the 200 answers, payload by payload. A single lost record fails the run
(exit code 1). Timings never fail it: they are reported, in a table and in a JSON file
(bench/results/).

This module is the command line and the result files; bench/harness.py runs the steps. See
docs/benchmark.md.
"""

from __future__ import annotations

import argparse
import json
import signal
from pathlib import Path
from typing import Any

from bench import rates
from bench.broker import DEFAULT_PORT, DEFAULT_STATE_DIR
from bench.harness import Bench
from bench.progress import BenchError, log
from bench.table import print_table

RESULTS_DIR = Path(__file__).resolve().parent / "results"


class _HelpWithDefaults(argparse.ArgumentDefaultsHelpFormatter):
    """Shows an option's default, except where there is none to show."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None:
            return action.help
        return super()._get_help_string(action)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="python -m bench",
        description=(__doc__ or "").split("\n\n")[0],
        formatter_class=_HelpWithDefaults,
    )
    ap.add_argument(
        "--smoke",
        action="store_true",
        help="a few seconds: closed loop 2 s + one open-loop rate 2 s; still reconciles",
    )
    ap.add_argument("--duration", type=float, default=20.0, help="closed-loop measured seconds")
    ap.add_argument("--warmup", type=float, default=3.0, help="closed-loop warm-up seconds")
    ap.add_argument("--connections", type=int, default=128, help="closed-loop connections")
    ap.add_argument(
        "--rates",
        default="1000,0.5x,0.75x",
        help="open-loop rates, comma separated: requests/s, or Nx for N times the closed "
        "loop's acked/s in this run (rounded); empty for none",
    )
    ap.add_argument(
        "--rate-duration", type=float, default=15.0, help="measured seconds per open-loop rate"
    )
    ap.add_argument(
        "--rate-warmup", type=float, default=2.0, help="warm-up seconds per open-loop rate"
    )
    ap.add_argument(
        "--open-connections",
        type=int,
        default=256,
        help="open-loop connection pool (the most requests in flight at once)",
    )
    ap.add_argument(
        "--arrivals",
        choices=("poisson", "uniform"),
        default="poisson",
        help="open loop: how requests arrive: poisson (independent senders, as Meta's and a "
        "gateway's webhooks reach a pod) or uniform (one every 1/rate)",
    )
    ap.add_argument("--pause", type=float, default=2.0, help="seconds between phases")
    ap.add_argument(
        "--request-timeout", type=float, default=10.0, help="per-request timeout, seconds"
    )
    ap.add_argument(
        "--payload-count", type=int, default=2000, help="distinct bodies (sent round-robin)"
    )
    ap.add_argument("--seed", type=int, default=1, help="payload generator seed")
    ap.add_argument("--partitions", type=int, default=3)
    ap.add_argument(
        "--bootstrap",
        help="Kafka bootstrap servers (default: $KAFKA_BOOTSTRAP_SERVERS, "
        "else a private scripts/local-kafka broker)",
    )
    ap.add_argument(
        "--kafka-dir", type=Path, default=DEFAULT_STATE_DIR, help="state dir of the private broker"
    )
    ap.add_argument(
        "--kafka-port", type=int, default=DEFAULT_PORT, help="port of the private broker"
    )
    ap.add_argument("--keep-broker", action="store_true", help="leave the private broker running")
    ap.add_argument("--keep-topics", action="store_true", help="do not delete the run's topics")
    ap.add_argument(
        "--keep-workdir", action="store_true", help="keep payloads, relay config and log"
    )
    ap.add_argument(
        "--relay-cmd",
        help="command to run instead of `whatsapp-relay serve --config {config}` "
        "({config} is replaced by the generated config file)",
    )
    ap.add_argument(
        "--compare-cmd",
        help="another relay (same {config} substitution) to run the same closed loop against "
        "after the relay's phases, with its own topics, reconciled too; "
        "its figures and the ratios go into the result",
    )
    ap.add_argument(
        "--relay-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra environment for the relay (and the --compare-cmd one), "
        "e.g. RELAY_KAFKA__LINGER_MS=5 (repeatable)",
    )
    ap.add_argument(
        "--spool",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also run the phases against the relay with every request spooled "
        "(spool.after_seconds 0): the fsync's cost next to the direct path",
    )
    ap.add_argument(
        "--spool-dir",
        type=Path,
        help="where the spooled run's spool goes: the disk whose fsync is measured "
        "(default: the run's work dir)",
    )
    ap.add_argument("--ready-timeout", type=float, default=60.0, help="seconds to wait for /readyz")
    ap.add_argument("--loadgen", help="a built load generator (default: build bench/loadgen)")
    ap.add_argument(
        "--no-pin", dest="pin", action="store_false", help="do not pin processes to cpus"
    )
    ap.add_argument(
        "--reference",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="also measure bench/bare_server.py (default: on, off with --smoke)",
    )
    ap.add_argument(
        "--floor",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="also measure bench/floor_server.py, the stack's floor (aiohttp + aiokafka, one "
        "record per request), with the same phases, and the relay against it, both at once "
        "(default: on, off with --smoke)",
    )
    ap.add_argument(
        "--paired-rounds",
        type=int,
        default=3,
        help="rounds of the relay and the floor measured at once (bench/paired.py), for the "
        "closed loop and the 1,000/s phase; the targets use their median",
    )
    ap.add_argument(
        "--paired-duration", type=float, default=8.0, help="measured seconds per paired round"
    )
    ap.add_argument(
        "--reference-duration",
        type=float,
        default=10.0,
        help="measured seconds of the reference (its warm-up and connections are the closed "
        "loop's)",
    )
    ap.add_argument(
        "--output",
        type=Path,
        help="result file (default: bench/results/<run id>.json, "
        "and latest.json; smoke: bench/results/smoke.json)",
    )
    args = ap.parse_args(argv)
    if args.smoke:
        defaults = {
            "duration": 2.0,
            "warmup": 0.5,
            "rate_duration": 2.0,
            "rate_warmup": 0.5,
            "pause": 0.5,
            "rates": "500",
            "connections": 16,
            "open_connections": 32,
            "paired_rounds": 1,
            "paired_duration": 2.0,
        }
        for key, value in defaults.items():
            if getattr(args, key) == ap.get_default(key):
                setattr(args, key, value)
    if args.reference is None:
        args.reference = not args.smoke
    if args.floor is None:
        args.floor = not args.smoke
    if args.paired_rounds < 1:
        ap.error("--paired-rounds must be at least 1")
    try:
        args.rates = rates.parse(str(args.rates))
    except ValueError as exc:
        ap.error(f"--rates: {exc}")
    return args


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    bench = Bench(args)
    # SIGTERM (e.g. a test timeout) takes the same cleanup path as Ctrl-C.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        res = bench.execute()
    except BenchError as exc:
        log(f"FAILED: {exc}")
        return 2
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    finally:
        bench.cleanup()

    if args.output:
        paths = [args.output]
    elif args.smoke:
        paths = [RESULTS_DIR / "smoke.json"]
    else:
        paths = [RESULTS_DIR / f"{bench.run_id}.json", RESULTS_DIR / "latest.json"]
    text = json.dumps(res, indent=2) + "\n"
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    print_table(res, paths[0])
    if not res["ok"]:
        log("FAILED: " + "; ".join(res["problems"]))
        return 1
    return 0
