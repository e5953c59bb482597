"""The settings schema is the one declaration of the settings: the files that list settings are
rendered from it (.env.example, docs/configuration.md) or checked against it here (compose.yaml,
nginx's entrypoint, the Kubernetes init container). Each check also runs on a deliberately
broken copy, to show it can fail."""

from __future__ import annotations

import re

import pytest
import yaml

from mlflow_lab import settings_render
from mlflow_lab.settings import REPO_ROOT
from mlflow_lab.settings_schema import LabSettings, extra, fields, required_by

COMPOSE = REPO_ROOT / "compose.yaml"
ENTRYPOINT = REPO_ROOT / "nginx" / "entrypoint.sh"
TRACKING_SERVER_K8S = REPO_ROOT / "deploy" / "k8s" / "base" / "tracking-server.yaml"
# The compose services that check their settings at start (`Settings.validate(<service>)`).
CHECKING_SERVICES = ("init", "mlflow", "model-api", "nginx")
WIRING = set(fields(wiring=True))


def test_rendered_files_are_what_the_schema_renders(tmp_path, monkeypatch):
    for path, render in settings_render.RENDERED.items():
        assert path.read_text() == render(), f"{path.name} is stale: python -m mlflow_lab.settings_render --write"
    stale = tmp_path / ".env.example"
    stale.write_text(settings_render.render_env_example().replace("LAB_HTTP_PORT=5000", "LAB_HTTP_PORT=5001"))
    monkeypatch.setattr(settings_render, "RENDERED", {stale: settings_render.render_env_example})
    assert settings_render.main(["--check"]) == 1


def unknown_settings(compose_text: str) -> set[str]:
    """Names compose.yaml interpolates that the schema does not declare as a user setting."""
    return set(re.findall(r"\$\{([A-Z0-9_]+)", compose_text)) - (set(LabSettings.model_fields) - WIRING)


def test_compose_reads_only_declared_settings():
    text = COMPOSE.read_text()
    assert unknown_settings(text) == set()
    assert unknown_settings(text + "\n# ${LAB_TYPO:?x}\n") == {"LAB_TYPO"}


def missing_or_extra(services: dict, service: str) -> tuple[set[str], set[str]]:
    """What `service` refuses to start without but compose.yaml does not give it (under the
    setting's own name, or as a wiring variable), and what compose.yaml requires of it
    (`${NAME:?...}` under its own name) that the schema does not say it needs."""
    environment = services[service].get("environment", {})
    required_here = {name for name, value in environment.items() if re.fullmatch(rf"\$\{{{name}:\?[^}}]*\}}", str(value))}
    needed = set(required_by(service))
    return needed - required_here - (WIRING & set(environment)), required_here - needed


@pytest.mark.parametrize("service", CHECKING_SERVICES)
def test_each_service_gets_the_settings_it_checks(service):
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    assert missing_or_extra(services, service) == (set(), set())
    given = next(name for name in required_by(service) if name in services[service]["environment"])
    del services[service]["environment"][given]
    assert missing_or_extra(services, service)[0] == {given}


def entrypoint_checks(text: str) -> tuple[set[str], dict[str, str]]:
    """The names nginx's entrypoint refuses to start without, and the defaults it gives."""
    required = set(re.findall(r'^: "\$\{([A-Z0-9_]+):\?', text, re.M))
    defaults = dict(re.findall(r'^: "\$\{([A-Z0-9_]+):=([^$}]*)\}"', text, re.M))
    return required, defaults


def test_nginx_entrypoint_follows_the_schema():
    text = ENTRYPOINT.read_text()
    required, defaults = entrypoint_checks(text)
    assert required == set(required_by("nginx"))
    assert {name: str(LabSettings.model_fields[name].default) for name in defaults} == defaults
    broken = text.replace(': "${NGINX_STATUS_PORT:?', ': "${NGINX_STATUS_PORT:=8081}" # ')
    assert entrypoint_checks(broken)[0] == set(required_by("nginx")) - {"NGINX_STATUS_PORT"}


def test_kubernetes_schema_wait_gets_what_it_checks():
    documents = [doc for doc in yaml.safe_load_all(TRACKING_SERVER_K8S.read_text()) if doc]
    pods = [doc["spec"]["template"]["spec"] for doc in documents if "template" in doc.get("spec", {})]
    containers = [container for pod in pods for container in pod.get("initContainers", [])]
    (wait,) = [c for c in containers if "--wait" in c["command"]]
    assert set(required_by("wait-for-schema")) <= {variable["name"] for variable in wait["env"]}


def test_every_setting_says_what_it_is():
    for name, field in LabSettings.model_fields.items():
        meta = extra(field)
        assert field.description and meta.get("group"), name
        assert not (meta.get("generated") and not meta.get("secret")), f"{name}: generated values are secrets"
        assert not (meta.get("optional") and meta["services"]), f"{name}: optional, yet needed by {meta['services']}"
