"""The lab's Kubernetes manifests (deploy/k8s): every target renders with kustomize, every
object validates offline, and the invariants hold: images pinned and equal to Compose's,
non-root, read-only, bounded, probed, no secret outside a Secret, only nginx reachable from
outside the namespace, and each container reads what its Compose service reads. Monitoring:
Prometheus holds services/prometheus's files, each scrape target is a Service of the render
that Prometheus may reach and nothing outside the namespace can."""

from __future__ import annotations

import base64
import re
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from mlflow_lab.deploy import k8s, kserve
from mlflow_lab.errors import LabError
from mlflow_lab.native import declaration
from mlflow_lab.registry import ModelRef
from mlflow_lab.settings import ENV_EXAMPLE, Settings, generated_vars, parse_env_file
from tests.static.api_types import problems

EXTERNAL = {"POSTGRES_HOST": "db.example.internal", "POSTGRES_PORT": "5432", "S3_ENDPOINT_URL": "https://s3.example.internal"}
POD_KINDS = {"Deployment", "StatefulSet", "Job", "CronJob"}
# Container (of a workload's pod) -> the Compose service it runs (same image, command and
# variables). The exporters run as sidecars where a pod of their own cannot (node-exporter: the
# PostgreSQL volume mounts in one pod) or need not (nginx-exporter reads its nginx's loopback).
COMPOSE_SERVICE = {
    "init": "init",
    "mlflow": "mlflow",
    "model-api": "model-api",
    "nginx": "nginx",
    "postgres": "postgres",
    "s3": "s3",
    "prometheus": "prometheus",
    "postgres-exporter": "postgres-exporter",
    "nginx-exporter": "nginx-exporter",
    "node-exporter": "node-exporter",
}


# What `make up` fills in .env with strong random secrets.
GENERATED = generated_vars()


def lab_settings(**changes: str) -> Settings:
    values = {**parse_env_file(ENV_EXAMPLE), **{key: secrets.token_urlsafe(24) for key in GENERATED}}
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


def env_sources(objects: list[dict], workload: str, container_name: str | None = None) -> dict[str, tuple]:
    """A container's variables: name -> (ref kind, ConfigMap/Secret as named before kustomize's
    hash suffix, key, the value it resolves to in the render), or ("value", value)."""
    rendered_data = {}
    for obj in objects:
        if obj["kind"] == "ConfigMap":
            rendered_data["configMapKeyRef", obj["metadata"]["name"]] = obj.get("data") or {}
        elif obj["kind"] == "Secret":
            decoded = {k: base64.b64decode(v).decode() for k, v in (obj.get("data") or {}).items()}
            rendered_data["secretKeyRef", obj["metadata"]["name"]] = decoded
    found = {}
    for obj, spec, container in containers(objects):
        if obj["metadata"]["name"] != workload or container not in spec["containers"]:
            continue
        if container_name not in (None, container["name"]):
            continue
        for item in container.get("env", []):
            source = item.get("valueFrom", {})
            kind = next((k for k in ("configMapKeyRef", "secretKeyRef") if k in source), None)
            if kind is None:
                found[item["name"]] = ("value", item.get("value"))
                continue
            ref = source[kind]
            data = rendered_data.get((kind, ref["name"]))
            name = ref["name"].rsplit("-", 1)[0] if data is not None else ref["name"]
            found[item["name"]] = (kind, name, ref["key"], (data or {}).get(ref["key"]))
    assert found, f"no workload {workload} in the render"
    return found


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


def compose_images() -> set[str]:
    compose = declaration.load(lab_settings().as_env())
    return {spec["image"] for spec in compose.values() if "image" in spec}


def unpinned_or_not_composes(objects: list[dict]) -> list[tuple[str, str]]:
    """(workload, image) of every container image without a fixed tag or not built or pulled by Compose."""
    known = compose_images()
    return [
        (obj["metadata"]["name"], image)
        for obj, _, container in containers(objects)
        if not re.fullmatch(r"[\w./-]+:[\w.-]+", image := container["image"]) or image.endswith(":latest") or image not in known
    ]


