"""The run's summary on stdout: one row per phase, the reconciliation per event type, the
targets, versions and notes. The JSON result holds more; docs/benchmark.md explains each column.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.cpus import LOAD_CPU
from bench.payloads import EVENT_TYPES


def fmt(v: Any, spec: str = ".2f") -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return format(v, spec)
    return str(v)


def print_table(res: dict[str, Any], path: Path | None) -> None:
    p = print
    s = res["settings"]
    if s["pinned"]:
        where = (
            f"relay pinned to cpu {s['relay_cpu']}, "
            f"broker and load generator on cpu {s['broker_and_load_cpu']}"
        )
    else:
        where = "NOT pinned"
    p()
    p(f"whatsapp-relay benchmark {res['run_id']}{' (smoke)' if res['smoke'] else ''}: {where}")
    pl = res["payloads"]
    p(
        f"payloads: {pl['count']} bodies of {pl['bytes']['min']}-{pl['bytes']['max']} B "
        f"(median {pl['bytes']['median']}), {pl['records_per_request']} records per request"
    )
    cols = [
        ("phase", 16),
        ("offered/s", 10),
        ("acked/s", 9),
        ("p50", 8),
        ("p90", 8),
        ("p99", 8),
        ("p99.9", 8),
        ("max", 8),
        ("late", 7),
        ("non-200", 8),
        ("errors", 7),
        ("relay cpu", 10),
        ("cpu s/1k", 9),
        ("rss MiB", 8),
        ("cpu1", 6),
    ]
    head = "".join(f"{name:<{w}}" if i == 0 else f"{name:>{w}}" for i, (name, w) in enumerate(cols))
    p()
    p("latencies in ms; cpu s/1k: relay cpu seconds per 1000 requests; cpu1: how busy the")
    p("broker + load generator core was; * marks an open-loop rate the relay did not keep up with")
    p(head)
    p("-" * len(head))
    cmp = res.get("comparison")
    for ph in phases(res):
        lat, rel = ph["latency_ms"], ph["relay"]
        offered = f"{ph['offered_rps']:.0f}" if ph["offered_rps"] else f"c={ph['connections']}"
        acked = f"{ph['acked_rps']:.0f}" + ("*" if ph.get("saturated") else "")
        values = [
            ph["name"],
            offered,
            acked,
            f"{lat['p50']:.2f}",
            f"{lat['p90']:.2f}",
            f"{lat['p99']:.2f}",
            f"{lat['p99_9']:.2f}",
            f"{lat['max']:.1f}",
            fmt(ph.get("late_sends")),
            str(ph["non_200"]),
            str(sum(ph["errors"].values())),
            fmt(rel.get("cpu_utilisation"), ".0%"),
            fmt(rel.get("cpu_seconds_per_1000_requests"), ".3f"),
            fmt(rel.get("rss_mib"), ".1f"),
            fmt(rel.get("core_busy", {}).get(f"cpu{LOAD_CPU}"), ".0%"),
        ]
        p(
            "".join(
                f"{v:<{w}}" if i == 0 else f"{v:>{w}}"
                for i, (v, (_, w)) in enumerate(zip(values, cols, strict=True))
            )
        )
    p()
    if res["open_loop"]:
        p(
            "open loop: latency runs from each request's due time, so queueing is counted "
            "(no coordinated omission); late = written > 1 ms after due"
        )
    print_lag(res)
    ref = res.get("reference")
    if ref:
        p(
            f"reference, bare aiohttp + uvloop (token check, orjson parse, no Kafka), "
            f"c={ref['connections']}, {ref['warmup_seconds']:g} s warm-up + "
            f"{ref['duration_seconds']:g} s: {ref['acked_rps']:.0f} acked/s, "
            f"p99 {ref['latency_ms']['p99']:.2f} ms, "
            f"cpu s/1k {fmt(ref['cpu_seconds_per_1000_requests'], '.3f')}; "
            f"relay closed loop / reference: {fmt(ref['relay_closed_loop_ratio'], '.3f')}"
        )
    if res.get("floor"):
        print_floor(res["floor"])
    if cmp:
        vs, crelay = cmp["versus"], cmp["relay"]
        lower = vs["cpu_seconds_per_1000_requests_lower_by"]
        cost = "-" if lower is None else f"{abs(lower):.0%} {'lower' if lower >= 0 else 'higher'}"
        p(f"compare: {' '.join(cmp['command'])}")
        p(
            f"  relay / compare, closed loop: acked/s x{fmt(vs['acked_rps_ratio'], '.3f')}, "
            f"cpu s/1k {cost}, peak RSS x{fmt(vs['peak_rss_mib_ratio'], '.3f')}; compare: "
            f"peak RSS {fmt(crelay.get('peak_rss_mib'), '.1f')} MiB, "
            f"exit code {crelay.get('exit_code')}, "
            f"reconciliation {'OK, zero lost' if cmp['reconciliation']['ok'] else 'FAILED'}"
        )
        print_paired(cmp.get("paired"))
    if res.get("spool"):
        print_spool(res["spool"])
    relay = res["relay"]
    p(
        f"relay: peak RSS {fmt(relay.get('peak_rss_mib'), '.1f')} MiB, "
        f"cpu s/1k over the whole run {fmt(relay.get('cpu_seconds_per_1000_requests'), '.3f')}, "
        f"exit code {relay.get('exit_code')} after {fmt(relay.get('shutdown_seconds'))} s"
    )
    rc = res["reconciliation"]
    p()
    p(f"{'event type':<12}{'expected':>12}{'found':>12}{'lost':>8}{'extra':>8}")
    for t in EVENT_TYPES:
        p(
            f"{t:<12}{rc['expected'][t]:>12}{rc['found'][t]:>12}{rc['lost'][t]:>8}{rc['extra'][t]:>8}"
        )
    verdict = "OK, zero lost" if rc["ok"] else "FAILED"
    p(
        f"reconciliation: {verdict} ({rc['answered_200']} requests answered 200, "
        f"{rc['records_consumed']} records read back in {rc['consume_seconds']} s)"
    )
    p()
    if res["targets"] is None:
        p("targets: not evaluated in a smoke run")
    else:
        for name, t in res["targets"].items():
            if t["met"] is None:
                p(f"target {name} {t['target']}: not measured")
                continue
            mark = "met" if t["met"] else "NOT met"
            p(f"target {name} {t['target']}: {fmt(t['value'], 'g')} -> {mark}")
    v = res["versions"]
    p(
        f"versions: python {v['python']}, whatsapp-relay {v['whatsapp_relay']}, "
        f"aiohttp {v['aiohttp']}, aiokafka {v['aiokafka']}, orjson {v['orjson']}, "
        f"uvloop {v['uvloop']}, kafka {v['kafka_broker']}, {v['go']}"
    )
    mach = res["machine"]
    p(
        f"machine: {mach['cpu_model']}, {mach['cpus']} cpus, {mach['memory_gib']} GiB, "
        f"kernel {mach['kernel']}"
    )
    for note in res["notes"]:
        p(f"note: {note}")
    if path:
        p(f"results: {path}")
    if res["problems"]:
        p()
        bar = "!" * 78
        p(bar)
        for prob in res["problems"]:
            p(f"!! {prob}")
        p(bar)


def print_paired(sections: list[dict[str, Any]] | None) -> None:
    """Ratios of the relay and another server measured at once (bench/paired.py)."""
    for section in sections or ():
        other = section["versus"]
        what = "acked/s" if section["mode"] == "closed" else "cpu s/1k"
        where = (
            f"closed loop, {section['connections_each']} connections each"
            if section["mode"] == "closed"
            else f"{section['rate']:g}/s each ({section['arrivals']})"
        )
        low, high = section["ratio_range"] or (None, None)
        rounds = "; ".join(
            f"{r['relay'][section['ratio_of']]:g} / {r[other][section['ratio_of']]:g}"
            for r in section["rounds"]
        )
        print(
            f"  relay / {other}, {what}, both at once on one core ({where}): "
            f"x{fmt(section['ratio_median'], '.3f')} (median of {len(section['rounds'])}, "
            f"range {fmt(low, '.3f')}-{fmt(high, '.3f')}; relay / {other} per round: {rounds})"
        )


def phases(res: dict[str, Any]) -> list[dict[str, Any]]:
    """Every measured phase in table order: closed loop, open loop, the floor's, the compared
    relay's closed loop, then the spooled path's."""
    cmp, spool, floor = res.get("comparison"), res.get("spool"), res.get("floor")
    return [
        *res["closed_loop"],
        *res["open_loop"],
        *([*floor["closed_loop"], *floor["open_loop"]] if floor else []),
        *([cmp["closed_loop"]] if cmp else []),
        *([*spool["closed_loop"], *spool["open_loop"]] if spool else []),
    ]


def print_floor(floor: dict[str, Any]) -> None:
    """The relay against the stack's floor: the paired ratios, then phase by phase."""
    print(f"floor: {floor['what']}; reconciliation "
          f"{'OK, zero lost' if floor['reconciliation'].get('ok') else 'FAILED'}")  # fmt: skip
    print_paired(floor.get("paired"))
    for name, vs in floor["versus_phase_by_phase"].items():
        print(
            f"  relay / floor, {name}, one after the other: acked/s "
            f"x{fmt(vs['acked_rps_ratio'], '.3f')}, cpu s/1k "
            f"x{fmt(vs['cpu_seconds_per_1000_requests_ratio'], '.3f')}"
        )


