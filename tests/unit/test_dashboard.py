"""The shipped Grafana dashboard only queries metrics the library exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client import CollectorRegistry

from llm_decide.metrics import PrometheusMetrics

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def exported_names() -> set[str]:
    registry = CollectorRegistry()
    PrometheusMetrics(registry)
    names = set()
    for family in registry.collect():
        names.add(family.name)
        for suffix in ("_total", "_bucket", "_sum", "_count", "_created"):
            names.add(family.name + suffix)
    return names


def test_dashboard_queries_exported_metrics() -> None:
    dashboard = json.loads((EXAMPLES / "grafana-dashboard.json").read_text())
    queried = set(re.findall(r"llm_decide_[a-z_]+", json.dumps(dashboard)))
    assert queried and queried <= exported_names()


def test_issue_metric_names_are_all_exported() -> None:
    wanted = {
        "llm_decide_requests_total",
        "llm_decide_request_duration_seconds_bucket",
        "llm_decide_errors_total",
        "llm_decide_timeouts_total",
        "llm_decide_retries_total",
        "llm_decide_fallbacks_total",
        "llm_decide_cache_lookups_total",
        "llm_decide_inflight_requests",
        "llm_decide_pool_connections",
        "llm_decide_tokens_total",
        "llm_decide_batch_items_bucket",
        "llm_decide_concurrency_limit",
        "llm_decide_decisions_total",
    }
    assert wanted <= exported_names()