def test_images_are_pinned_and_those_of_compose(rendered):
    for target, (_, objects) in rendered.items():
        assert unpinned_or_not_composes(objects) == [], target


IMAGES_COMPONENT = "components/images"


def image_fields(node) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "image" and isinstance(value, str):
                yield value
            else:
                yield from image_fields(value)
    elif isinstance(node, list):
        for item in node:
            yield from image_fields(item)


def test_the_lab_images_are_tagged_once_by_the_images_component():
    """The manifests name the lab's images untagged; components/images tags each once, with
    Compose's tag; every target lists the component last (a component transforms only what
    came before it)."""
    entries = yaml.safe_load((k8s.K8S_DIR / IMAGES_COMPONENT / "kustomization.yaml").read_text())["images"]
    names = [entry["name"] for entry in entries]
    assert len(names) == len(set(names))
    manifests = [path for path in k8s.K8S_DIR.rglob("*.yaml") if path.name != "kustomization.yaml"]
    named = {image for path in manifests for doc in yaml.safe_load_all(path.read_text()) for image in image_fields(doc)}
    assert {image for image in named if image.startswith("mlflow-lab/")} == set(names)
    assert {f"{entry['name']}:{entry['newTag']}" for entry in entries} <= compose_images()
    for target, folder in k8s.TARGETS.items():
        listed = yaml.safe_load((k8s.K8S_DIR / folder / "kustomization.yaml").read_text())["components"]
        assert listed[-1].endswith(IMAGES_COMPONENT), target


def test_an_images_component_listed_too_early_leaves_an_image_untagged(tmp_path: Path):
    import shutil

    copy = tmp_path / "k8s"
    shutil.copytree(k8s.K8S_DIR, copy)
    overlay = copy / "overlays" / "all-in-one" / "kustomization.yaml"
    spec = yaml.safe_load(overlay.read_text())
    spec["components"].insert(0, spec["components"].pop())
    overlay.write_text(yaml.safe_dump(spec))
    assert sorted(unpinned_or_not_composes(k8s.render(lab_settings(), "all-in-one", source=copy))) == [
        ("batch-score", "mlflow-lab/jobs"),
        ("gc", "mlflow-lab/tracking-server"),
        ("nginx", "nginx/nginx-prometheus-exporter"),
        ("postgres-exporter", "quay.io/prometheuscommunity/postgres-exporter"),
        ("prometheus", "prom/prometheus"),
    ]


def test_third_party_images_are_the_image_settings_tagged_by_the_images_component(rendered):
    """PostgreSQL, SeaweedFS, Prometheus and the exporters: the manifests name each untagged,
    by its setting's default name, and the render gives it the setting's name and tag."""
    defaults = {k8s.image_name(str(k8s.LabSettings.model_fields[key].default)) for key in k8s.IMAGE_SETTINGS}
    manifests = [path for path in k8s.K8S_DIR.rglob("*.yaml") if path.name != "kustomization.yaml"]
    named = {image for path in manifests for doc in yaml.safe_load_all(path.read_text()) for image in image_fields(doc)}
    third_party = {image for image in named if not image.startswith("mlflow-lab/")}
    assert third_party <= defaults, third_party - defaults
    assert {"postgres", "chrislusf/seaweedfs", "prom/prometheus", "prom/node-exporter"} <= third_party
    settings, objects = rendered["all-in-one"]
    images = {container["image"] for _, _, container in containers(objects)}
    for key in (
        "POSTGRES_IMAGE",
        "SEAWEEDFS_IMAGE",
        "PROMETHEUS_IMAGE",
        "POSTGRES_EXPORTER_IMAGE",
        "NGINX_EXPORTER_IMAGE",
        "NODE_EXPORTER_IMAGE",
    ):
        assert settings[key] in images, key


