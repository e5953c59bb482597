"""The monitoring profile against the running lab (the Compose test lab runs it: tests/compose/
harness.py): Prometheus, reached the way an admin reaches it (nginx, /prometheus/), scrapes
every target, every metric the alert rules read has series, and an alert fires when its
service stops and resolves when it is back. Natively no Prometheus runs, and nginx says so.
The rules themselves are unit-tested in tests/static/test_alert_rules.py."""

from __future__ import annotations

import re
import time

import pytest
import requests
import yaml

from mlflow_lab.settings import REPO_ROOT
from mlflow_lab.settings_schema import duration_seconds
from tests.stack import people

pytestmark = pytest.mark.stack
PROMETHEUS = REPO_ROOT / "services" / "prometheus"
CONFIG = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
SCRAPE_S = int(duration_seconds(CONFIG["global"]["scrape_interval"]))
EVALUATION_S = int(duration_seconds(CONFIG["global"]["evaluation_interval"]))
RULES = [rule for group in yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())["groups"] for rule in group["rules"]]


def series_read(expr: str) -> set[str]:
    """The series selectors (metric name and label matchers) a PromQL expression reads: its
    identifiers once ranges, label lists and functions' string arguments are gone, minus
    functions (followed by `(`) and operators."""
    text = re.sub(r"\[[^\]]*\]|\b(by|on|ignoring|without)\s*\([^)]*\)|(?<=[(,])\s*\"[^\"]*\"", "", expr)
    found = re.findall(r"\b([a-zA-Z_:][\w:]*(?:\{[^}]*\})?)(?![\w:{]|\s*\()", text)
    return set(found) - {"and", "or", "unless"}


def has_series(lab, selector: str) -> bool:
    """Prometheus holds series for `selector`; a regular-expression matcher that selects nothing
    on a healthy lab (5xx statuses) must at least name a label the metric has."""
    if prometheus(lab, "query", query=f"count({selector})")["result"]:
        return True
    name, _, matchers = selector.partition("{")
    labels = re.findall(r"(\w+)\s*=~", matchers)
    return bool(labels) and all(prometheus(lab, "query", query=f'count({name}{{{label}!=""}})')["result"] for label in labels)


def prometheus(lab, path: str, **params) -> dict:
    answer = lab.session().get(f"{lab.url}/prometheus/api/v1/{path}", params=params, timeout=30)
    assert answer.status_code == 200, answer.text[:300]
    return answer.json()["data"]


def until(what: str, check, timeout: float, every: float = 2):
    """check()'s first truthy value within `timeout` seconds, and how long it took."""
    started = time.monotonic()
    while (found := check()) is None or found is False or found == []:
        assert time.monotonic() - started < timeout, f"{what}: not within {timeout:.0f} s"
        time.sleep(every)
    return found, time.monotonic() - started


@pytest.mark.contract
def test_prometheus_is_for_admins_only(lab):
    member = people.Person(lab, *next(iter(people.add(lab, people.unique("watcher")).items())))
    anonymous = requests.get(f"{lab.url}/prometheus/api/v1/targets", timeout=30)
    assert anonymous.status_code == 401
    refused = member.call("GET", "/prometheus/api/v1/targets")
    assert refused.status_code == 403 and refused.json() == {"error": "only admins may open this"}
    admin = lab.session().get(f"{lab.url}/prometheus/-/ready", timeout=30)
    if lab.runner == "native":  # the profile is Compose's: nginx says where Prometheus is
        assert admin.status_code == 503 and "monitoring profile" in admin.json()["error"]
    else:
        assert admin.status_code == 200, admin.text[:300]


@pytest.mark.contract("compose")
def test_every_target_is_up_and_every_rule_reads_series(lab):
    jobs = {job["job_name"] for job in CONFIG["scrape_configs"]}

    def up() -> dict | None:
        targets = prometheus(lab, "targets")["activeTargets"]
        health = {target["labels"]["job"]: target["health"] for target in targets}
        return health if set(health) == jobs and set(health.values()) == {"up"} else None

    try:
        until("every scrape target up", up, timeout=4 * SCRAPE_S)
    except AssertionError:
        down = {
            t["labels"]["job"]: t.get("lastError") for t in prometheus(lab, "targets")["activeTargets"] if t["health"] != "up"
        }
        raise AssertionError(f"targets not up: {down}") from None
    # A prediction request (answered or not, it is counted), for the model API's route series.
    lab.session().post(f"{lab.url}/v2/models/{people.MEMBER_MODEL}/infer", json={"inputs": []}, timeout=30)
    time.sleep(SCRAPE_S + 1)
    missing = [
        f"{rule['alert']}: {selector}"
        for rule in RULES
        for selector in sorted(series_read(rule["expr"]))
        if not has_series(lab, selector)
    ]
    assert not missing, f"metrics the alert rules read have no series: {missing}"


@pytest.mark.contract("compose")
def test_the_model_api_stopping_fires_service_down_and_its_return_resolves_it(lab):
    (rule,) = [rule for rule in RULES if rule["alert"] == "ServiceDown"]
    bound = int(duration_seconds(rule["for"])) + SCRAPE_S + EVALUATION_S

    def alert() -> dict | None:
        alerts = prometheus(lab, "alerts")["alerts"]
        return next(
            (a for a in alerts if a["labels"]["alertname"] == "ServiceDown" and a["labels"].get("service") == "model-api"), None
        )

    assert alert() is None, "ServiceDown for the model API before it was stopped"
    stack = lab.require("compose")
    stack.stop_service("model-api")
    try:
        _, fired_after = until(
            "ServiceDown firing for model-api", lambda: (a := alert()) and a["state"] == "firing", timeout=bound + 30
        )
    finally:
        stack.start_service("model-api")
    _, resolved_after = until(
        "ServiceDown for model-api resolved", lambda: alert() is None, timeout=SCRAPE_S + 2 * EVALUATION_S + 30
    )
    print(
        f"\nServiceDown(model-api): fired {fired_after:.0f} s after the stop (bound: for {rule['for']} + scrape "
        f"{SCRAPE_S} s + evaluation {EVALUATION_S} s = {bound} s); resolved {resolved_after:.0f} s after it was back"
    )
    assert fired_after <= bound
