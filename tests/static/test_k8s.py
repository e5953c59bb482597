"""The lab's Kubernetes manifests (deploy/k8s): every target renders with kustomize, every
object validates offline, and the invariants hold: images pinned and equal to Compose's,
non-root, read-only, bounded, probed, no secret outside a Secret, only nginx reachable from
outside the namespace, and each container reads what its Compose service reads."""

from __future__ import annotations

import base64
import re
import secrets
from pathlib import Path

import pytest
import yaml

from mlflow_lab.deploy import k8s, kserve
from mlflow_lab.errors import LabError
from mlflow_lab.native import declaration
from mlflow_lab.registry import ModelRef
from mlflow_lab.settings import ENV_EXAMPLE, Settings, parse_env_file
from tests.static.api_types import problems

EXTERNAL = {"POSTGRES_HOST": "db.example.internal", "POSTGRES_PORT": "5432", "S3_ENDPOINT_URL": "https://s3.example.internal"}
POD_KINDS = {"Deployment", "StatefulSet", "Job", "CronJob"}
# Kubernetes workload -> the Compose service it runs (same image, command and variables).
COMPOSE_SERVICE = {
    "init": "init",
    "mlflow": "mlflow",
    "model-api": "model-api",
    "nginx": "nginx",
    "postgres": "postgres",
    "s3": "s3",
}


def lab_settings(**changes: str) -> Settings:
    values = {**parse_env_file(ENV_EXAMPLE), **{key: secrets.token_urlsafe(24) for key in k8s.SECRET_KEYS}}
    return Settings({**values, **changes})


@pytest.fixture(scope="module")
def rendered() -> dict[str, tuple[Settings, list[dict]]]:
    found = {}
    for target in k8s.TARGETS:
        settings = lab_settings(**(EXTERNAL if target == "external" else {}))
        found[target] = settings, k8s.render(settings, target)
    return found


def pod_spec(obj: dict) -> dict | None:
    if obj["kind"] == "CronJob":
        return obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return obj["spec"]["template"]["spec"] if obj["kind"] in POD_KINDS else None


def containers(objects: list[dict]):
    for obj in objects:
        if spec := pod_spec(obj):
            for container in spec.get("initContainers", []) + spec["containers"]:
                yield obj, spec, container
        elif obj["kind"] == "ClusterServingRuntime":
            for container in obj["spec"]["containers"]:
                yield obj, obj["spec"], container


@pytest.mark.parametrize("target", k8s.TARGETS)
def test_every_object_validates_offline(rendered, target):
    _, objects = rendered[target]
    assert objects
    assert [p for obj in objects for p in problems(obj)] == []


def test_the_inferenceservice_validates_against_kserves_types(monkeypatch):
    monkeypatch.setattr(
        kserve.registry_model,
        "storage_uri",
        lambda settings, uri: (ModelRef("wine-quality", "3"), "s3://mlflow/1/models/m-1/artifacts"),
    )
    service = kserve.inference_service(lab_settings(), "models:/wine-quality/Production")
    assert problems(service) == []
    # ...and the check can fail: a misspelt field and a missing required one.
    service["spec"]["predictor"]["model"]["storageURI"] = service["spec"]["predictor"]["model"].pop("storageUri")
    del service["spec"]["predictor"]["model"]["modelFormat"]
    found = problems(service)
    assert any("unknown field 'storageURI'" in p for p in found) and any("model_format" in p for p in found), found