def test_an_image_setting_of_env_reaches_the_cluster():
    """A mirror registry set in .env (settings_schema's images group) is the cluster's too."""
    mirror = "mirror.example.com:5000/prom/prometheus:v3.7.3-mirrored"
    objects = k8s.render(lab_settings(PROMETHEUS_IMAGE=mirror, POSTGRES_IMAGE="postgres:15.99"), "all-in-one")
    images = {obj["metadata"]["name"]: {c["image"] for _, _, c in containers([obj])} for obj in objects if pod_spec(obj)}
    assert images["prometheus"] == {mirror}
    assert "postgres:15.99" in images["postgres"]
    with pytest.raises(LabError, match=r"^PROMETHEUS_IMAGE must name an image with its tag \(name:tag\), not 'prom/prometheus'"):
        k8s.render(lab_settings(PROMETHEUS_IMAGE="prom/prometheus"), "all-in-one")


def assert_hardened(spec: dict, container: dict, where) -> None:
    """Non-root, no privilege escalation, read-only root filesystem, no capabilities, bounded."""
    security = {**spec.get("securityContext", {}), **container.get("securityContext", {})}
    assert security.get("runAsNonRoot") is True and security.get("runAsUser", 0) > 0, where
    assert security.get("allowPrivilegeEscalation") is False and security.get("readOnlyRootFilesystem") is True, where
    assert security["capabilities"]["drop"] == ["ALL"], where
    assert {"cpu", "memory"} <= set(container["resources"]["requests"]) & set(container["resources"]["limits"]), where


def test_workloads_run_non_root_read_only_bounded_and_probed(rendered):
    for target, (_, objects) in rendered.items():
        for obj, spec, container in containers(objects):
            where = (target, obj["kind"], obj["metadata"]["name"], container["name"])
            assert_hardened(spec, container, where)
            long_running = obj["kind"] in {"Deployment", "StatefulSet", "ClusterServingRuntime"}
            if long_running and container in spec["containers"]:
                assert "readinessProbe" in container and "livenessProbe" in container, where


def test_no_secret_outside_a_secret_and_none_in_the_checkout(rendered):
    for target, (settings, objects) in rendered.items():
        # S3_ACCESS_KEY_ID's default is also the lab's name, in every object's labels.
        values = {settings[key] for key in {*k8s.SECRET_KEYS, *GENERATED} if key != "S3_ACCESS_KEY_ID"}
        for obj in objects:
            text = yaml.safe_dump(obj)
            if obj["kind"] == "Secret":
                decoded = {base64.b64decode(v).decode() for v in obj["data"].values()}
                assert decoded & values, "the Secret carries them"
            else:
                assert not any(value in text for value in values), (target, obj["kind"], obj["metadata"]["name"])
    written = [p for p in k8s.K8S_DIR.rglob("*.env")]
    generated = [path for path in k8s.generated_files(lab_settings(), "all-in-one") if (k8s.K8S_DIR / path).exists()]
    assert written == [] and generated == [], f"generated files left in the checkout: {written + generated}"


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
    for _, spec, container in containers(objects):
        service = COMPOSE_SERVICE.get(container["name"])
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
            if (
                re.fullmatch(r"(MLFLOW|MLFLOW_METRICS|MODEL_API|MODEL_API_GRPC|MODEL_API_METRICS)_PORT", item["name"])
                and "value" in item
            ):
                assert item["value"] == defaults[item["name"]], (obj["metadata"]["name"], item)


def test_every_generated_secret_goes_to_the_secret_only(rendered):
    assert {"MODEL_API_PASSWORD", "MLFLOW_FLASK_SERVER_SECRET_KEY"} <= set(GENERATED)
    assert set(GENERATED) <= set(k8s.SECRET_KEYS), "a generated secret would land in the lab-config ConfigMap"
    for target in ("all-in-one", "external"):
        settings, objects = rendered[target]
        secret = next(o for o in objects if o["kind"] == "Secret" and o["metadata"]["name"].startswith("lab-secrets-"))
        decoded = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
        for key in GENERATED:
            assert decoded[key] == settings[key], (target, key)
            for config_map in (o for o in objects if o["kind"] == "ConfigMap"):
                data = config_map.get("data") or {}
                assert key not in data and settings[key] not in data.values(), (target, config_map["metadata"]["name"], key)


