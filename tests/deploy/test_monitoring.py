"""The Grafana dashboard and the Prometheus alert rules shipped with the Helm chart.

They must only query metrics (and labels, and label values) the relay really exposes, the rules
must load in Prometheus and behave as their unit tests say, and the dashboard must be well formed
and filter every query by the namespace/job/pod variables.

promtool comes from scripts/get-promtool (a fitting one on PATH, else built once with `go install`,
then cached; `make test` builds it beside the suite, and the promtool tests, marked needs_tool, run
last). Without it the promtool tests fail: they are part of the suite, never skipped.
"""

from __future__ import annotations

import functools
import json
import math
import re
import subprocess
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

REPO = Path(__file__).resolve().parents[2]
FILES = REPO / "deploy" / "helm" / "whatsapp-relay" / "files"
DASHBOARD = FILES / "dashboard.json"
ALERTS = FILES / "alerts.yaml"
ALERTS_TEST = FILES / "alerts.test.yaml"
GET_PROMTOOL = REPO / "scripts" / "get-promtool"

PREFIX = "whatsapp_relay_"
# Labels Prometheus attaches from the scrape target (static config or Kubernetes service
# discovery / ServiceMonitor), not from the relay's exposition.
TARGET_LABELS = frozenset(
    {"namespace", "job", "pod", "instance", "container", "service", "endpoint"}
)
# Series Prometheus makes itself for every target.
SYNTHETIC_METRICS: dict[str, dict[str, set[str]]] = {"up": {}}
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
FILTER_VARIABLES = {"namespace", "job", "pod"}
REQUIRED_ALERTS = {
    "WhatsAppRelayDown",
    "WhatsAppRelayNotReady",
    "WhatsAppRelayHighErrorRatio",
    "WhatsAppRelayPublishLatencyHigh",
    "WhatsAppRelayAuthFailureSpike",
    "WhatsAppRelayCredentialReloadFailing",
    "WhatsAppRelayUnroutedFields",
    "WhatsAppRelayProducerRestarting",
    "WhatsAppRelayKafkaUnavailable",
    "WhatsAppRelayTopicNotDurable",
    "WhatsAppRelaySpoolFilling",
    "WhatsAppRelaySpoolStale",
    "WhatsAppRelaySpoolCorrupt",
}
SEVERITIES = {"critical", "warning", "info"}
# Grafana's built-in variables, replaced by a plausible value before promtool parses a query.
GRAFANA_INTERVALS = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "6h"}


# --------------------------------------------------------------------------- the relay's side


@dataclass
class Exposed:
    """Series names the relay exposes, each with its label names and the values seen."""

    labels: dict[str, dict[str, set[str]]] = field(default_factory=dict)
    buckets: dict[str, list[float]] = field(default_factory=dict)
    families: dict[str, set[str]] = field(default_factory=dict)  # family -> its series names


@functools.cache
def exposed() -> Exposed:
    from relay.metrics import Metrics

    try:
        # One token and one secret, so that auth_success_total has a child (and its label).
        metrics = Metrics(version="test", credentials=("bearer:0", "app_secret:0"))
    except TypeError:
        metrics = Metrics(version="test")
    text = generate_latest(metrics.registry).decode()
    result = Exposed()
    for family in text_string_to_metric_families(text):
        # Prometheus scrapes the *_created series too, but nothing here should query them.
        samples = [s for s in family.samples if not s.name.endswith("_created")]
        if family.samples and not samples:
            continue
        names = result.families.setdefault(family.name, set())
        if not samples:  # declared, no child yet: derive the series names
            suffixes = {
                "counter": ["_total"],
                "histogram": ["_bucket", "_count", "_sum"],
                "summary": ["", "_count", "_sum"],
            }.get(family.type, [""])
            for suffix in suffixes:
                names.add(family.name + suffix)
                result.labels.setdefault(family.name + suffix, {})
        for sample in samples:
            names.add(sample.name)
            per_label = result.labels.setdefault(sample.name, {})
            for label, value in sample.labels.items():
                per_label.setdefault(label, set()).add(value)
            if sample.name.endswith("_bucket"):
                bound = float(sample.labels["le"])
                bounds = result.buckets.setdefault(sample.name, [])
                if bound not in bounds:
                    bounds.append(bound)
    for name, labels in SYNTHETIC_METRICS.items():
        result.labels[name] = dict(labels)
    return result


