"""The lab's configuration: `.env` (from `.env.example`) overlaid by the environment.

Both runners read the same variable names. Compose reads `.env` itself; the native
runner, the services and the tools read it here, with the types, defaults and rules of
`mlflow_lab.settings_schema` (the one declaration of every setting).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

from pydantic import TypeAdapter, ValidationError

from mlflow_lab.errors import LabError
from mlflow_lab.settings_schema import (
    GENERATED_VARS,
    MIN_PASSWORD_LENGTH,
    PASSWORD_VARS,
    WEAK_PASSWORDS,
    LabSettings,
    kind,
    required_by,
)

# The lab's checkout (compose.yaml, .env.example, services/, nginx/): this package's own
# source tree, or LAB_HOME for the package installed from its wheel (the testing kit).
REPO_ROOT = Path(os.environ.get("LAB_HOME") or Path(__file__).resolve().parents[2])
ENV_EXAMPLE = REPO_ROOT / ".env.example"
ENV_FILE = Path(os.environ.get("LAB_ENV_FILE", REPO_ROOT / ".env"))

GENERATED_MARK = "# generated"
__all__ = ["PASSWORD_VARS", "Settings", "ensure_env_file", "generated_vars", "parse_env_file"]
# One validator per setting, from its declared type (built once, on first use).
_CHECKERS: dict[str, TypeAdapter] = {}


def parse_env_file(path: Path) -> dict[str, str]:
    """Parse KEY=VALUE lines the way Compose does for unquoted and quoted values."""
    values: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        elif " #" in value:
            value = value.split(" #", 1)[0].rstrip()
        values[key.strip()] = value
    return values


def write_env_file(path: Path, values: Mapping[str, str]) -> None:
    """A .env that parse_env_file and Compose read back as `values` (mode 600: it holds secrets)."""
    path.write_text("".join(f'{key}="{value}"\n' for key, value in values.items()))
    path.chmod(0o600)


def generated_vars() -> list[str]:
    """Settings made random on first run (marked `# generated` in .env.example)."""
    return list(GENERATED_VARS)


@contextmanager
def environ_set(values: Mapping[str, str]) -> Iterator[None]:
    """`values` in os.environ for the block, then as they were: MLflow's clients take the
    tracking credentials only from the environment."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def new_secret() -> str:
    # URL-safe characters only: the value is embedded in URIs and config files.
    return secrets.token_urlsafe(24)


def ensure_env_file(env_file: Path = ENV_FILE, example: Path = ENV_EXAMPLE) -> list[str]:
    """Create .env from the example with fresh secrets, or append variables it lacks.

    Existing values are never changed. Returns what was written, for the user.
    """
    to_generate = set(GENERATED_VARS)
    existing = parse_env_file(env_file) if env_file.exists() else None
    written: list[str] = []
    out_lines: list[str] = []
    for line in example.read_text().splitlines():
        key = line.split("=", 1)[0].strip() if "=" in line and not line.lstrip().startswith("#") else None
        if key is None:
            out_lines.append(line)
            continue
        if existing is not None and key in existing:
            continue
        value = line.split("=", 1)[1]
        if key in to_generate and not value.strip():
            value = new_secret()
        out_lines.append(f"{key}={value}")
        written.append(key)
    if existing is None:
        env_file.write_text("\n".join(out_lines) + "\n")
        env_file.chmod(0o600)
    elif written:
        added = [line for line in out_lines if "=" in line and line.split("=", 1)[0] in written]
        with env_file.open("a") as fh:
            fh.write("\n# added from .env.example\n" + "\n".join(added) + "\n")
    return written