def test_the_lab_programs_read_their_own_credentials(rendered):
    settings, objects = rendered["all-in-one"]

    def plain(key):
        return ("configMapKeyRef", "lab-config", key, settings[key])

    def secret(key):
        return ("secretKeyRef", "lab-secrets", key, settings[key])

    init = env_sources(objects, "init")
    for key in ("POSTGRES_AUTH_DB", "LAB_USER", "MODEL_API_USER"):
        assert init[key] == plain(key), key
    for key in ("LAB_PASSWORD", "MODEL_API_PASSWORD", "MLFLOW_FLASK_SERVER_SECRET_KEY"):
        assert init[key] == secret(key), key

    server = env_sources(objects, "mlflow", "mlflow")
    for key in ("POSTGRES_AUTH_DB", "LAB_USER", "LAB_AUTH_CACHE_SECONDS"):
        assert server[key] == plain(key), key
    assert server["MLFLOW_FLASK_SERVER_SECRET_KEY"] == secret("MLFLOW_FLASK_SERVER_SECRET_KEY")
    assert "LAB_PASSWORD" not in server

    # The model API reads the registry as its own account, not as the admin.
    model_api = env_sources(objects, "model-api")
    assert model_api["MLFLOW_TRACKING_USERNAME"] == plain("MODEL_API_USER")
    assert model_api["MLFLOW_TRACKING_PASSWORD"] == secret("MODEL_API_PASSWORD")

    # The batch-scoring job as well: an account the operator makes, in a Secret of its own.
    score = env_sources(objects, "batch-score")
    assert score["MLFLOW_TRACKING_USERNAME"] == ("secretKeyRef", "batch-scoring-account", "username", None)
    assert score["MLFLOW_TRACKING_PASSWORD"] == ("secretKeyRef", "batch-scoring-account", "password", None)
    assert not any(source[2] in ("LAB_USER", "LAB_PASSWORD") for source in score.values() if source[0] != "value")


def test_nginx_holds_no_password_and_caches_credentials_in_memory(rendered):
    for target in ("all-in-one", "external"):
        settings, objects = rendered[target]
        nginx = env_sources(objects, "nginx", "nginx")
        assert not {"LAB_USER", "LAB_PASSWORD"} & set(nginx), target
        refs = {source[2] for source in nginx.values() if source[0] != "value"}
        assert not refs & set(k8s.SECRET_KEYS), (target, refs)
        assert nginx["LAB_AUTH_CACHE_SECONDS"] == ("configMapKeyRef", "lab-config", "LAB_AUTH_CACHE_SECONDS", "5")
        deployment = next(o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == "nginx")
        spec = deployment["spec"]["template"]["spec"]
        (container,) = [c for c in spec["containers"] if c["name"] == "nginx"]
        runtime_dir = nginx["NGINX_RUNTIME_DIR"][1]
        (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == runtime_dir]
        (volume,) = [v for v in spec["volumes"] if v["name"] == mount["name"]]
        assert volume["emptyDir"].get("medium") == "Memory", target
        assert container["securityContext"]["readOnlyRootFilesystem"] is True