def test_the_core_validation_can_fail(rendered):
    _, objects = rendered["all-in-one"]
    broken = yaml.safe_load(yaml.safe_dump(next(o for o in objects if o["kind"] == "Deployment")))
    broken["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["paht"] = "/x"
    assert problems(broken)


def test_images_are_pinned_and_those_of_compose(rendered):
    compose = declaration.load(lab_settings().as_env())
    compose_images = {spec["image"] for spec in compose.values() if "image" in spec}
    for target, (_, objects) in rendered.items():
        for obj, _, container in containers(objects):
            image = container["image"]
            assert re.fullmatch(r"[\w./-]+:[\w.-]+", image) and not image.endswith(":latest"), (target, image)
            assert image in compose_images, (target, obj["metadata"]["name"], image)


def test_workloads_run_non_root_read_only_bounded_and_probed(rendered):
    for target, (_, objects) in rendered.items():
        for obj, spec, container in containers(objects):
            where = (target, obj["kind"], obj["metadata"]["name"], container["name"])
            security = {**spec.get("securityContext", {}), **container.get("securityContext", {})}
            assert security.get("runAsNonRoot") is True and security.get("runAsUser", 0) > 0, where
            assert security.get("allowPrivilegeEscalation") is False and security.get("readOnlyRootFilesystem") is True, where
            assert security["capabilities"]["drop"] == ["ALL"], where
            assert {"cpu", "memory"} <= set(container["resources"]["requests"]) & set(container["resources"]["limits"]), where
            long_running = obj["kind"] in {"Deployment", "StatefulSet", "ClusterServingRuntime"}
            if long_running and container in spec["containers"]:
                assert "readinessProbe" in container and "livenessProbe" in container, where


def test_no_secret_outside_a_secret_and_none_in_the_checkout(rendered):
    for target, (settings, objects) in rendered.items():
        values = {settings[key] for key in k8s.SECRET_KEYS if key != "S3_ACCESS_KEY_ID"}
        for obj in objects:
            text = yaml.safe_dump(obj)
            if obj["kind"] == "Secret":
                decoded = {base64.b64decode(v).decode() for v in obj["data"].values()}
                assert decoded & values, "the Secret carries them"
            else:
                assert not any(value in text for value in values), (target, obj["kind"], obj["metadata"]["name"])
    written = [p for p in k8s.K8S_DIR.rglob("*.env")]
    assert written == [], f"settings files left in the checkout: {written}"


def test_only_nginx_is_reachable_from_outside_the_namespace(rendered):
    for target, (_, objects) in rendered.items():
        if target == "kserve":
            continue
        policies = [o for o in objects if o["kind"] == "NetworkPolicy"]
        catch_all = [p for p in policies if p["spec"]["podSelector"] == {}]
        assert catch_all and all(rule["from"] == [{"podSelector": {}}] for p in catch_all for rule in p["spec"]["ingress"]), (
            target
        )
        for policy in policies:
            for rule in policy["spec"]["ingress"]:
                from_outside = "from" not in rule or any(set(peer) - {"podSelector"} for peer in rule["from"])
                if from_outside:
                    assert policy["spec"]["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": "nginx"}}, policy
        for obj in objects:
            if obj["kind"] == "Service":
                assert obj["spec"].get("type", "ClusterIP") == "ClusterIP", obj["metadata"]["name"]
            if obj["kind"] == "Ingress":
                backends = {path["backend"]["service"]["name"] for rule in obj["spec"]["rules"] for path in rule["http"]["paths"]}
                assert backends == {"nginx"}


def test_each_container_reads_what_its_compose_service_reads(rendered):
    """Same command and the same variables as compose.yaml's service (plus what the cluster needs)."""
    compose = declaration.load(lab_settings().as_env())
    _, objects = rendered["all-in-one"]
    checked = set()
    for obj, spec, container in containers(objects):
        service = COMPOSE_SERVICE.get(obj["metadata"]["name"])
        if service is None or container not in spec["containers"]:
            continue
        declared = compose[service]
        names = {item["name"] for item in container.get("env", [])}
        assert set(declared.get("environment") or {}) <= names, (service, set(declared["environment"]) - names)
        if "command" in container:
            assert container["command"] == declared["command"], service
        checked.add(service)
    assert checked == set(COMPOSE_SERVICE.values())


def test_fixed_ports_are_the_defaults_of_env_example(rendered):
    """Ports in the manifests are literal; they are .env.example's defaults, changed together."""
    defaults = parse_env_file(ENV_EXAMPLE)
    _, objects = rendered["all-in-one"]
    for obj, _, container in containers(objects):
        for item in container.get("env", []):
            if re.fullmatch(r"(MLFLOW|MODEL_API|MODEL_API_GRPC|MODEL_API_METRICS)_PORT", item["name"]) and "value" in item:
                assert item["value"] == defaults[item["name"]], (obj["metadata"]["name"], item)


def test_a_missing_setting_stops_the_render_naming_it():
    with pytest.raises(LabError, match=r"^external needs POSTGRES_HOST \(Deployment mlflow\): set it in .env.$"):
        k8s.render(lab_settings(), "external")
    with pytest.raises(LabError, match=r"^all-in-one needs LAB_PASSWORD"):
        k8s.render(lab_settings(LAB_PASSWORD=""), "all-in-one")
    with pytest.raises(LabError, match="^no Kubernetes target 'prod'; the targets are all-in-one, external, kserve.$"):
        k8s.render(lab_settings(), "prod")


def test_a_broken_manifest_fails_the_render_with_kustomizes_reason(tmp_path: Path):
    import shutil

    copy = tmp_path / "k8s"
    shutil.copytree(k8s.K8S_DIR, copy)
    (copy / "base" / "kustomization.yaml").write_text((copy / "base" / "kustomization.yaml").read_text() + "  - missing.yaml\n")
    with pytest.raises(LabError, match="^kustomize could not render all-in-one: "):
        k8s.render(lab_settings(), "all-in-one", source=copy)
