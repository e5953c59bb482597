"""`lab k8s render TARGET`: the lab's Kubernetes manifests (deploy/k8s), rendered by kustomize
with the settings of the lab's .env.

The settings reach kustomize's generators as env files written into a private copy of
deploy/k8s, which is deleted after rendering: secrets never land in the checkout. So do the
third-party images' names and tags (the schema's image settings, as ImageTagTransformers of
components/images) and Prometheus's configuration and rules (services/prometheus, for
components/monitoring): each is stated once, where Compose reads it too. A rendered object
that needs a setting .env leaves empty stops the render, naming the setting.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import yaml

from mlflow_lab.errors import LabError
from mlflow_lab.settings import REPO_ROOT, Settings
from mlflow_lab.settings_schema import LabSettings, cluster_place, extra

K8S_DIR = REPO_ROOT / "deploy" / "k8s"
TARGETS = {"all-in-one": "overlays/all-in-one", "external": "overlays/external", "kserve": "kserve"}
# Each setting's place in a cluster (the Secret, the external stores' ConfigMap, the settings'
# ConfigMap, or none) is the settings schema's; only the schema's settings are rendered, so
# nothing else of the caller's environment reaches a manifest.
PLACES = {name: cluster_place(name) for name in LabSettings.model_fields}
SECRET_KEYS = tuple(name for name, place in PLACES.items() if place == "secret")
STORE_KEYS = tuple(name for name, place in PLACES.items() if place == "store")
CONFIG_KEYS = tuple(name for name, place in PLACES.items() if place == "config")
# Secrets the operator creates with kubectl, not from .env: accounts of the lab's own programs,
# whose passwords only `lab users add` knows (deploy/k8s/components/batch-scoring/cronjob.yaml).
OPERATOR_SECRETS = ("batch-scoring-account",)
# Compose's Prometheus configuration and rules, which components/monitoring's ConfigMap holds.
PROMETHEUS_DIR = REPO_ROOT / "services" / "prometheus"
PROMETHEUS_FILES = ("prometheus.yml", "alerts.yml")
# Scrape jobs of prometheus.yml a target runs nothing for: external's PostgreSQL and S3 are
# managed, so neither SeaweedFS's metrics nor the database volume's free space are the lab's
# to read there (their provider's monitoring is). Without this they would be `up == 0` and
# ServiceDown would fire for good.
NOT_SCRAPED = {"external": ("s3", "node-exporter")}
# The third-party images the manifests name untagged, tagged by components/images from the
# schema's image settings (.env's, so a mirror registry set there applies to the cluster too).
IMAGE_SETTINGS = tuple(name for name, field in LabSettings.model_fields.items() if extra(field)["group"] == "images")


def _env_file(values: dict[str, str]) -> str:
    for key, value in values.items():
        if "\n" in value:
            raise LabError(f"{key} holds a line break, which a Kubernetes env file cannot carry.")
    return "".join(f"{key}={value}\n" for key, value in values.items() if value)


def settings_files(settings: Settings) -> dict[str, str]:
    """The generators' env files (path under deploy/k8s -> text) from the lab's settings."""

    def values(keys: tuple[str, ...]) -> dict[str, str]:
        return {key: settings.get(key) for key in keys}

    return {
        "components/settings/lab-config.env": _env_file(values(CONFIG_KEYS)),
        "components/settings/lab-secrets.env": _env_file(values(SECRET_KEYS)),
        # Only what .env says: the defaults name the lab's own servers, not the external ones.
        "components/external-stores/lab-stores.env": _env_file({key: settings.as_env().get(key, "") for key in STORE_KEYS}),
        "kserve/kserve-s3.env": _env_file(
            {
                "AWS_ACCESS_KEY_ID": settings.get("S3_ACCESS_KEY_ID"),
                "AWS_SECRET_ACCESS_KEY": settings.get("S3_SECRET_ACCESS_KEY"),
            }
        ),
    }


def image_name(image: str) -> str:
    """The repository of `name:tag` (a registry's port may precede the tag's colon)."""
    return image.rsplit(":", 1)[0]


def images_file(settings: Settings) -> str:
    """components/images' transformers: each image setting's default name (as the manifests
    write it, untagged) becomes the setting's value in .env, name and tag."""
    transformers = []
    for key in IMAGE_SETTINGS:
        value = settings[key]
        if ":" not in value.rsplit("/", 1)[-1]:
            raise LabError(f"{key} must name an image with its tag (name:tag), not {value!r}.")
        name, tag = value.rsplit(":", 1)
        tagged = {"name": image_name(str(LabSettings.model_fields[key].default)), "newTag": tag}
        if name != tagged["name"]:
            tagged["newName"] = name
        transformers.append(
            {
                "apiVersion": "builtin",
                "kind": "ImageTagTransformer",
                "metadata": {"name": key.lower().replace("_", "-")},
                "imageTag": tagged,
            }
        )
    return yaml.safe_dump_all(transformers, sort_keys=False)