def test_only_the_operators_secrets_are_outside_the_render(rendered):
    """Every key a container reads resolves in the render, but for the Secrets the operator
    makes with kubectl, which the render does not check."""
    outside = set()
    for target, (_, objects) in rendered.items():
        for obj, _, container in containers(objects):
            for item in container.get("env", []):
                source = item.get("valueFrom", {})
                for kind, object_kind in (("configMapKeyRef", "ConfigMap"), ("secretKeyRef", "Secret")):
                    if kind in source:
                        names = {o["metadata"]["name"] for o in objects if o["kind"] == object_kind}
                        if source[kind]["name"] not in names:
                            outside.add((target, obj["metadata"]["name"], kind, source[kind]["name"]))
    assert outside == {(target, "batch-score", "secretKeyRef", "batch-scoring-account") for target in ("all-in-one", "external")}
    assert set(k8s.OPERATOR_SECRETS) == {"batch-scoring-account"}


def test_a_misspelt_reference_still_stops_the_render(tmp_path: Path):
    """The operator's Secrets are exempt by name only: any other Secret missing from the render
    still stops it."""
    import shutil

    copy = tmp_path / "k8s"
    shutil.copytree(k8s.K8S_DIR, copy)
    cronjob = copy / "components" / "batch-scoring" / "cronjob.yaml"
    cronjob.write_text(
        cronjob.read_text().replace("name: batch-scoring-account, key: password", "name: batch-scoring-acount, key: password")
    )
    with pytest.raises(LabError, match=r"^all-in-one needs password \(CronJob batch-score\)"):
        k8s.render(lab_settings(), "all-in-one", source=copy)


def test_a_missing_setting_stops_the_render_naming_it():
    with pytest.raises(LabError, match=r"^external needs POSTGRES_HOST \(Deployment mlflow\): set it in .env.$"):
        k8s.render(lab_settings(), "external")
    with pytest.raises(LabError, match=r"^all-in-one needs LAB_PASSWORD"):
        k8s.render(lab_settings(LAB_PASSWORD=""), "all-in-one")
    with pytest.raises(LabError, match=r"^all-in-one needs MODEL_API_PASSWORD \(Deployment model-api\): set it in .env.$"):
        k8s.render(lab_settings(MODEL_API_PASSWORD=""), "all-in-one")
    with pytest.raises(LabError, match=r"^external needs MLFLOW_FLASK_SERVER_SECRET_KEY \(Deployment mlflow\): set it in .env.$"):
        k8s.render(lab_settings(MLFLOW_FLASK_SERVER_SECRET_KEY="", **EXTERNAL), "external")
    with pytest.raises(LabError, match="^no Kubernetes target 'prod'; the targets are all-in-one, external, kserve.$"):
        k8s.render(lab_settings(), "prod")


def test_a_broken_manifest_fails_the_render_with_kustomizes_reason(tmp_path: Path):
    import shutil

    copy = tmp_path / "k8s"
    shutil.copytree(k8s.K8S_DIR, copy)
    (copy / "base" / "kustomization.yaml").write_text((copy / "base" / "kustomization.yaml").read_text() + "  - missing.yaml\n")
    with pytest.raises(LabError, match="^kustomize could not render all-in-one: "):
        k8s.render(lab_settings(), "all-in-one", source=copy)


def test_only_the_lab_settings_reach_a_manifest():
    """The caller's own environment (tokens, paths) never lands in a ConfigMap or Secret: only
    the settings schema's settings are rendered, each in its place."""
    settings = lab_settings(GITHUB_TOKEN="ghp-not-for-the-cluster", HOME="/home/alice")
    rendered = "".join(k8s.settings_files(settings).values())
    assert "ghp-not-for-the-cluster" not in rendered and "/home/alice" not in rendered
    config = k8s.settings_files(settings)["components/settings/lab-config.env"]
    assert {line.split("=", 1)[0] for line in config.splitlines()} <= set(k8s.CONFIG_KEYS)
    assert "MLFLOW_PORT=5001" in config


# --- monitoring (components/monitoring) -----------------------------------------------------

MONITORED = ("all-in-one", "external")


def find(objects: list[dict], kind: str, name: str) -> dict:
    (found,) = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    return found


def expanded(text: str, env: dict[str, tuple]) -> str:
    """`text` with Kubernetes' $(VAR) references replaced by the variables' rendered values."""
    return re.sub(r"\$\((\w+)\)", lambda m: str(expanded(env[m.group(1)][-1], env)), text)


