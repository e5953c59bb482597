"""What only the Compose runner has: containers, their users and published ports, and values
derived from a non-default port inside the containers."""

from __future__ import annotations

import json
import subprocess

import pytest
import yaml

from mlflow_lab.compose import ComposeStack
from mlflow_lab.settings import REPO_ROOT
from mlflow_lab.testing.stacks import lab_cli
from tests.compose.harness import INTERNALS

pytestmark = [pytest.mark.stack, pytest.mark.contract("compose")]


@pytest.fixture
def compose(lab) -> ComposeStack:
    return lab.require("compose")


def containers(compose: ComposeStack) -> dict[str, dict]:
    """Service name -> `docker inspect` of its running container."""
    ids = compose.containers()
    inspected = json.loads(subprocess.run(["docker", "inspect", *ids], capture_output=True, text=True, check=True).stdout)
    return {c["Config"]["Labels"]["com.docker.compose.service"]: c for c in inspected}


def test_only_nginx_publishes_ports(lab, compose):
    product = subprocess.run(
        [*compose.command("-f", str(REPO_ROOT / "compose.yaml"), "config", "--format", "json")],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO_ROOT,
        env={**compose.environ, "COMPOSE_FILE": ""},
    )
    services = json.loads(product.stdout)["services"]
    assert {name for name, svc in services.items() if svc.get("ports")} == {"nginx"}
    # The running stack: nginx's two ports, plus what the tests' own override publishes on loopback.
    test_only = set(yaml.safe_load(INTERNALS.read_text())["services"])
    for service, container in containers(compose).items():
        published = {port: bindings for port, bindings in (container["NetworkSettings"]["Ports"] or {}).items() if bindings}
        if service == "nginx":
            assert {b["HostPort"] for bindings in published.values() for b in bindings} == {
                lab.settings["LAB_HTTP_PORT"],
                lab.settings["LAB_GRPC_PORT"],
            }
        elif published:
            assert service in test_only, f"{service} publishes {published}"
            assert all(b["HostIp"] == "127.0.0.1" for bindings in published.values() for b in bindings)


def test_every_container_runs_as_a_non_root_user(compose):
    for service, container in containers(compose).items():
        assert container["Config"]["User"] not in ("", "0", "root", "0:0"), f"{service} runs as root"
        uid = compose.exec(service, ["id", "-u"]).stdout.strip()
        assert uid != "0", f"{service}'s processes run as root"


def test_values_derived_from_a_non_default_port_follow_it(lab, compose):
    assert lab.settings["MLFLOW_PORT"] != "5001", "the test stack uses a non-default MLFLOW_PORT"
    env = dict(item.split("=", 1) for item in containers(compose)["model-api"]["Config"]["Env"])
    assert env["MODEL_API_TRACKING_URI"] == f"http://mlflow:{lab.settings['MLFLOW_PORT']}"
    assert lab.session().get(f"{lab.url}/v2/health/ready", timeout=10).status_code == 200


def test_a_second_up_rebuilds_nothing_and_replaces_no_container(lab, compose):
    before = {service: (c["Id"], c["Image"]) for service, c in containers(compose).items()}
    up = lab_cli(lab.cli_env, "up")
    assert "MLflow is up at" in up.stdout
    assert {service: (c["Id"], c["Image"]) for service, c in containers(compose).items()} == before
