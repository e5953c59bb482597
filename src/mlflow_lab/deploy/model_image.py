"""`lab model-image URI`: an image with one registered model version baked in (services/model-image).

MLflow's `mlflow models build-docker`, the lab's way: FROM the lab's own Python image (the
model API's runtime, the same pins), the version's files copied in, no tracking server
needed at run time. The lab's image is brought up to date by Compose first (cached).
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from pathlib import Path

from mlflow_lab.compose import ComposeStack, ensure_base_images, fill_wheelhouse
from mlflow_lab.deploy import registry_model
from mlflow_lab.errors import LabError
from mlflow_lab.native import declaration
from mlflow_lab.settings import REPO_ROOT, Settings

DOCKERFILE = REPO_ROOT / "services" / "model-image" / "Dockerfile"


def lab_image(settings: Settings) -> str:
    """The lab's Python image, as compose.yaml names it."""
    return declaration.load(settings.as_env())["mlflow"]["image"]


def default_tag(name: str, version: str) -> str:
    """mlflow-lab/model-<name>:<version>, with the name made a valid image name."""
    return f"mlflow-lab/model-{re.sub(r'[^a-z0-9._-]+', '-', name.lower()).strip('-._')}:{version}"


def ensure_lab_image(settings: Settings) -> str:
    ensure_base_images(settings, only=("PYTHON_IMAGE",))
    fill_wheelhouse(settings)
    result = ComposeStack(settings).run("build", "--quiet", "init", capture=True, check=False)
    if result.returncode != 0:
        reason = (result.stderr.strip().splitlines() or ["no reason given"])[-1]
        raise LabError(f"building the lab's image {lab_image(settings)} failed: {reason}")
    return lab_image(settings)


def build(settings: Settings, uri: str, tag: str | None = None) -> str:
    """Build the image for the version `uri` points at now; its tag."""
    with tempfile.TemporaryDirectory(prefix="model-image-") as context:
        ref = registry_model.download(settings, uri, Path(context) / "model")
        tag = tag or default_tag(ref.name, ref.version)
        base = ensure_lab_image(settings)
        command = ["docker", "build", "--quiet", "-f", str(DOCKERFILE), "-t", tag]
        for key, value in {
            "LAB_IMAGE": base,
            "MODEL_NAME": ref.name,
            "MODEL_VERSION": ref.version,
            "MODEL_SOURCE": ref.uri,
        }.items():
            command += ["--build-arg", f"{key}={value}"]
        result = subprocess.run([*command, context], capture_output=True, text=True)
    if result.returncode != 0:
        reason = (result.stderr.strip().splitlines() or ["no reason given"])[-1]
        raise LabError(f"building {tag} failed: {reason}")
    return tag