def prometheus_config_map(objects: list[dict]) -> dict:
    spec = find(objects, "StatefulSet", "prometheus")["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == "/etc/prometheus"]
    (volume,) = [v for v in spec["volumes"] if v["name"] == mount["name"]]
    return find(objects, "ConfigMap", volume["configMap"]["name"])


def scrape_targets(objects: list[dict]) -> dict[str, str]:
    """job -> host:port, from the prometheus.yml the render's Prometheus reads."""
    config = yaml.safe_load(prometheus_config_map(objects)["data"]["prometheus.yml"])
    return {job["job_name"]: target for job in config["scrape_configs"] for c in job["static_configs"] for target in c["targets"]}


def backends(objects: list[dict], service: str, port: int) -> list[tuple[dict, int, str]]:
    """What Service `service`'s `port` leads to: (pod labels, container port, its name) of every
    workload the Service selects, the port looked up in the pod's containers."""
    spec = find(objects, "Service", service)["spec"]
    (entry,) = [p for p in spec["ports"] if p["port"] == port]
    target = entry.get("targetPort", port)
    found = []
    for obj in objects:
        pod = pod_spec(obj)
        labels = obj["spec"]["template"]["metadata"]["labels"] if pod and obj["kind"] != "CronJob" else None
        if labels is None or not all(labels.get(k) == v for k, v in spec["selector"].items()):
            continue
        for container in pod["containers"]:
            for cport in container.get("ports", []):
                if target in (cport["containerPort"], cport.get("name")):
                    found.append((labels, cport["containerPort"], cport.get("name")))
    return found


def admitted(policies: list[dict], pod: dict, port: int, port_name: str | None, source: dict | None) -> bool:
    """Whether NetworkPolicies let `source` (a pod's labels in the namespace; None: anything
    outside it) reach `pod`'s port. Over-approximates what outside reaches (any namespace or
    IP peer counts) and under-approximates the namespace's pods (only podSelector peers)."""

    def selects(selector: dict, labels: dict) -> bool:
        assert set(selector) <= {"matchLabels"}, selector  # the lab's policies use labels only
        return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())

    def peer_matches(peer: dict) -> bool:
        if source is None:
            return bool({"namespaceSelector", "ipBlock"} & set(peer))
        return set(peer) == {"podSelector"} and selects(peer["podSelector"], source)

    isolating = [
        p for p in policies if "Ingress" in p["spec"].get("policyTypes", ["Ingress"]) and selects(p["spec"]["podSelector"], pod)
    ]
    if not isolating:
        return True
    for policy in isolating:
        for rule in policy["spec"].get("ingress", []):
            ports = rule.get("ports")
            if ports and not any(p.get("port") in (None, port, port_name) for p in ports):
                continue
            if "from" not in rule or any(peer_matches(peer) for peer in rule["from"]):
                return True
    return False


@pytest.mark.parametrize("target", MONITORED)
def test_both_overlays_run_monitoring(rendered, target):
    """Prometheus with a volume claim, the exporters, each behind a ClusterIP Service of
    Compose's name; all-in-one also exports SeaweedFS's metrics and the database volume's."""
    _, objects = rendered[target]
    prometheus = find(objects, "StatefulSet", "prometheus")
    assert [c["metadata"]["name"] for c in prometheus["spec"]["volumeClaimTemplates"]] == ["data"]
    names = {(o["kind"], o["metadata"]["name"]) for o in objects}
    assert {
        ("Service", "prometheus"),
        ("Deployment", "postgres-exporter"),
        ("Service", "postgres-exporter"),
        ("Service", "nginx-exporter"),
    } <= names
    nginx = find(objects, "Deployment", "nginx")["spec"]["template"]
    assert sorted(c["name"] for c in nginx["spec"]["containers"]) == ["nginx", "nginx-exporter"]
    assert nginx["metadata"]["annotations"]["kubectl.kubernetes.io/default-container"] == "nginx"
    in_cluster_stores = {("Service", "node-exporter"), ("Service", "s3")}
    assert in_cluster_stores <= names if target == "all-in-one" else not in_cluster_stores & names
    if target == "all-in-one":
        postgres = find(objects, "StatefulSet", "postgres")["spec"]["template"]["spec"]
        (exporter,) = [c for c in postgres["containers"] if c["name"] == "node-exporter"]
        assert exporter["volumeMounts"] == [{"name": "data", "mountPath": "/volumes/postgres-data", "readOnly": True}]
    assert not [o for o in objects if o["kind"] == "Ingress" and "prometheus" in yaml.safe_dump(o)]


