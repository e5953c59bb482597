"""Configuration: secrets generated once and kept; missing or weak values refused by name."""

import os
import subprocess
import sys
from secrets import token_urlsafe
from typing import get_args

import pytest

from mlflow_lab.errors import LabError
from mlflow_lab.settings import ENV_EXAMPLE, PASSWORD_VARS, Settings, ensure_env_file, generated_vars, parse_env_file
from mlflow_lab.settings_schema import LabSettings, required_by
from mlflow_lab.trainers import SERVED

STRONG = {name: token_urlsafe(24) for name in PASSWORD_VARS}


def test_first_run_generates_strong_distinct_secrets(tmp_path):
    env = tmp_path / ".env"
    ensure_env_file(env)
    values = parse_env_file(env)
    secrets = [values[name] for name in generated_vars()]
    assert set(generated_vars()) == set(PASSWORD_VARS), "every generated secret is checked, and only those"
    assert all(len(s) >= 32 for s in secrets) and len(set(secrets)) == len(secrets)
    assert oct(env.stat().st_mode & 0o777) == "0o600"
    assert set(values) == set(parse_env_file(ENV_EXAMPLE))


def test_existing_env_is_never_overwritten_and_gains_new_variables(tmp_path):
    env = tmp_path / ".env"
    env.write_text("LAB_PASSWORD=my-own-password\nLAB_USER=alice\n")
    written = ensure_env_file(env)
    values = parse_env_file(env)
    assert values["LAB_PASSWORD"] == "my-own-password" and values["LAB_USER"] == "alice"
    assert "LAB_PASSWORD" not in written and "POSTGRES_PASSWORD" in written
    assert ensure_env_file(env) == [] and parse_env_file(env) == values


def test_missing_value_names_the_variable():
    with pytest.raises(LabError, match="POSTGRES_PASSWORD is not set"):
        Settings({**parse_env_file(ENV_EXAMPLE), **STRONG, "POSTGRES_PASSWORD": ""}).validate()


@pytest.mark.parametrize("weak", ["changeme", "short"])
def test_weak_password_refused_outside_lab(weak):
    values = {
        **parse_env_file(ENV_EXAMPLE),
        "LAB_ENV": "production",
        **STRONG,
        "POSTGRES_PASSWORD": weak,
    }
    with pytest.raises(LabError, match="POSTGRES_PASSWORD"):
        Settings(values).validate()
    Settings({**values, "LAB_ENV": "lab"}).validate()  # a lab accepts it


def test_cli_up_refuses_and_names_the_variable(tmp_path):
    env = tmp_path / ".env"
    ensure_env_file(env)
    env.write_text(env.read_text().replace("LAB_ENV=lab", "LAB_ENV=production") + "LAB_PASSWORD=admin\n")
    result = subprocess.run(
        [sys.executable, "-m", "mlflow_lab.cli", "up", "--runner", "native"],
        env={**os.environ, "LAB_ENV_FILE": str(env), "LAB_STATE_DIR": str(tmp_path / "state")},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert "LAB_PASSWORD is a default or short password" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "state" / "postgres").exists(), "nothing may start"


@pytest.mark.parametrize("weak", PASSWORD_VARS)
def test_init_refuses_a_weak_password_outside_lab_before_touching_anything(weak):
    """init is the step every service waits for: it applies the one password rule."""
    env = {
        "PATH": os.environ["PATH"],
        **STRONG,
        weak: "admin",
        "LAB_ENV": "production",
        "LAB_USER": "admin",
        "MODEL_API_USER": "model-api",
        "POSTGRES_USER": "mlflow",
        "POSTGRES_DB": "mlflow",
        "POSTGRES_AUTH_DB": "mlflow_auth",
        "POSTGRES_HOST": "127.0.0.1",
        "POSTGRES_PORT": "1",  # nothing listens: a refusal must come before any connection
    }
    result = subprocess.run(
        [sys.executable, "-m", "mlflow_lab.stack.init_stack"], capture_output=True, text=True, env=env, timeout=30
    )
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"init: {weak} is a default or short password (LAB_ENV=production): set a random value of at least 16 characters in .env."
    )


@pytest.mark.parametrize(
    "text, expected",
    [
        ("${A}", "x$B${C}"),  # a value is never interpolated again
        ("${MISSING:-http://s3:${PORT:?no port}}", "http://s3:9000"),
        ("${EMPTY:-fallback} ${EMPTY-kept}", "fallback "),
        ("$$HOME and $PORT", "$HOME and 9000"),
    ],
)
def test_compose_interpolation_as_compose_does_it(text, expected):
    from mlflow_lab.native.declaration import interpolate

    assert interpolate(text, {"A": "x$B${C}", "B": "no", "C": "no", "PORT": "9000", "EMPTY": ""}) == expected


def test_a_required_compose_value_names_itself():
    from mlflow_lab.native.declaration import interpolate

    with pytest.raises(LabError, match="^LAB_USER is not set - see .env.example.$"):
        interpolate("${LAB_USER:?LAB_USER is not set - see .env.example}", {"LAB_USER": ""})


@pytest.mark.parametrize(
    "name, value, expected",
    [
        ("MLFLOW_PORT", "5OO1", "MLFLOW_PORT must be a port (1-65535); got '5OO1'"),
        ("LAB_AUTH_CACHE_SECONDS", "0", "LAB_AUTH_CACHE_SECONDS must be a number of seconds > 0"),
        ("MODEL_SERVER", "tfserving", "MODEL_SERVER must be one of lab, mlserver, mlflow"),
        ("LAB_MAX_BODY_SIZE", "10 GB", "LAB_MAX_BODY_SIZE must be an nginx size"),
        ("LAB_BIND_ADDRESS", "localhost", "LAB_BIND_ADDRESS must be an IP address"),
    ],
)
def test_a_value_of_the_wrong_type_is_refused_by_name(name, value, expected):
    with pytest.raises(LabError) as refused:
        Settings({**parse_env_file(ENV_EXAMPLE), **STRONG, name: value}).validate()
    assert str(refused.value).startswith(expected)


def test_an_absent_setting_takes_the_schema_default_and_an_empty_one_stays_empty():
    settings = Settings({"COMPOSE_PROFILES": ""})
    assert settings["S3_REGION"] == "us-east-1" and settings.get("MODEL_API_POLL_SECONDS") == "5"
    assert settings.get("COMPOSE_PROFILES") == ""  # empty means "none" here, not "the default"
    assert "S3_REGION" not in settings.as_env(), "defaults are not pushed into child environments"


def test_each_service_checks_only_its_own_settings():
    """The model API's environment has no database password: it must start without one."""
    model_api = {name: str(LabSettings.model_fields[name].default) or "http://mlflow:5001" for name in required_by("model-api")}
    Settings(model_api).validate("model-api", passwords=False)
    with pytest.raises(LabError, match="^MODEL_API_TRACKING_URI is not set"):
        Settings({**model_api, "MODEL_API_TRACKING_URI": ""}).validate("model-api", passwords=False)


def test_the_model_api_runs_every_model_server_the_schema_allows_and_serves_every_lab_model():
    from mlflow_lab.stack.model_api.__main__ import SERVERS

    assert set(SERVERS) == set(get_args(LabSettings.model_fields["MODEL_SERVER"].annotation))
    assert Settings({}).get("MODEL_API_MODELS").split() == list(SERVED)
