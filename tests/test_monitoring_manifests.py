"""manifests/monitoring (Prometheus Operator + Grafana's dashboard sidecar): it renders to exactly a PodMonitor, a
PrometheusRule and the dashboard's ConfigMap; the PodMonitor scrapes the ports the code listens on; the alert rules
pass promtool and fire when, and only when, they should; every series the rules and the dashboard read is one the
transformer exports (or TorchServe's ts_*)."""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
import yaml

from fashionrec.config import MODEL_NAME, SCRAPE_INTERVAL_S, TORCHSERVE_METRICS_PORT, TRANSFORMER_HTTP_PORT
from fashionrec.params import PipelineSettings
from fashionrec.serving.metrics import transformer_metrics
from fashionrec.serving.torchserve import TorchServeSettings

MANIFESTS = Path(__file__).resolve().parents[1] / "manifests"
MONITORING = MANIFESTS / "monitoring"
DASHBOARD = "fashionrec-dashboard.json"
PROMETHEUS_OPERATOR = "monitoring.coreos.com/v1"

# Mirrors src/fashionrec/serving/metrics.py: every fashionrec_* metric the transformer exports, by the name
# prometheus_client is given (no _total) and its type; test_known_metrics_agree_with_the_transformers keeps them equal.
KNOWN: dict[str, str] = {
    "fashionrec_requests": "counter",
    "fashionrec_request_seconds": "histogram",
    "fashionrec_predictor_seconds": "histogram",
    "fashionrec_faiss_seconds": "histogram",
    "fashionrec_feast_seconds": "histogram",
    "fashionrec_response_encode_seconds": "histogram",
    "fashionrec_index_items": "gauge",
    "fashionrec_model": "info",  # exposed as fashionrec_model_info
    "fashionrec_stale_embeddings": "counter",
    "fashionrec_index_swaps": "counter",
    "fashionrec_model_requests": "counter",
    "fashionrec_model_request_seconds": "histogram",
    "fashionrec_canary_share": "gauge",
    "fashionrec_catalog_changes": "counter",
    "fashionrec_catalog_items_waiting_for_vector": "gauge",
    "fashionrec_index_recall": "gauge",
    "fashionrec_index_recall_target": "gauge",
    "fashionrec_recall_checks": "counter",
    "fashionrec_drift_score": "gauge",
    "fashionrec_drift_p_value": "gauge",
    "fashionrec_drift_detected": "gauge",
    "fashionrec_drift_window_size": "gauge",
    "fashionrec_recommendation_coverage": "gauge",
    "fashionrec_recommendation_gini": "gauge",
    "fashionrec_low_score_share": "gauge",
    "fashionrec_monitor_last_success_timestamp_seconds": "gauge",
    "fashionrec_monitor_interval_seconds": "gauge",
    "fashionrec_request_log_dropped_lines": "counter",
    "fashionrec_request_log_buffered_lines": "gauge",
    "fashionrec_feedback_events": "counter",
    "fashionrec_feedback_rejected": "counter",
    "fashionrec_feedback_buffered": "gauge",
    "fashionrec_engagement_answers": "counter",
    "fashionrec_engagement_clicked_answers": "counter",
    "fashionrec_engagement_reciprocal_ranks": "counter",
}
# The series each type exposes on /metrics: a query for fashionrec_requests (no _total) would match nothing.
SERIES_SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",), "info": ("_info",)}
EXPECTED_ALERTS = {
    "FashionrecHighLatencyP99",
    "FashionrecHigh5xxRatio",
    "FashionrecStaleEmbeddings",
    "FashionrecEmbeddingDrift",
    "FashionrecImageStatDrift",
    "FashionrecLowCoverage",
    "FashionrecUnrecognisedQueries",
    "FashionrecCatalogChangesWithoutVector",
    "FashionrecIndexRecallLow",
    "FashionrecScrapeFailing",
    "FashionrecScrapeTargetMissing",
    "FashionrecNoTraffic",
    "FashionrecEngagementDrop",
    "FashionrecNoFeedbackEvents",
    "FashionrecMonitorStale",
    "FashionrecRequestLogDropping",
}
# Series Prometheus makes itself for every target (1: the last scrape worked), which the silence alerts read.
PROMETHEUS_OWN = {"up"}


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: run `make test-tools`")
    return path