def test_monitoring_comes_before_the_images_component():
    for target in MONITORED:
        listed = yaml.safe_load((k8s.K8S_DIR / k8s.TARGETS[target] / "kustomization.yaml").read_text())["components"]
        assert listed.index("../../components/monitoring") < listed.index(f"../../{IMAGES_COMPONENT}"), target


@pytest.mark.parametrize("target", MONITORED)
def test_prometheus_holds_the_files_of_services_prometheus(rendered, target):
    """The same files as Compose mounts: alerts.yml as it is; prometheus.yml too, but for the
    scrape jobs of stores the target does not run (external's are managed)."""
    data = prometheus_config_map(rendered[target][1])["data"]
    files = {name: (k8s.PROMETHEUS_DIR / name).read_text() for name in k8s.PROMETHEUS_FILES}
    assert set(data) == set(files)
    assert data["alerts.yml"] == files["alerts.yml"]
    if target == "all-in-one":
        assert data["prometheus.yml"] == files["prometheus.yml"]
    else:
        full, mine = yaml.safe_load(files["prometheus.yml"]), yaml.safe_load(data["prometheus.yml"])
        dropped = [job for job in full["scrape_configs"] if job["job_name"] in k8s.NOT_SCRAPED[target]]
        assert [job["job_name"] for job in dropped] == ["s3", "node-exporter"]
        assert mine == {**full, "scrape_configs": [job for job in full["scrape_configs"] if job not in dropped]}
    # ...and Prometheus reads them there, keeping PROMETHEUS_RETENTION, under nginx's /prometheus/.
    settings, objects = rendered[target]
    (container,) = find(objects, "StatefulSet", "prometheus")["spec"]["template"]["spec"]["containers"]
    env = env_sources(objects, "prometheus")
    assert [expanded(arg, env) for arg in container["args"]] == [
        "--config.file=/etc/prometheus/prometheus.yml",
        "--storage.tsdb.path=/prometheus",
        f"--storage.tsdb.retention.time={settings['PROMETHEUS_RETENTION']}",
        "--web.external-url=/prometheus/",
    ]
    assert settings["PROMETHEUS_RETENTION"] == "15d"
    assert {m["mountPath"] for m in container["volumeMounts"]} == {"/etc/prometheus", "/prometheus"}


def test_every_scrape_target_that_a_target_does_not_run_is_named():
    config = yaml.safe_load((k8s.PROMETHEUS_DIR / "prometheus.yml").read_text())
    jobs = {job["job_name"] for job in config["scrape_configs"]}
    for target, dropped in k8s.NOT_SCRAPED.items():
        assert target in k8s.TARGETS and set(dropped) <= jobs, (target, set(dropped) - jobs)


