"""The monitoring profile's Prometheus configuration and alert rules (services/prometheus/),
checked by promtool: the configuration and rules load, and every alert's unit tests pass.
Around them: every alert is tested firing and not firing, has a section in docs/alerts.md,
and every long-running service of compose.yaml is scraped. The checks also run on
deliberately broken copies, to show they can fail.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from mlflow_lab.errors import LabError
from mlflow_lab.settings import REPO_ROOT, default_of
from tests import promtool as promtool_tool
from tests.static.test_docs import anchors

PROMETHEUS = REPO_ROOT / "services" / "prometheus"
COMPOSE_SERVICES = yaml.safe_load((REPO_ROOT / "compose.yaml").read_text())["services"]
ALERTS_DOC = REPO_ROOT / "docs" / "alerts.md"
# Services scraped through an exporter (the Compose service that answers the scrape).
EXPORTED_BY = {"nginx": "nginx-exporter", "postgres": "postgres-exporter"}
# Scrape ports that are lab settings, so a changed default shows here.
PORT_SETTINGS = {"model-api": "MODEL_API_METRICS_PORT", "mlflow": "MLFLOW_METRICS_PORT"}
# Long-running services left unscraped, and why.
UNSCRAPED = {
    "minio": "opt-in profile, whose metrics need a bearer token",
    "gc": "opt-in profile ops: a collection a day, whose health check reports the last one",
    "prometheus": "Prometheus itself: it could not alert on its own absence",
}


@pytest.fixture(scope="module")
def promtool() -> str:
    try:
        return promtool_tool.require()
    except LabError as exc:
        pytest.fail(str(exc))


def run(promtool: str, *args: str, folder: Path = PROMETHEUS) -> subprocess.CompletedProcess:
    return subprocess.run([promtool, *args], cwd=folder, capture_output=True, text=True, timeout=120)


def alerts(folder: Path = PROMETHEUS) -> list[dict]:
    groups = yaml.safe_load((folder / "alerts.yml").read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


@pytest.mark.parametrize(
    "args", [("check", "config", "prometheus.yml"), ("check", "rules", "alerts.yml"), ("test", "rules", "alerts.test.yml")]
)
def test_promtool_passes(promtool, args):
    result = run(promtool, *args)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_changed_threshold_fails_its_unit_test(promtool, tmp_path):
    copy = shutil.copytree(PROMETHEUS, tmp_path / "prometheus")
    rules = copy / "alerts.yml"
    rules.write_text(rules.read_text().replace(") > 0.1\n", ") > 0.2\n"))  # ModelApiSlow: p99 over 200 ms
    result = run(promtool, "test", "rules", "alerts.test.yml", folder=copy)
    assert result.returncode != 0 and "alertname: ModelApiSlow, time: 6m" in result.stderr, result.stdout + result.stderr


def test_a_rule_file_the_configuration_names_must_exist(promtool, tmp_path):
    copy = shutil.copytree(PROMETHEUS, tmp_path / "prometheus")
    (copy / "alerts.yml").unlink()
    result = run(promtool, "check", "config", "prometheus.yml", folder=copy)
    assert result.returncode != 0 and "alerts.yml" in result.stdout + result.stderr


def untested(folder: Path = PROMETHEUS) -> dict[str, list[str]]:
    """Per alert, what alerts.test.yml does not show: it firing, and it silent on the healthy lab
    (the first test, which lists every alert)."""
    tests = yaml.safe_load((folder / "alerts.test.yml").read_text())["tests"]
    checks = [check for test in tests for check in test["alert_rule_test"]]
    fired = {check["alertname"] for check in checks if check.get("exp_alerts")}
    quiet_when_healthy = {check["alertname"] for check in tests[0]["alert_rule_test"] if not check.get("exp_alerts")}
    missing: dict[str, list[str]] = {}
    for rule in alerts(folder):
        for shown, what in ((fired, "firing"), (quiet_when_healthy, "silent on the healthy lab")):
            if rule["alert"] not in shown:
                missing.setdefault(rule["alert"], []).append(what)
    return missing


def test_every_alert_is_tested_firing_and_silent():
    assert not untested(), f"alerts.test.yml does not show: {untested()}"


def test_an_alert_without_a_firing_test_is_found(tmp_path):
    copy = shutil.copytree(PROMETHEUS, tmp_path / "prometheus")
    tests = yaml.safe_load((copy / "alerts.test.yml").read_text())
    for test in tests["tests"]:
        test["alert_rule_test"] = [check for check in test["alert_rule_test"] if check["alertname"] != "ModelApiSlow"]
    (copy / "alerts.test.yml").write_text(yaml.safe_dump(tests))
    assert untested(copy) == {"ModelApiSlow": ["firing", "silent on the healthy lab"]}


@pytest.mark.parametrize("rule", alerts(), ids=lambda rule: rule["alert"])
def test_every_alert_has_a_runbook_and_names_its_service(rule):
    document, _, section = rule["annotations"]["runbook"].partition("#")
    assert (REPO_ROOT / document).resolve() == ALERTS_DOC, f"{rule['alert']}'s runbook is not in docs/alerts.md"
    assert section in anchors(ALERTS_DOC), f"docs/alerts.md has no section #{section} for {rule['alert']}"
    if rule["alert"] == "ServiceDown":  # its `service` is the job's, named after the Compose service
        assert 'label_replace(up == 0, "service", "$1", "job"' in rule["expr"]
    else:
        assert rule["labels"]["service"] in COMPOSE_SERVICES, f"{rule['alert']}: no Compose service {rule['labels']['service']}"


def scrape_targets(folder: Path = PROMETHEUS) -> dict[str, list[str]]:
    config = yaml.safe_load((folder / "prometheus.yml").read_text())
    return {
        job["job_name"]: [target for static in job["static_configs"] for target in static["targets"]]
        for job in config["scrape_configs"]
    }


def target_problems(folder: Path = PROMETHEUS) -> list[str]:
    problems = []
    for job, targets in scrape_targets(folder).items():
        for target in targets:
            address = urlsplit(f"//{target}")
            if address.hostname != job:
                problems.append(f"job {job} scrapes {target}: a job is named after the Compose service it scrapes")
            if job in PORT_SETTINGS and str(address.port) != default_of(PORT_SETTINGS[job]):
                problems.append(f"job {job} scrapes port {address.port}, not {PORT_SETTINGS[job]}'s default")
    s3_port = re.search(r"-metricsPort=(\d+)", " ".join(COMPOSE_SERVICES["s3"]["command"]))
    if [f"s3:{s3_port and s3_port[1]}"] != scrape_targets(folder).get("s3"):
        problems.append("job s3 does not scrape the port compose.yaml gives SeaweedFS's -metricsPort")
    long_running = {name for name, spec in COMPOSE_SERVICES.items() if spec.get("restart") == "unless-stopped"}
    for service in sorted(long_running - UNSCRAPED.keys()):
        if EXPORTED_BY.get(service, service) not in scrape_targets(folder):
            problems.append(f"{service} is not scraped")
    return problems


def test_every_long_running_service_is_scraped_at_its_stack_name():
    assert not target_problems(), target_problems()


def test_a_job_at_the_wrong_port_or_name_is_found(tmp_path):
    copy = shutil.copytree(PROMETHEUS, tmp_path / "prometheus")
    config = copy / "prometheus.yml"
    config.write_text(config.read_text().replace('"model-api:8092"', '"model-api:8090"').replace('"s3:9324"', '"seaweedfs:9324"'))
    assert target_problems(copy) == [
        "job model-api scrapes port 8090, not MODEL_API_METRICS_PORT's default",
        "job s3 scrapes seaweedfs:9324: a job is named after the Compose service it scrapes",
        "job s3 does not scrape the port compose.yaml gives SeaweedFS's -metricsPort",
    ]