def test_relay_exposes_the_documented_metrics() -> None:
    """Guards the parsing below: if this fails, the other tests check against the wrong set."""
    names = exposed().labels
    for name in (
        "whatsapp_relay_requests_total",
        "whatsapp_relay_publish_duration_seconds_bucket",
        "whatsapp_relay_ready",
        "whatsapp_relay_build_info",
        "process_cpu_seconds_total",
    ):
        assert name in names
    assert "accepted" in names["whatsapp_relay_requests_total"]["outcome"]
    assert "credential" in names["whatsapp_relay_auth_success_total"]


# --------------------------------------------------------------------------- PromQL, roughly

_SELECTOR = re.compile(r"([a-zA-Z_:][\w:]*)?\s*\{([^{}]*)\}")
_MATCHER = re.compile(r'([a-zA-Z_]\w*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_RANGE = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^()]*)\)")
_IDENTIFIER = re.compile(r"(?<![\w:.$])([a-zA-Z_:][\w:]*)(\s*\()?")
_KEYWORDS = frozenset(
    {
        "and",
        "or",
        "unless",
        "bool",
        "offset",
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "atan2",
        "inf",
        "nan",
        "start",
        "end",
        "step",
    }
)
_PLAIN_ALTERNATION = re.compile(r"[\w:]+(\|[\w:]+)*")


@dataclass
class Matcher:
    label: str
    op: str
    value: str


@dataclass
class Query:
    """What a PromQL expression references: metric names, their matchers, grouping labels."""

    expr: str
    metrics: list[tuple[str, list[Matcher]]]
    grouping: set[str]

    @property
    def names(self) -> set[str]:
        return {name for name, _ in self.metrics}


def parse(expr: str) -> Query:
    """Metric identifiers, label matchers and grouping labels of a PromQL expression.

    Not a PromQL parser (promtool checks the syntax); it finds identifiers by elimination:
    selector braces, strings, range brackets and grouping clauses are taken out first, then an
    identifier that is not a keyword and not followed by "(" is a metric name.
    """
    metrics: list[tuple[str, list[Matcher]]] = []

    def selector(match: re.Match[str]) -> str:
        matchers = [Matcher(*m) for m in _MATCHER.findall(match.group(2))]
        name = match.group(1)
        if name is None:
            names = [m.value for m in matchers if m.label == "__name__" and m.op == "="]
            assert names, f"selector without a metric name in {expr!r}"
            name = names[0]
        metrics.append((name, matchers))
        return " "

    rest = _SELECTOR.sub(selector, expr)
    rest = _STRING.sub(" ", rest)
    rest = _RANGE.sub(" ", rest)
    grouping: set[str] = set()
    while True:
        found = _GROUPING.search(rest)
        if not found:
            break
        grouping |= {label.strip() for label in found.group(2).split(",") if label.strip()}
        rest = rest[: found.start()] + " " + rest[found.end() :]
    for identifier, call in _IDENTIFIER.findall(rest):
        if call or identifier.lower() in _KEYWORDS:
            continue
        metrics.append((identifier, []))
    return Query(expr, metrics, grouping)


def test_parse_finds_metrics_labels_and_grouping() -> None:
    q = parse(
        'histogram_quantile(0.99, sum by (le, pod) (rate(a_bucket{outcome=~"x|y", job="j"}'
        "[$__rate_interval]))) / on (pod) group_left sum(b) > 1e3 and absent(up == 1)"
        ' or label_replace(c, "dst", "$1", "src", "(.*)") offset 5m'
    )
    assert q.names == {"a_bucket", "b", "up", "c"}
    assert q.grouping == {"le", "pod"}
    assert [(m.label, m.op, m.value) for m in q.metrics[0][1]] == [
        ("outcome", "=~", "x|y"),
        ("job", "=", "j"),
    ]


# --------------------------------------------------------------------------- the assets


def load_rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(ALERTS.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def load_dashboard() -> dict[str, Any]:
    dashboard: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return dashboard


def iter_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from iter_panels(panel.get("panels", []))


def dashboard_queries() -> list[tuple[str, str]]:
    """(where, PromQL) for every panel target and every label_values() variable query."""
    dashboard = load_dashboard()
    queries = []
    for panel in iter_panels(dashboard["panels"]):
        for target in panel.get("targets", []):
            queries.append(
                (f"panel {panel['id']} {panel.get('title')!r} {target['refId']}", target["expr"])
            )
    for variable in dashboard["templating"]["list"]:
        if variable["type"] != "query":
            continue
        query = variable["query"]
        text = query["query"] if isinstance(query, dict) else query
        found = re.fullmatch(r"\s*label_values\((.*),\s*(\w+)\s*\)\s*", text)
        assert found, f"variable {variable['name']}: expected label_values(selector, label)"
        # The label whose values are listed must exist too: check it as a grouping label.
        queries.append(
            (f"variable {variable['name']}", f"group by ({found.group(2)}) ({found.group(1)})")
        )
    return queries


def all_queries() -> list[tuple[str, str]]:
    rules = [
        (f"alert {rule.get('alert') or rule.get('record')}", rule["expr"]) for rule in load_rules()
    ]
    return rules + dashboard_queries()


QUERIES = all_queries()


@pytest.mark.parametrize(("where", "expr"), QUERIES, ids=[w for w, _ in QUERIES])
def test_query_references_only_exposed_metrics_and_labels(where: str, expr: str) -> None:
    known = exposed().labels
    query = parse(expr)
    assert query.metrics, f"{where}: no metric found in {expr!r}"
    unknown = query.names - known.keys()
    assert not unknown, f"{where}: the relay does not expose {sorted(unknown)}"

    available = set(TARGET_LABELS)
    for name, matchers in query.metrics:
        labels = known[name]
        available |= labels.keys()
        for matcher in matchers:
            assert matcher.label == "__name__" or matcher.label in labels.keys() | TARGET_LABELS, (
                f"{where}: {name} has no label {matcher.label!r} (it has {sorted(labels)})"
            )
            values = labels.get(matcher.label)
            if values and _PLAIN_ALTERNATION.fullmatch(matcher.value):
                wrong = set(matcher.value.split("|")) - values
                assert not wrong, (
                    f"{where}: {name}{{{matcher.label}}} never takes the values {sorted(wrong)}"
                )
    missing = query.grouping - available
    assert not missing, f"{where}: grouping by labels no queried metric has: {sorted(missing)}"


def test_every_relay_metric_is_on_the_dashboard() -> None:
    referenced = set().union(*(parse(expr).names for _, expr in dashboard_queries()))
    unused = [
        family
        for family, names in exposed().families.items()
        if family.startswith(PREFIX) and not names & referenced
    ]
    assert not unused, f"metrics without a dashboard panel: {sorted(unused)}"


# --------------------------------------------------------------------------- alert rules


def test_rules_are_well_formed() -> None:
    doc = yaml.safe_load(ALERTS.read_text())
    assert set(doc) == {"groups"}
    groups = Counter(group["name"] for group in doc["groups"])
    assert all(n == 1 for n in groups.values()), f"duplicate group names: {groups}"
    alerts: Counter[str] = Counter()
    for group in doc["groups"]:
        assert group["rules"], f"group {group['name']} has no rules"
        for rule in group["rules"]:
            assert "record" not in rule, "recording rules belong in their own group/file"
            name = rule.get("alert")
            assert isinstance(name, str), rule
            assert re.fullmatch(r"WhatsAppRelay[A-Z]\w+", name), rule
            alerts[name] += 1
            assert set(rule) <= {
                "alert",
                "expr",
                "for",
                "keep_firing_for",
                "labels",
                "annotations",
            }, f"{name}: unexpected keys"
            assert isinstance(rule.get("expr"), str), name
            assert rule["expr"].strip(), name
            assert rule["labels"]["severity"] in SEVERITIES, name
            annotations = rule["annotations"]
            assert annotations["summary"].strip(), name
            assert annotations["description"].strip(), name
            if "for" in rule:
                assert re.fullmatch(r"(\d+[smhdwy])+", rule["for"]), name
            for text in annotations.values():
                assert text.count("{{") == text.count("}}"), f"{name}: unbalanced template"
    assert all(n == 1 for n in alerts.values()), f"duplicate alerts: {alerts}"
    assert alerts.keys() >= REQUIRED_ALERTS, f"missing: {REQUIRED_ALERTS - alerts.keys()}"


@pytest.mark.parametrize("rule", load_rules(), ids=lambda rule: rule["alert"])
def test_annotations_use_labels_the_alert_has(rule: dict[str, Any]) -> None:
    """$labels.x in a summary is empty unless the expression keeps label x."""
    query = parse(rule["expr"])
    if query.grouping:
        kept = query.grouping  # aggregated: only the `by` labels survive
    else:
        kept = set(TARGET_LABELS).union(*(exposed().labels[n].keys() for n in query.names))
    kept |= set(rule.get("labels", {}))
    for key, text in rule["annotations"].items():
        used = set(re.findall(r"\$labels\.(\w+)", text))
        assert used <= kept, f"{rule['alert']} {key}: $labels {sorted(used - kept)} never set"


def test_latency_alert_thresholds_lie_within_the_histogram_buckets() -> None:
    """A histogram_quantile() above the last finite bucket can never fire."""
    for rule in load_rules():
        if "histogram_quantile" not in rule["expr"]:
            continue
        threshold = re.search(r">\s*([0-9.]+)\s*$", rule["expr"].strip())
        assert threshold, f"{rule['alert']}: expected `... > <seconds>` at the end"
        for name in parse(rule["expr"]).names:
            finite = [b for b in exposed().buckets.get(name, []) if not math.isinf(b)]
            if finite:
                assert max(finite) > float(threshold.group(1)), rule["alert"]


# --------------------------------------------------------------------------- dashboard


def test_dashboard_is_well_formed() -> None:
    dashboard = load_dashboard()
    assert dashboard["uid"] == "whatsapp-relay"
    assert dashboard["title"]
    assert "whatsapp-relay" in dashboard["tags"]
    assert dashboard["schemaVersion"] >= 36

    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for name in FILTER_VARIABLES:
        assert variables[name]["type"] == "query"
        assert variables[name]["datasource"] == DATASOURCE
        assert variables[name]["includeAll"], name
        assert variables[name]["allValue"] == ".*", name

    panels = list(iter_panels(dashboard["panels"]))
    ids = Counter(panel["id"] for panel in panels)
    assert all(n == 1 for n in ids.values()), f"duplicate panel ids: {ids}"

    occupied: dict[tuple[int, int], int] = {}
    for panel in panels:
        grid = panel["gridPos"]
        assert all(isinstance(grid[k], int) for k in ("h", "w", "x", "y")), panel["id"]
        assert grid["x"] >= 0, panel["id"]
        assert grid["w"] > 0, panel["id"]
        assert grid["x"] + grid["w"] <= 24, panel["id"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                other = occupied.setdefault((x, y), panel["id"])
                assert other == panel["id"], f"panels {other} and {panel['id']} overlap"
        if panel["type"] == "row":
            continue
        where = f"panel {panel['id']} {panel.get('title')!r}"
        assert panel.get("title"), where
        assert panel.get("datasource") == DATASOURCE, where
        assert panel["targets"], where
        refs = [target["refId"] for target in panel["targets"]]
        assert len(refs) == len(set(refs)), where
        for target in panel["targets"]:
            assert target.get("datasource", DATASOURCE) == DATASOURCE, where
            assert target.get("expr", "").strip(), where
        if panel["type"] in {"timeseries", "stat"}:
            assert panel["fieldConfig"]["defaults"].get("unit"), f"{where}: no unit"


def test_dashboard_queries_filter_by_the_variables() -> None:
    for where, expr in dashboard_queries():
        for name, matchers in parse(expr).metrics:
            if where.startswith("variable"):
                continue  # the variables filter each other in a chain
            filters = {m.label for m in matchers if m.value == f"${m.label}" and m.op == "=~"}
            assert filters == FILTER_VARIABLES, f"{where}: {name} is not filtered by variables"


# --------------------------------------------------------------------------- promtool


@pytest.fixture(scope="module")
def promtool() -> str:
    result = subprocess.run(
        [str(GET_PROMTOOL)], capture_output=True, text=True, timeout=1800, check=False
    )
    assert result.returncode == 0, f"scripts/get-promtool failed:\n{result.stderr[-2000:]}"
    return result.stdout.strip().splitlines()[-1]


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=120, cwd=cwd, check=False)


@pytest.mark.needs_tool("promtool")
@pytest.mark.timeout(1800)  # the first get-promtool run compiles promtool
def test_promtool_checks_the_rules(promtool: str) -> None:
    result = run(promtool, "check", "rules", "--lint=all", "--lint-fatal", str(ALERTS))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.needs_tool("promtool")
@pytest.mark.timeout(1800)
def test_promtool_unit_tests_the_rules(promtool: str) -> None:
    result = run(promtool, "test", "rules", ALERTS_TEST.name, cwd=FILES)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.needs_tool("promtool")
@pytest.mark.timeout(1800)
def test_promtool_parses_the_dashboard_queries(promtool: str, tmp_path: Path) -> None:
    """Each dashboard query, as a recording rule, must pass Prometheus' own parser."""
    rules = []
    for index, (where, expr) in enumerate(dashboard_queries()):
        for variable, value in GRAFANA_INTERVALS.items():
            expr = expr.replace(variable, value)
        rules.append(
            {"record": f"dashboard:query_{index}", "expr": expr, "labels": {"where": where}}
        )
    path = tmp_path / "dashboard-queries.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = run(promtool, "check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