def prometheus_files(target: str) -> dict[str, str]:
    """components/monitoring's files: services/prometheus's, as they are, but for the scrape
    jobs the target does not run (NOT_SCRAPED), which are left out of its prometheus.yml."""
    files = {name: (PROMETHEUS_DIR / name).read_text() for name in PROMETHEUS_FILES}
    dropped = NOT_SCRAPED.get(target, ())
    if dropped:
        config = yaml.safe_load(files["prometheus.yml"])
        config["scrape_configs"] = [job for job in config["scrape_configs"] if job["job_name"] not in dropped]
        files["prometheus.yml"] = (
            f"# services/prometheus/prometheus.yml without the jobs {', '.join(dropped)}, which {target} does not run.\n"
            + yaml.safe_dump(config, sort_keys=False)
        )
    return {f"components/monitoring/{name}": text for name, text in files.items()}


def generated_files(settings: Settings, target: str) -> dict[str, str]:
    """Every file the render writes into its private copy (path under deploy/k8s -> text)."""
    return {**settings_files(settings), "components/images/third-party.yaml": images_file(settings), **prometheus_files(target)}


def kustomize_command() -> list[str]:
    """kustomize v5 on its own, or the one inside kubectl (1.27 and later)."""
    if shutil.which("kustomize"):
        return ["kustomize", "build"]
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize"]
    raise LabError("rendering needs kustomize (v5) or kubectl (1.27 or later) on the PATH; neither was found.")


def render(settings: Settings, target: str, source: Path = K8S_DIR) -> list[dict]:
    """The objects of `target` (an overlay, or kserve), checked for the settings they need."""
    if target not in TARGETS:
        raise LabError(f"no Kubernetes target {target!r}; the targets are {', '.join(TARGETS)}.")
    with tempfile.TemporaryDirectory(prefix="lab-k8s-") as private:
        copy = Path(private) / "k8s"
        shutil.copytree(source, copy)
        for relative, text in generated_files(settings, target).items():
            path = copy / relative
            path.write_text(text)
            os.chmod(path, 0o600)
        result = subprocess.run([*kustomize_command(), str(copy / TARGETS[target])], capture_output=True, text=True)
    if result.returncode != 0:
        reason = result.stderr.strip().replace(private, "deploy").splitlines()[-1:] or ["no reason given"]
        raise LabError(f"kustomize could not render {target}: {reason[0]}")
    objects = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    check_settings(objects, target)
    return objects


def _key_refs(node) -> Iterator[tuple[str, dict]]:
    """Every configMapKeyRef / secretKeyRef under `node`: (kind, ref)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("configMapKeyRef", "secretKeyRef") and isinstance(value, dict):
                yield key, value
            else:
                yield from _key_refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _key_refs(item)


def check_settings(objects: list[dict], target: str) -> None:
    """Each required key a container reads is in the rendered ConfigMap or Secret, not empty."""
    data: dict[tuple[str, str], dict[str, str]] = {}
    for obj in objects:
        if obj["kind"] == "ConfigMap":
            data["configMapKeyRef", obj["metadata"]["name"]] = obj.get("data") or {}
        elif obj["kind"] == "Secret":
            decoded = {k: base64.b64decode(v).decode() for k, v in (obj.get("data") or {}).items()}
            data["secretKeyRef", obj["metadata"]["name"]] = {**decoded, **(obj.get("stringData") or {})}
    for obj in objects:
        for kind, ref in _key_refs(obj):
            if ref.get("optional") or (kind == "secretKeyRef" and ref["name"] in OPERATOR_SECRETS):
                continue
            if not data.get((kind, ref["name"]), {}).get(ref["key"]):
                raise LabError(f"{target} needs {ref['key']} ({obj['kind']} {obj['metadata']['name']}): set it in .env.")


def to_yaml(objects: list[dict]) -> str:
    return yaml.safe_dump_all(objects, sort_keys=False)