@pytest.mark.parametrize("target", MONITORED)
def test_each_scrape_target_is_a_service_prometheus_may_reach_and_nothing_outside_can(rendered, target):
    """host:port of every scrape job is a Service of the render (Compose's names) leading to
    a container port; the NetworkPolicies let Prometheus's pod reach it, and nothing outside
    the namespace reaches it or Prometheus."""
    _, objects = rendered[target]
    policies = [o for o in objects if o["kind"] == "NetworkPolicy"]
    prometheus = find(objects, "StatefulSet", "prometheus")["spec"]["template"]["metadata"]["labels"]
    targets = scrape_targets(objects)
    expected = {"mlflow", "model-api", "nginx-exporter", "postgres-exporter"} | (
        {"s3", "node-exporter"} if target == "all-in-one" else set()
    )
    assert set(targets) == expected
    for job, address in targets.items():
        host, port = address.rsplit(":", 1)
        found = backends(objects, host, int(port))
        assert found, (job, address)
        for labels, container_port, name in found:
            assert admitted(policies, labels, container_port, name, prometheus), (job, address)
            assert not admitted(policies, labels, container_port, name, None), (job, address)
    (ui,) = backends(objects, "prometheus", 9090)
    assert not admitted(policies, *ui, None)
    assert admitted(policies, *ui, find(objects, "Deployment", "nginx")["spec"]["template"]["metadata"]["labels"])
    # ...and the check can fail: a policy opening Prometheus to everyone is seen.
    opened = {"kind": "NetworkPolicy", "spec": {"podSelector": {"matchLabels": prometheus}, "ingress": [{}]}}
    assert admitted([*policies, opened], *ui, None)


@pytest.mark.parametrize("target", MONITORED)
def test_nginx_proxies_prometheus_and_its_exporter_reads_its_status(rendered, target):
    """PROMETHEUS_UPSTREAM is the prometheus Service's port; the status server listens on the
    pod's addresses at NGINX_STATUS_PORT, which the exporter beside it reads."""
    settings, objects = rendered[target]
    nginx = env_sources(objects, "nginx", "nginx")
    service = find(objects, "Service", "prometheus")
    (port,) = [p["port"] for p in service["spec"]["ports"]]
    assert nginx["PROMETHEUS_UPSTREAM"] == ("value", f"prometheus.$(POD_NAMESPACE).svc.cluster.local:{port}")
    status_port = settings["NGINX_STATUS_PORT"]
    assert expanded(nginx["NGINX_STATUS_LISTEN"][1], nginx) == status_port == "8081"
    exporter = env_sources(objects, "nginx", "nginx-exporter")
    (container,) = [
        c for c in find(objects, "Deployment", "nginx")["spec"]["template"]["spec"]["containers"] if c["name"] == "nginx-exporter"
    ]
    assert [expanded(arg, exporter) for arg in container["args"]] == [
        f"--nginx.scrape-uri=http://127.0.0.1:{status_port}/nginx-status"
    ]


def test_the_exporters_run_as_composes(rendered):
    """Prometheus's and the exporters' arguments and the postgres exporter's variables are
    Compose's, resolved; the nginx exporter reads its own pod's loopback, not the host nginx."""
    settings, objects = rendered["all-in-one"]
    compose = declaration.load(settings.as_env())
    for obj, _, container in containers(objects):
        service = container["name"]
        if service not in ("prometheus", "postgres-exporter", "nginx-exporter", "node-exporter"):
            continue
        env = env_sources(objects, obj["metadata"]["name"], service) if container.get("env") else {}
        args = [expanded(arg, env) for arg in container.get("args", [])]
        declared = compose[service].get("command", [])
        if service == "nginx-exporter":
            declared = [arg.replace("//nginx:", "//127.0.0.1:") for arg in declared]
        assert args == declared, service
        for key, value in (compose[service].get("environment") or {}).items():
            assert str(expanded(str(env[key][-1]), env)) == str(value), (service, key)
    postgres_exporter = env_sources(objects, "postgres-exporter")
    assert postgres_exporter["DATA_SOURCE_PASS"] == (
        "secretKeyRef",
        "lab-secrets",
        "POSTGRES_MONITOR_PASSWORD",
        settings["POSTGRES_MONITOR_PASSWORD"],
    )
    init = env_sources(objects, "init")
    assert init["POSTGRES_MONITOR_PASSWORD"] == postgres_exporter["DATA_SOURCE_PASS"]