class Settings(Mapping[str, str]):
    """Read-only view of the configuration; a missing value is a LabError naming it."""

    def __init__(self, values: Mapping[str, str]):
        self._values = dict(values)

    @classmethod
    def load(cls, env_file: Path | None = ENV_FILE, environ: Mapping[str, str] | None = None) -> Settings:
        values = parse_env_file(env_file) if env_file and env_file.exists() else {}
        # The process environment wins, as with Compose.
        values.update(os.environ if environ is None else environ)
        return cls(values)

    def __getitem__(self, key: str) -> str:
        value = self._values[key] if key in self._values else default_of(key)
        if value == "":
            raise LabError(f"{key} is not set: add it to .env (see .env.example) or the environment.")
        return value

    def get(self, key: str, default: str = "") -> str:  # type: ignore[override]
        """The value, else (when absent) the schema's default, else `default`."""
        value = self._values[key] if key in self._values else default_of(key)
        return value or default

    def __iter__(self):
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def as_env(self) -> dict[str, str]:
        """Every value, empty ones included, for a child process's environment."""
        return dict(self._values)

    def int(self, key: str) -> int:
        try:
            return int(self[key])
        except ValueError:
            raise LabError(f"{key} must be a whole number, got {self._values[key]!r}.") from None

    @property
    def is_lab(self) -> bool:
        return self["LAB_ENV"] == "lab"

    def validate(self, service: str = "lab", *, passwords: bool = True) -> None:
        """Refuse to start on a setting `service` needs that is empty, on a value of the wrong
        type, or (`passwords`, outside lab mode) on a weak password."""
        for key in required_by(service):
            self[key]
        for key in LabSettings.model_fields.keys() & self._values.keys():
            check(key, self._values[key])
        if not passwords or self.is_lab:
            return
        for key in PASSWORD_VARS:
            value = self.get(key)
            if value.lower() in WEAK_PASSWORDS or len(value) < MIN_PASSWORD_LENGTH:
                raise LabError(
                    f"{key} is a default or short password (LAB_ENV={self.get('LAB_ENV')}): "
                    f"set a random value of at least {MIN_PASSWORD_LENGTH} characters in .env."
                )

    # --- derived values, shared by both runners ---------------------------------
    @property
    def postgres_address(self) -> tuple[str, str]:
        """host, port of PostgreSQL as the services reach it (Compose: the `postgres` service)."""
        return self["POSTGRES_HOST"], self["POSTGRES_PORT"]

    def backend_store_uri(self, database: str = "POSTGRES_DB") -> str:
        """The URI of a database (the setting naming it) without the password, which goes by
        backend_store_env(): a command line is visible to every user of the machine (`ps`), an
        environment is not."""
        # SQLAlchemy 2.1 maps plain postgresql:// to psycopg 3; we ship psycopg2.
        host, port = self.postgres_address
        return f"postgresql+psycopg2://{quote(self['POSTGRES_USER'], safe='')}@{host}:{port}/{self[database]}"

    def auth_store_uri(self) -> str:
        """MLflow's auth app's accounts, roles and grants: a database of their own."""
        return self.backend_store_uri("POSTGRES_AUTH_DB")

    def backend_store_env(self) -> dict[str, str]:
        return {"PGPASSWORD": self["POSTGRES_PASSWORD"]}  # read by libpq, under psycopg2

    def server_names(self) -> list[str]:
        return self["LAB_SERVER_NAMES"].split()

    def tracking_uri(self, host: str = "localhost") -> str:
        return f"http://{host}:{self['LAB_HTTP_PORT']}"

    def client_env(self) -> dict[str, str]:
        """What an MLflow client on this machine needs to reach the lab (`eval "$(make -s env)"`):
        the caller's own account when the environment names one, else the admin of .env (who
        owns the lab, and so its .env)."""
        user, password = self.get("MLFLOW_TRACKING_USERNAME"), self.get("MLFLOW_TRACKING_PASSWORD")
        if not (user and password):
            user, password = self["LAB_USER"], self["LAB_PASSWORD"]
        return {
            "MLFLOW_TRACKING_URI": self.tracking_uri(),
            "MLFLOW_TRACKING_USERNAME": user,
            "MLFLOW_TRACKING_PASSWORD": password,
        }


def default_of(key: str) -> str:
    """The schema's default of a setting as .env would hold it; "" for any other name."""
    field = LabSettings.model_fields.get(key)
    return "" if field is None else str(field.default)


def check(key: str, value: str) -> None:
    """A LabError naming the setting when `value` is not of its declared type (empty values of
    optional settings are fine; required ones are checked by name before)."""
    if value == "":
        return
    field = LabSettings.model_fields[key]
    if key not in _CHECKERS:
        _CHECKERS[key] = TypeAdapter(field.rebuild_annotation())
    try:
        _CHECKERS[key].validate_strings(value)
    except ValidationError:
        raise LabError(f"{key} must be {kind(field)}; got {value!r}: fix it in .env (docs/configuration.md).") from None