def print_spool(spool: dict[str, Any]) -> None:
    """What the spooled phases' group commits cost."""
    commit = spool["group_commit"]
    lag = commit.get("commit_ms") or {}
    print(
        f"spool ({spool['file_system']}, every request spooled): {commit['requests']} requests "
        f"in {commit['commits']} group commits ({fmt(commit.get('requests_per_commit'))} a "
        f"commit), a commit (write + fsync) mean {fmt(lag.get('mean_ms'))} ms, p99 <= "
        f"{lag_bound(lag, 'p99_le_ms') if lag else '-'} ms; write + fsync time per request "
        f"{fmt(commit.get('commit_ms_per_request'), '.4f')} ms; drained "
        f"{fmt(spool['drained_seconds'])} s after the load; reconciliation "
        f"{'OK, zero lost' if spool['reconciliation']['ok'] else 'FAILED'}"
    )


def lag_bound(lag: dict[str, Any], key: str) -> str:
    value = lag.get(key)
    if value is not None:
        return f"{value:g}"
    # No upper bound: the sample fell beyond the largest bucket (or there was none).
    return f">{lag['beyond_ms']:g}" if "beyond_ms" in lag else "-"


def print_lag(res: dict[str, Any]) -> None:
    """The relay's own event-loop lag per phase: how a latency tail at a light load shows."""
    rows = [ph for ph in phases(res) if ph.get("event_loop_lag") is not None]
    if not rows:
        return
    print()
    print(
        "event-loop lag per phase, warm-up included (whatsapp_relay_event_loop_lag_seconds: a "
        "sample every 100 ms;"
    )
    print("p99 and max are the upper bounds of their histogram buckets; ms)")
    print(f"{'phase':<16}{'samples':>9}{'mean':>9}{'p99 <=':>9}{'max <=':>9}")
    for ph in rows:
        lag = ph["event_loop_lag"]
        print(
            f"{ph['name']:<16}{lag['samples']:>9}{fmt(lag.get('mean_ms'), '.2f'):>9}"
            f"{lag_bound(lag, 'p99_le_ms'):>9}{lag_bound(lag, 'max_le_ms'):>9}"
        )
    missing = [ph["name"] for ph in phases(res) if ph.get("event_loop_lag") is None]
    if missing:
        print(f"(no loop-lag metric from the relay in: {', '.join(missing)})")