@pytest.fixture(scope="module")
def rendered() -> list[dict[str, Any]]:
    """What `kubectl apply -k manifests/monitoring` would send."""
    result = subprocess.run([tool("kubectl"), "kustomize", str(MONITORING)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def one(documents: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (document,) = (d for d in documents if d["kind"] == kind)
    return document


def test_kustomization_renders_exactly_the_podmonitor_the_rules_and_the_dashboard(rendered: list[dict[str, Any]]) -> None:
    assert sorted((d["apiVersion"], d["kind"]) for d in rendered) == [
        (PROMETHEUS_OPERATOR, "PodMonitor"),
        (PROMETHEUS_OPERATOR, "PrometheusRule"),
        ("v1", "ConfigMap"),
    ]
    config_map = one(rendered, "ConfigMap")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"  # the Grafana sidecar's default label
    assert config_map["metadata"]["name"] == "fashionrec-dashboard"  # no hash suffix: a change replaces it
    committed = (MONITORING / DASHBOARD).read_text()
    assert config_map["data"] == {DASHBOARD: committed}
    assert json.loads(config_map["data"][DASHBOARD])["uid"] == "fashionrec"
    # Every file of the folder is used, and the folder is not part of the default deployment.
    kustomization = yaml.safe_load((MONITORING / "kustomization.yaml").read_text())
    used = {*kustomization["resources"], *(f for g in kustomization["configMapGenerator"] for f in g["files"])}
    assert used | {"kustomization.yaml"} == {p.name for p in MONITORING.iterdir()}
    for parent in (MANIFESTS, MANIFESTS / "base"):
        assert not any("monitoring" in r for r in yaml.safe_load((parent / "kustomization.yaml").read_text())["resources"])


# --- the PodMonitor: which addresses Prometheus ends up scraping -------------------------------------------------


def relabel(target: dict[str, str], rules: list[dict[str, Any]]) -> dict[str, str] | None:
    """Prometheus' keep/replace relabeling (all these manifests use): None when a rule drops the target."""
    labels = dict(target)
    for rule in rules:
        value = rule.get("separator", ";").join(labels.get(s, "") for s in rule.get("sourceLabels", []))
        match = re.fullmatch(rule.get("regex", "(.*)"), value)  # Prometheus anchors the regex
        action = rule.get("action", "replace")
        if action == "keep":
            if match is None:
                return None
        elif action == "replace":
            if match is not None:
                # $1 / ${1} in Prometheus' replacement, \g<1> in Python's
                labels[rule["targetLabel"]] = match.expand(re.sub(r"\$\{?(\d+)\}?", r"\\g<\1>", rule.get("replacement", "$1")))
        else:
            raise AssertionError(f"relabel action {action} is not modelled by this test")
    return labels


def pod_targets(ip: str, labels: dict[str, str], containers: dict[str, list[tuple[str, int]]]) -> list[dict[str, str]]:
    """Prometheus' `pod` discovery: a target per declared container port, or one without a port for a container
    that declares none."""
    targets = []
    for container, ports in containers.items():
        meta = {"__meta_kubernetes_pod_ip": ip, "__meta_kubernetes_pod_container_name": container}
        meta |= {f"__meta_kubernetes_pod_label_{re.sub(r'[^a-zA-Z0-9_]', '_', k)}": v for k, v in labels.items()}
        if not ports:
            targets.append({**meta, "__address__": ip})
        for name, number in ports:
            port_meta = {
                "__meta_kubernetes_pod_container_port_name": name,
                "__meta_kubernetes_pod_container_port_number": str(number),
            }
            targets.append({**meta, **port_meta, "__address__": f"{ip}:{number}"})
    return targets


def kserve_pod(ip: str, isvc: str, component: str, user_port_name: str) -> list[dict[str, str]]:
    """A pod of an InferenceService component as KServe + Knative create it: the storage initializer, the
    kserve-container with the one port Knative allows (named user-port; unnamed in KServe's Standard mode), and
    Knative's queue-proxy sidecar with its own ports."""
    return pod_targets(
        ip,
        {"serving.kserve.io/inferenceservice": isvc, "component": component},
        {
            "storage-initializer": [],
            "kserve-container": [(user_port_name, 8080)],
            "queue-proxy": [("http-queueadm", 8022), ("http-autometric", 9090), ("http-usermetric", 9091), ("queue-port", 8012)],
        },
    )


def scraped(podmonitor: dict[str, Any], targets: list[dict[str, str]]) -> list[tuple[str, str]]:
    """(address, path) of each target the Prometheus Operator's scrape configs keep: the selector, the endpoint's
    port filter, then the endpoint's relabelings, as the operator orders them."""
    spec = podmonitor["spec"]
    assert set(spec["selector"]) == {"matchLabels"}  # what this model of the selector handles
    selector = [
        {"action": "keep", "sourceLabels": [f"__meta_kubernetes_pod_label_{re.sub(r'[^a-zA-Z0-9_]', '_', k)}"], "regex": v}
        for k, v in spec["selector"]["matchLabels"].items()
    ]
    kept = []
    for endpoint in spec["podMetricsEndpoints"]:
        port_filter = []
        if "port" in endpoint:
            port_filter = [
                {"action": "keep", "sourceLabels": ["__meta_kubernetes_pod_container_port_name"], "regex": endpoint["port"]}
            ]
        elif "portNumber" in endpoint or "targetPort" in endpoint:
            number = endpoint.get("portNumber", endpoint.get("targetPort"))
            assert isinstance(number, int), "a targetPort name matches the port name, not modelled here"
            port_filter = [
                {"action": "keep", "sourceLabels": ["__meta_kubernetes_pod_container_port_number"], "regex": str(number)}
            ]
        for target in targets:
            labels = relabel(target, selector + port_filter + endpoint.get("relabelings", []))
            if labels is not None:
                kept.append((labels["__address__"], endpoint.get("path", "/metrics")))
    return kept


@pytest.mark.parametrize("user_port_name", ["user-port", ""], ids=["knative", "standard"])
def test_podmonitor_scrapes_the_transformer_and_torchserve_once_per_pod(
    rendered: list[dict[str, Any]], user_port_name: str
) -> None:
    podmonitor = one(rendered, "PodMonitor")
    isvc = yaml.safe_load((MANIFESTS / "base" / "inferenceservice.yaml").read_text())
    assert podmonitor["spec"]["selector"]["matchLabels"] == {"serving.kserve.io/inferenceservice": isvc["metadata"]["name"]}
    assert isvc["metadata"]["name"] == MODEL_NAME
    (transformer_port,) = (p["containerPort"] for p in isvc["spec"]["transformer"]["containers"][0]["ports"])
    assert transformer_port == TRANSFORMER_HTTP_PORT == 8080  # the port kserve_pod gives both components
    pods = [
        *kserve_pod("10.0.0.1", MODEL_NAME, "transformer", user_port_name),
        *kserve_pod("10.0.0.2", MODEL_NAME, "predictor", user_port_name),
        *kserve_pod("10.0.0.3", "another-model", "transformer", user_port_name),  # not ours
    ]
    assert sorted(scraped(podmonitor, pods)) == [
        (f"10.0.0.1:{TRANSFORMER_HTTP_PORT}", "/metrics"),  # the transformer's KServe ModelServer
        (f"10.0.0.2:{TORCHSERVE_METRICS_PORT}", "/metrics"),  # TorchServe's metrics API
    ]
    assert TorchServeSettings().metrics_address == f"http://0.0.0.0:{TORCHSERVE_METRICS_PORT}"  # reachable on the pod IP


def test_the_podmonitor_model_notices_a_wrong_port() -> None:
    """The check above bites: a PodMonitor selecting the transformer by a port name Knative never sets finds nothing."""
    podmonitor = {
        "spec": {
            "selector": {"matchLabels": {"serving.kserve.io/inferenceservice": MODEL_NAME}},
            "podMetricsEndpoints": [{"port": "http", "path": "/metrics"}],
        }
    }
    assert scraped(podmonitor, kserve_pod("10.0.0.1", MODEL_NAME, "transformer", "user-port")) == []


# --- the alert rules ---------------------------------------------------------------------------------------------


def rules_file(rendered: list[dict[str, Any]], directory: Path) -> Path:
    """The PrometheusRule's spec as a plain Prometheus rules file (`groups:` at the top), which promtool reads."""
    path = directory / "rules.yaml"
    path.write_text(yaml.safe_dump(one(rendered, "PrometheusRule")["spec"], sort_keys=False))
    return path


def alerting_rules(rendered: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    spec = one(rendered, "PrometheusRule")["spec"]
    assert set(spec) == {"groups"}
    return {r["alert"]: r for g in spec["groups"] for r in g["rules"]}


def promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([tool("promtool"), *map(str, args)], capture_output=True, text=True)


def test_every_alert_is_there_with_a_for_a_severity_and_values_in_its_text(rendered: list[dict[str, Any]]) -> None:
    rules = alerting_rules(rendered)
    assert set(rules) == EXPECTED_ALERTS
    for name, rule in rules.items():
        assert "for" in rule, name
        assert rule["labels"]["severity"] in {"info", "warning", "critical"}, name
        assert set(rule["annotations"]) >= {"summary", "description"}, name
        assert "$value" in rule["annotations"]["summary"] and "$value" in rule["annotations"]["description"], name


def test_promtool_accepts_the_rules(rendered: list[dict[str, Any]], tmp_path: Path) -> None:
    result = promtool("check", "rules", rules_file(rendered, tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(EXPECTED_ALERTS)} rules found" in result.stdout


@pytest.mark.parametrize(
    ("field", "broken"),
    [
        ("expr", "histogram_quantile(0.99, sum by (le) (rate(fashionrec_request_seconds_bucket[5m])) > 0.5"),
        ("summary", "p99 is {{ $value | humanizeDurationn }}"),  # no such template function
    ],
)
def test_promtool_rejects_a_broken_rule(rendered: list[dict[str, Any]], tmp_path: Path, field: str, broken: str) -> None:
    """The check above bites: a missing parenthesis, or a template calling an unknown function, fails it."""
    spec = copy.deepcopy(one(rendered, "PrometheusRule")["spec"])  # the fixture is shared by the module's tests
    rule = next(r for g in spec["groups"] for r in g["rules"] if r["alert"] == "FashionrecHighLatencyP99")
    if field == "expr":
        rule["expr"] = broken
    else:
        rule["annotations"][field] = broken
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(spec))
    result = promtool("check", "rules", path)
    assert result.returncode != 0
    assert "FashionrecHighLatencyP99" in result.stdout + result.stderr


def expected(rule: dict[str, Any], values: dict[str, str]) -> dict[str, str]:
    """The rule's annotations as Prometheus renders them, given the rendering of each {{ ... }} in them (a template
    this test was not told about raises KeyError, so a changed template is noticed)."""
    return {key: re.sub(r"\{\{\s*(.*?)\s*\}\}", lambda m: values[m.group(1)], text) for key, text in rule["annotations"].items()}


def fires(
    rules: dict[str, dict[str, Any]], at: str, alert: str, labels: dict[str, str], values: dict[str, str]
) -> dict[str, Any]:
    """A promtool alert_rule_test: ``alert`` fires at ``at`` with these labels and its annotations rendered from ``values``."""
    return {
        "eval_time": at,
        "alertname": alert,
        "exp_alerts": [{"exp_labels": labels, "exp_annotations": expected(rules[alert], values)}],
    }


def quiet(at: str, alert: str) -> dict[str, Any]:
    return {"eval_time": at, "alertname": alert, "exp_alerts": []}


def assert_promtool_passes(groups: list[dict[str, Any]], tmp_path: Path) -> None:
    """`promtool test rules` of the rules file written into tmp_path, one test group per item, evaluated every minute."""
    unit_tests = {"rule_files": ["rules.yaml"], "evaluation_interval": "1m", "tests": groups}
    tests = tmp_path / "tests.yaml"
    tests.write_text(yaml.safe_dump(unit_tests, sort_keys=False))
    result = promtool("test", "rules", tests)
    assert result.returncode == 0, result.stdout + result.stderr


def test_alerts_fire_with_their_labels_and_values_and_stay_quiet_otherwise(
    rendered: list[dict[str, Any]], tmp_path: Path
) -> None:
    rules = alerting_rules(rendered)
    rules_file(rendered, tmp_path)
    shop = {"$labels.namespace": "shop"}
    ratio = {**shop, "$value | humanizePercentage": "5%"}
    drift = {**shop, "$labels.signal": "embedding", '$value | printf "%.3g"': "0.002"}
    changes = {**shop, "$labels.model_version": "v2", "$value | humanize": "3"}

    def series(name: str, values: str, **labels: str) -> dict[str, str]:
        selector = ",".join(f'{k}="{v}"' for k, v in {"namespace": "shop", **labels}.items())
        return {"series": f"{name}{{{selector}}}", "values": values}

    groups = [
        {
            "interval": "1m",
            "input_series": [
                # shop: 5 of every 100 answers are 503s; staging: 1 in 200, under the 1% threshold
                series("fashionrec_requests_total", "0+95x40", pod="t-1", status="200"),
                series("fashionrec_requests_total", "0+5x40", pod="t-1", status="503"),
                series("fashionrec_requests_total", "0+199x40", namespace="staging", pod="s-1", status="200"),
                series("fashionrec_requests_total", "0+1x40", namespace="staging", pod="s-1", status="503"),
                # embedding drift detected by one replica of two; the image statistics are fine
                series("fashionrec_drift_detected", "1x40", pod="t-1", signal="embedding"),
                series("fashionrec_drift_p_value", "0.002x40", pod="t-1", signal="embedding"),
                series("fashionrec_drift_detected", "0x40", pod="t-2", signal="embedding"),
                series("fashionrec_drift_p_value", "0.3x40", pod="t-2", signal="embedding"),
                series("fashionrec_drift_detected", "0x40", pod="t-1", signal="brightness"),
                series("fashionrec_drift_p_value", "0.4x40", pod="t-1", signal="brightness"),
                # one replica's coverage is low, the other's is not: the service still covers 50%
                series("fashionrec_recommendation_coverage", "0.01x40", pod="t-1"),
                series("fashionrec_recommendation_coverage", "0.5x40", pod="t-2"),
                # recall: v2's index finds 80% of the true neighbours against a target of 95%, backed by 60 checks;
                # v3's is as low but only 10 checks back it
                series("fashionrec_index_recall", "0.8x40", pod="t-1", model_version="v2"),
                series("fashionrec_index_recall_target", "0.95x40", pod="t-1", model_version="v2"),
                series("fashionrec_recall_checks_total", "60x40", pod="t-1", model_version="v2", outcome="checked"),
                series("fashionrec_index_recall", "0.8x40", pod="t-1", model_version="v3"),
                series("fashionrec_index_recall_target", "0.95x40", pod="t-1", model_version="v3"),
                series("fashionrec_recall_checks_total", "10x40", pod="t-1", model_version="v3", outcome="checked"),
                # 3 added items found no vector at minute 5
                series(
                    "fashionrec_catalog_changes_total",
                    "0x4 3x36",
                    pod="t-1",
                    model_version="v2",
                    action="add",
                    outcome="no_vector",
                ),
                series(
                    "fashionrec_catalog_changes_total",
                    "0+2x40",
                    pod="t-1",
                    model_version="v2",
                    action="add",
                    outcome="applied",
                ),
            ],
            "alert_rule_test": [
                # pending, not firing, before its `for: 5m` has passed
                quiet("4m", "FashionrecHigh5xxRatio"),
                fires(rules, "10m", "FashionrecHigh5xxRatio", {"severity": "critical", "namespace": "shop"}, ratio),
                quiet("10m", "FashionrecEmbeddingDrift"),
                fires(
                    rules,
                    "20m",
                    "FashionrecEmbeddingDrift",
                    {"severity": "warning", "namespace": "shop", "signal": "embedding"},
                    drift,
                ),
                # the embedding's drift is not an image statistic's
                quiet("39m", "FashionrecImageStatDrift"),
                quiet("39m", "FashionrecLowCoverage"),
                fires(
                    rules,
                    "10m",
                    "FashionrecCatalogChangesWithoutVector",
                    {"severity": "warning", "namespace": "shop", "model_version": "v2"},
                    changes,
                ),
                # 30 minutes after the last change without a vector, the alert resolves
                quiet("39m", "FashionrecCatalogChangesWithoutVector"),
                quiet("10m", "FashionrecIndexRecallLow"),  # pending for its 15 minutes
                fires(
                    rules,
                    "20m",
                    "FashionrecIndexRecallLow",
                    {"severity": "warning", "namespace": "shop", "model_version": "v2"},
                    {**changes, "$value | humanizePercentage": "80%"},
                ),
            ],
        }
    ]
    assert_promtool_passes(groups, tmp_path)


# --- the series the rules and the dashboard read --------------------------------------------------------------------

# PromQL words that look like metric names; functions are told apart by the "(" that follows them.
PROMQL_KEYWORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "and",
    "or",
    "unless",
    "offset",
    "atan2",
}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL (or Grafana PromQL, with $variables) expression selects."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings: label values, regexes
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges and subqueries, $__rate_interval
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)  # label lists
    text = re.sub(r"(?<![\w.$])\d+(?:\.\d+)?(?:[eE][+-]?\d+|ms|[smhdwy])?\b", " ", text)  # numbers, durations
    names = set()
    for match in re.finditer(r"[A-Za-z_:][\w:]*", text):
        if match.group().lower() in PROMQL_KEYWORDS or text[match.end() :].lstrip().startswith("("):
            continue
        names.add(match.group())
    return names


def known_metric(series: str) -> str | None:
    """The KNOWN metric a series name belongs to, given its type's suffixes (fashionrec_requests_total ->
    fashionrec_requests), or None."""
    return next((base for base, kind in KNOWN.items() for suffix in SERIES_SUFFIXES[kind] if series == base + suffix), None)


def test_metric_names_finds_the_selected_series_and_only_them() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (le, read) (rate(fashionrec_feast_seconds_bucket{read="embeddings", '
        'namespace=~"$namespace"}[$__rate_interval]))) / 1e6 > bool 0.5 and on (namespace) up offset 5m == 1 '
        "or sum(rate(ts_inference_requests_total[5m])) without (pod)"
    )
    assert metric_names(expr) == {"fashionrec_feast_seconds_bucket", "up", "ts_inference_requests_total"}
    assert known_metric("fashionrec_requests_total") == "fashionrec_requests"
    assert known_metric("fashionrec_model_info") == "fashionrec_model"
    assert known_metric("fashionrec_requests") is None  # a counter's series ends in _total
    assert known_metric("fashionrec_index_items_total") is None  # a gauge's has no suffix
    assert known_metric("fashionrec_request_total") is None  # a typo


def dashboard() -> dict[str, Any]:
    document = json.loads((MONITORING / DASHBOARD).read_text())
    assert isinstance(document, dict)
    return document


def dashboard_metric_names() -> set[str]:
    """The series the panels and the query variables (label_values(<series>, <label>)) read."""
    board = dashboard()
    names = {n for p in board["panels"] for t in p["targets"] for n in metric_names(t["expr"])}
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":
            selected = re.fullmatch(r"label_values\((\w+),\s*\w+\)", variable["definition"])
            assert selected, variable["definition"]
            names.add(selected[1])
    return names


def check_names(where: str, names: set[str]) -> list[str]:
    problems = []
    for name in sorted(names):
        if name in PROMETHEUS_OWN:
            continue
        if not name.startswith(("fashionrec_", "ts_")):
            problems.append(f"{where}: {name} is neither fashionrec_* nor TorchServe's ts_*")
        elif name.startswith("fashionrec_") and known_metric(name) is None:
            problems.append(f"{where}: {name} is no series of a metric in KNOWN (metrics.py)")
    return problems


def test_rules_and_dashboard_read_only_series_the_code_exports(rendered: list[dict[str, Any]]) -> None:
    problems = []
    for name, rule in alerting_rules(rendered).items():
        problems += check_names(name, metric_names(rule["expr"]))
        # a {{ query "..." }} in an annotation reads series too
        problems += check_names(f"{name} annotations", set(re.findall(r"\bfashionrec_\w+", json.dumps(rule["annotations"]))))
    dashboard_names = dashboard_metric_names()
    problems += check_names("dashboard", dashboard_names)
    assert problems == []
    # every metric has a panel, save the Info (its labels name the served version, for a table, not a graph)
    assert {known_metric(n) for n in dashboard_names} >= set(KNOWN) - {"fashionrec_model"}
    assert any(n.startswith("ts_") for n in dashboard_names)  # the predictor's TorchServe panel


def test_known_metrics_agree_with_the_transformers() -> None:
    """The metrics metrics.py defines are exactly KNOWN, with their types."""
    metrics = transformer_metrics()
    defined = {family.name: family.type for field in fields(metrics) for family in getattr(metrics, field.name).describe()}
    assert defined == KNOWN


# --- the dashboard ---------------------------------------------------------------------------------------------------


def test_dashboard_panels_are_complete_and_read_the_datasource_variable() -> None:
    board = dashboard()
    assert board["uid"] == "fashionrec" and board["title"]
    assert board["schemaVersion"] >= 36
    variables = {v["name"]: v for v in board["templating"]["list"]}
    datasource = [v for v in variables.values() if v["type"] == "datasource"]
    assert len(datasource) == 1 and datasource[0]["query"] == "prometheus"
    reference = {"type": "prometheus", "uid": f"${{{datasource[0]['name']}}}"}
    panels = board["panels"]
    assert len(panels) >= 15
    ids = [p["id"] for p in panels]
    assert len(set(ids)) == len(ids) and all(isinstance(i, int) for i in ids)
    cells: set[tuple[int, int]] = set()
    for panel in panels:
        where = f"panel {panel['id']} ({panel.get('title')})"
        assert panel["type"] == "timeseries" and panel["title"], where
        grid = panel["gridPos"]
        assert set(grid) == {"x", "y", "w", "h"} and all(isinstance(v, int) for v in grid.values()), where
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24 and grid["w"] > 0 and grid["h"] > 0, where
        covered = {(x, y) for x in range(grid["x"], grid["x"] + grid["w"]) for y in range(grid["y"], grid["y"] + grid["h"])}
        assert not covered & cells, f"{where} overlaps another panel"
        cells |= covered
        assert panel["datasource"] == reference, where
        assert panel["targets"], where
        for target in panel["targets"]:
            assert target["expr"].strip(), where
            assert target.get("datasource", reference) == reference, where
    for variable in variables.values():  # other variables query the same datasource
        if variable["type"] == "query":
            assert variable["datasource"] == reference


def test_the_podmonitor_scrapes_the_transformers_as_often_as_the_canary_check_expects(rendered: list[dict[str, Any]]) -> None:
    """The canary check waits for a scrape taken after its probes, sized by SCRAPE_INTERVAL_S: one setting."""
    transformer, _ = one(rendered, "PodMonitor")["spec"]["podMetricsEndpoints"]
    assert transformer["interval"] == f"{SCRAPE_INTERVAL_S:g}s"
    assert PipelineSettings().scrape_interval_s == SCRAPE_INTERVAL_S


def test_silence_is_noticed_a_dead_target_a_missing_one_and_no_traffic(rendered: list[dict[str, Any]], tmp_path: Path) -> None:
    """The alerts a quiet dashboard cannot raise: each fires when, and only when, it should (promtool test rules)."""
    rules = alerting_rules(rendered)
    rules_file(rendered, tmp_path)

    def up(namespace: str, component: str, pod: str, values: str) -> dict[str, str]:
        return {"series": f'up{{namespace="{namespace}",component="{component}",pod="{pod}"}}', "values": values}

    def requests(namespace: str, values: str) -> dict[str, str]:
        return {"series": f'fashionrec_requests_total{{namespace="{namespace}",pod="t",status="200"}}', "values": values}

    def predictors(*namespaces: str) -> list[dict[str, str]]:
        return [up(namespace, "predictor", "p", "1x120") for namespace in namespaces]

    silent = {"$labels.namespace": "quiet", "$value": "2"}
    failing = {"$labels.namespace": "broken", "$labels.component": "transformer", "$value": "0"}
    missing = {"$labels.component": "predictor", "$value": "1"}
    groups = [
        {
            "interval": "1m",
            "input_series": [
                # quiet: two transformer pods up, never a request (the counter's series never appears)
                up("quiet", "transformer", "t-1", "1x120"),
                up("quiet", "transformer", "t-2", "1x120"),
                # busy: up and answering
                up("busy", "transformer", "t-1", "1x120"),
                requests("busy", "0+10x120"),
                # broken: its one transformer pod stops answering its scrapes at minute 20
                up("broken", "transformer", "t-1", "1x20 0x100"),
                requests("broken", "0+10x120"),
                *predictors("quiet", "busy", "broken"),
            ],
            "alert_rule_test": [
                quiet("20m", "FashionrecNoTraffic"),  # `for` not yet over
                fires(rules, "45m", "FashionrecNoTraffic", {"severity": "warning", "namespace": "quiet"}, silent),
                quiet("22m", "FashionrecScrapeFailing"),
                fires(
                    rules,
                    "30m",
                    "FashionrecScrapeFailing",
                    {"severity": "critical", "namespace": "broken", "component": "transformer"},
                    failing,
                ),
                quiet("60m", "FashionrecScrapeTargetMissing"),
            ],
        },
        {
            # the predictor's targets vanish (the PodMonitor no longer selects them); the transformer's stay
            "interval": "1m",
            "input_series": [up("shop", "transformer", "t-1", "1x60"), requests("shop", "0+10x60")],
            "alert_rule_test": [
                quiet("5m", "FashionrecScrapeTargetMissing"),
                fires(rules, "15m", "FashionrecScrapeTargetMissing", {"severity": "critical", "component": "predictor"}, missing),
            ],
        },
    ]
    assert_promtool_passes(groups, tmp_path)


def test_a_stale_monitor_and_a_request_log_losing_lines_are_noticed(rendered: list[dict[str, Any]], tmp_path: Path) -> None:
    """promtool's clock starts at 0, so a gauge of "the time of the last success" that keeps up reads 0+60 a minute.
    shop: one replica's evaluations stop at minute 20 (the other's go on), and 5 request-log lines are lost at
    minute 10; slow: no success since the start, but it runs every 10 minutes, so it is stale only after 30."""
    rules = alerting_rules(rendered)
    rules_file(rendered, tmp_path)

    def series(name: str, values: str, namespace: str = "shop", **labels: str) -> dict[str, str]:
        selector = ",".join(f'{k}="{v}"' for k, v in {"namespace": namespace, **labels}.items())
        return {"series": f"{name}{{{selector}}}", "values": values}

    success = "fashionrec_monitor_last_success_timestamp_seconds"
    stale = {"$labels.namespace": "shop", "$labels.step": "evaluation", "$value | humanizeDuration": "15m 0s"}
    dropped = {"$labels.namespace": "shop", "$value | humanize": "5"}
    groups = [
        {
            "interval": "1m",
            "input_series": [
                series(success, "0+60x20 1200x40", pod="t-1", step="evaluation"),
                series(success, "0+60x60", pod="t-2", step="evaluation"),
                series(success, "0+60x60", pod="t-1", step="request_log"),
                series(success, "0+60x60", pod="t-2", step="request_log"),
                series("fashionrec_monitor_interval_seconds", "30x60", pod="t-1"),
                series("fashionrec_monitor_interval_seconds", "30x60", pod="t-2"),
                series("fashionrec_request_log_dropped_lines_total", "0x9 5x50", pod="t-1"),
                series("fashionrec_request_log_dropped_lines_total", "0x60", namespace="slow", pod="s-1"),
            ],
            "alert_rule_test": [
                quiet("30m", "FashionrecMonitorStale"),  # stale since 21m30s, its `for` not over
                fires(
                    rules,
                    "35m",
                    "FashionrecMonitorStale",
                    {"severity": "warning", "namespace": "shop", "step": "evaluation"},
                    stale,
                ),
                quiet("5m", "FashionrecRequestLogDropping"),
                fires(rules, "12m", "FashionrecRequestLogDropping", {"severity": "warning", "namespace": "shop"}, dropped),
                quiet("25m", "FashionrecRequestLogDropping"),  # 10 minutes without a loss: resolved
            ],
        },
        {
            "interval": "1m",
            "input_series": [
                series(success, "0x60", namespace="slow", pod="s-1", step="evaluation"),
                series("fashionrec_monitor_interval_seconds", "600x60", namespace="slow", pod="s-1"),
            ],
            "alert_rule_test": [
                quiet("35m", "FashionrecMonitorStale"),  # 35 minutes is within three of its intervals plus `for`
                fires(
                    rules,
                    "45m",
                    "FashionrecMonitorStale",
                    {"severity": "warning", "namespace": "slow", "step": "evaluation"},
                    {**stale, "$labels.namespace": "slow", "$value | humanizeDuration": "45m 0s"},
                ),
            ],
        },
    ]
    assert_promtool_passes(groups, tmp_path)


def test_engagement_alerts_fire_on_a_drop_and_on_a_silent_client_and_only_then(
    rendered: list[dict[str, Any]], tmp_path: Path
) -> None:
    """Over 30 hours at 5-minute steps: a shop whose CTR@5 falls from 30% to 15%, one that stays at 30%, one whose
    client stops reporting events while queries go on, and one whose drop comes with too few answers to count."""
    rules = alerting_rules(rendered)
    rules_file(rendered, tmp_path)
    steps = 30 * 12  # 5-minute samples over 30 hours; the drop starts at hour 26

    def counter(name: str, namespace: str, per_step: list[tuple[int, float]], **labels: str) -> dict[str, str]:
        """A counter growing by each (steps, increment) in turn."""
        values, total = [], 0.0
        for count, increment in per_step:
            for _ in range(count):
                values.append(f"{total:g}")
                total += increment
        selector = ",".join(f'{k}="{v}"' for k, v in {"namespace": namespace, "pod": "t", **labels}.items())
        return {"series": f"{name}{{{selector}}}", "values": " ".join(values)}

    def shop(
        namespace: str, answers: float, ctr_before: float, ctr_after: float, events_until: int = steps
    ) -> list[dict[str, str]]:
        before, after = 26 * 12, steps - 26 * 12
        return [
            counter("fashionrec_model_requests_total", namespace, [(steps + 1, answers)], model_version="v1", outcome="ok"),
            counter(
                "fashionrec_engagement_answers_total", namespace, [(before, answers), (after + 1, answers)], model_version="v1"
            ),
            counter(
                "fashionrec_engagement_clicked_answers_total",
                namespace,
                [(before, answers * ctr_before), (after + 1, answers * ctr_after)],
                model_version="v1",
            ),
            counter(
                "fashionrec_feedback_events_total",
                namespace,
                [(events_until, answers * 10), (steps + 1 - events_until, 0)],
                model_version="v1",
                type="impression",
            ),
        ]

    dropped = {"$labels.namespace": "dropped", "$value | humanizePercentage": "15%"}
    silent = {"$labels.namespace": "silent", "$value | humanize": "1"}
    groups = [
        {
            "interval": "5m",
            "input_series": [
                *shop("dropped", 300, 0.30, 0.15),
                *shop("steady", 300, 0.30, 0.30),
                *shop("thin", 5, 0.30, 0.10),  # 60 answers an hour: below the alert's minimum
                *shop("silent", 300, 0.30, 0.30, events_until=20 * 12),
            ],
            "alert_rule_test": [
                quiet("26h50m", "FashionrecEngagementDrop"),  # the drop is there, its `for` is not over
                fires(rules, "28h", "FashionrecEngagementDrop", {"severity": "warning", "namespace": "dropped"}, dropped),
                quiet("20h50m", "FashionrecNoFeedbackEvents"),
                fires(rules, "22h", "FashionrecNoFeedbackEvents", {"severity": "warning", "namespace": "silent"}, silent),
            ],
        }
    ]
    assert_promtool_passes(groups, tmp_path)
