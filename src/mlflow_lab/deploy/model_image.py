"""`lab model-image URI`: an image with one registered model version baked in (services/model-image).

MLflow's `mlflow models build-docker`, the lab's way: FROM the lab's model-API image (the
model API's runtime, the same pins), the version's files copied in, no tracking server
needed at run time. The model-API image is brought up to date by Compose first (cached).
"""

from __future__ import annotations

import json
import re
import subprocess
import tempfile
from pathlib import Path

from mlflow_lab.compose import ComposeStack, ensure_base_images, fill_wheelhouse, find_compose
from mlflow_lab.deploy import registry_model
from mlflow_lab.errors import LabError
from mlflow_lab.native import declaration
from mlflow_lab.settings import REPO_ROOT, Settings

DOCKERFILE = REPO_ROOT / "services" / "model-image" / "Dockerfile"
BASE_SERVICE = "model-api"  # the Compose service whose image the model images build FROM


def lab_image(settings: Settings) -> str:
    """The lab's model-API image, as compose.yaml names it."""
    return declaration.load(settings.as_env())[BASE_SERVICE]["image"]


def default_tag(name: str, version: str) -> str:
    """mlflow-lab/model-<name>:<version>, with the name made a valid image name."""
    return f"mlflow-lab/model-{re.sub(r'[^a-z0-9._-]+', '-', name.lower()).strip('-._')}:{version}"


def ensure_lab_image(settings: Settings) -> str:
    ensure_base_images(settings, only=("PYTHON_IMAGE",))
    fill_wheelhouse(settings)
    result = ComposeStack(settings).run("build", "--quiet", BASE_SERVICE, capture=True, check=False)
    if result.returncode != 0:
        reason = (result.stderr.strip().splitlines() or ["no reason given"])[-1]
        raise LabError(f"building the lab's image {lab_image(settings)} failed: {reason}")
    return lab_image(settings)


def build(settings: Settings, uri: str, tag: str | None = None) -> str:
    """Build the image for the version `uri` points at now; its tag."""
    with tempfile.TemporaryDirectory(prefix="model-image-") as folder:
        context = Path(folder) / "context"
        context.mkdir()
        ref = registry_model.download(settings, uri, context / "model")
        tag = tag or default_tag(ref.name, ref.version)
        base = ensure_lab_image(settings)
        args = {"LAB_IMAGE": base, "MODEL_NAME": ref.name, "MODEL_VERSION": ref.version, "MODEL_SOURCE": ref.uri}
        result = _compose_build(Path(folder), context, tag, args)
    if result.returncode != 0:
        reason = (result.stderr.strip().splitlines() or ["no reason given"])[-1]
        raise LabError(f"building {tag} failed: {reason}")
    return tag


def _compose_build(folder: Path, context: Path, tag: str, args: dict[str, str]) -> subprocess.CompletedProcess:
    """`docker build`, by Compose's builder (BuildKit), as the lab's own images are: where the
    Docker CLI has no buildx, `docker build` falls back to the legacy builder, which commits a
    container for every instruction (~8 s each on fuse-overlayfs, most of a model image's build)."""
    build = {"context": str(context), "dockerfile": str(DOCKERFILE), "args": args}
    spec = {"services": {"model": {"image": tag, "build": build}}}
    compose_file = folder / "compose.yaml"  # beside the build context, not in it
    compose_file.write_text(json.dumps(spec))
    command = [*find_compose(), "--project-name", "mlflow-lab-model-image", "-f", str(compose_file), "build", "--quiet", "model"]
    return subprocess.run(command, capture_output=True, text=True, cwd=folder)
