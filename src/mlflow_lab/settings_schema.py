"""Every setting of the lab, declared once: type, default, meaning, secrecy and validation.

`.env.example` and `docs/configuration.md` are rendered from this module
(`python -m mlflow_lab.settings_render --write`; a static test fails when either differs),
`mlflow_lab.settings` applies its defaults and rules, and the copies that cannot import
Python (compose.yaml, nginx's entrypoint, the Kubernetes ConfigMap) are checked against it
by tests/static/test_settings_schema.py.

Fields are pydantic fields (pydantic is the library pydantic-settings is built on): the
values still come from `.env` and the environment exactly as Compose reads them
(`mlflow_lab.settings`), because Compose reads the same `.env` itself and both must agree.
The `services` of a setting are the ones that refuse to start without it; `wiring` settings
are set by compose.yaml and the native runner per service, never by the user.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, Field
from pydantic.fields import FieldInfo

from mlflow_lab.trainers import SERVED

# Values a deployment outside lab mode must never run with (LAB_ENV != lab).
WEAK_PASSWORDS = frozenset({"", "admin", "password", "changeme", "mlflow", "minioadmin", "secret"})
MIN_PASSWORD_LENGTH = 16


@dataclass(frozen=True)
class Kind:
    """How a type reads in the docs."""

    text: str


def _nginx_size(value: str) -> str:
    if not re.fullmatch(r"\d+[kKmMgG]?", value):
        raise ValueError("a size such as 512k, 5m, 10g or 0")
    return value


def _address(value: str) -> str:
    ipaddress.ip_address(value)
    return value


def _http_url(value: str) -> str:
    if value and not re.fullmatch(r"https?://[^\s/]+(/\S*)?", value):
        raise ValueError("an http:// or https:// URL")
    return value


# A duration as `mlflow gc --older-than` reads it: #d#h#m#s, units in that order, at least one.
DURATION_TEXT = "a duration such as 30d, 12h, 1d2h30m or 0s"
UNIT_SECONDS = {"d": 86400, "h": 3600, "m": 60, "s": 1}
_DURATION = re.compile("".join(rf"(?:(?P<{unit}>\d+(?:\.\d+)?){unit})?" for unit in UNIT_SECONDS))


def duration_seconds(text: str) -> float:
    """The seconds of a duration such as 1d2h30m; ValueError for anything else."""
    found = _DURATION.fullmatch(text)
    if not text or found is None:
        raise ValueError(DURATION_TEXT)
    return sum(float(value) * UNIT_SECONDS[unit] for unit, value in found.groupdict().items() if value)


def _duration(value: str) -> str:
    duration_seconds(value)
    return value


# A retention as MLflow's trace archival reads it (mlflow.utils.validation, 3.17.2): a whole
# number >= 1 and one unit, m, h or d.
RETENTION_TEXT = "a retention such as 30d, 12h or 90m (a whole number >= 1 and one unit: m, h or d)"


def _retention(value: str) -> str:
    if not re.fullmatch(r"[1-9][0-9]*[mhd]", value):
        raise ValueError(RETENTION_TEXT)
    return value


# How often a trace archival pass may run: MLflow's config takes 1 s to 1 day (interval_seconds).
ARCHIVAL_INTERVAL_TEXT = "a duration from 1s to 1d, such as 1h or 30m"


def _archival_interval(value: str) -> str:
    seconds = duration_seconds(value)
    if not 1 <= seconds <= UNIT_SECONDS["d"] or seconds != int(seconds):
        raise ValueError(ARCHIVAL_INTERVAL_TEXT)
    return value


def _words(value: str) -> str:
    if not value.split():
        raise ValueError("at least one name")
    return value


Port = Annotated[int, Field(ge=1, le=65535), Kind("a port (1-65535)")]
Count = Annotated[int, Field(ge=1), Kind("a whole number >= 1")]
CountOrZero = Annotated[int, Field(ge=0), Kind("a whole number >= 0")]
Seconds = Annotated[float, Field(gt=0), Kind("a number of seconds > 0")]
SecondsOrZero = Annotated[float, Field(ge=0), Kind("a number of seconds >= 0")]
Size = Annotated[str, AfterValidator(_nginx_size), Kind("an nginx size (512k, 5m, 10g; 0 = unlimited)")]
Address = Annotated[str, AfterValidator(_address), Kind("an IP address")]
Url = Annotated[str, AfterValidator(_http_url), Kind("an http(s) URL, or empty")]
Words = Annotated[str, AfterValidator(_words), Kind("names, space separated")]
Duration = Annotated[str, AfterValidator(_duration), Kind(DURATION_TEXT)]
Retention = Annotated[str, AfterValidator(_retention), Kind(RETENTION_TEXT)]
ArchivalInterval = Annotated[str, AfterValidator(_archival_interval), Kind(ARCHIVAL_INTERVAL_TEXT)]
Flag = Annotated[Literal["true", "false"], Kind("true or false")]
Text = Annotated[str, Kind("text")]
Secret = Annotated[str, Kind("a secret")]
Image = Annotated[str, Field(pattern=r"^\S+:[\w][\w.-]*$"), Kind("an image with its tag (name:tag)")]


def setting(default: Any = "", help: str = "", *, services: tuple[str, ...] = (), **extra: Any) -> Any:
    """A field with the lab's metadata: `services` refuse to start without it; `secret` values
    never appear in logs or archives; `generated` ones are made random on first run; `optional`
    ones may be empty; `wiring` ones are set per service by the runners, not in .env;
    `host_only` ones are read on the host only (never by a cluster, `cluster_place`); `store`
    ones say where an external PostgreSQL or S3 server is."""
    return Field(default, description=help, json_schema_extra={"services": list(services), **extra})


GROUPS = {
    "lab": "the lab",
    "postgres": "postgres (backend store; reachable only inside the stack)",
    "s3": "s3 (artifact store; reachable only by the tracking server)",
    "mlflow": "mlflow (tracking server; reachable only through nginx)",
    "model-api": "model-api (MLServer serving models:/<name>/Production; reached through nginx)",
    "monitoring": "monitoring (profile `monitoring`: Prometheus, its exporters and the lab's alerts; Compose and "
    "Kubernetes, not the native runner)",
    "gc": "gc (garbage collection: `make gc`, the `gc` service of profile `ops`, the Kubernetes CronJob)",
    "compose": "compose",
    "images": "images: every third-party image the lab builds FROM or runs",
    "build": "image builds (Compose)",
    "wiring": "set by the runners per service (compose.yaml, the native runner): not in .env",
}
GROUP_NOTES = {
    "images": "One Linux family, Debian bookworm, for the lab's own images and the stores; the monitoring "
    "profile runs the Prometheus projects' official images as published. Behind a mirror registry, change only these lines "
    "(e.g. PYTHON_IMAGE=mirror.example.com/library/python:3.11.14-slim-bookworm).",
}


class LabSettings(BaseModel):
    """The lab's settings, in the order `.env.example` lists them, grouped by `group`."""

    # --- the lab ---------------------------------------------------------------------------
    LAB_ENV: Text = setting(
        "lab",
        "lab: local lab/workshop. Anything else (e.g. production) refuses to start with a default, short or missing password.",
        group="lab",
        services=("init", "mlflow"),
    )
    LAB_HTTP_PORT: Port = setting(
        5000,
        "The port published on the host (nginx). MLflow UI and API: http://localhost:5000",
        host_only=True,
        group="lab",
        services=("lab",),
    )
    LAB_GRPC_PORT: Port = setting(
        5002, "nginx's second published port: the model API over gRPC (HTTP/2, same credentials).", host_only=True, group="lab"
    )
    LAB_BIND_ADDRESS: Address = setting(
        "127.0.0.1",
        "Host address nginx is published on. 127.0.0.1 keeps the lab on this machine; 0.0.0.0 lets "
        "teammates reach it (use LAB_ENV=production passwords then).",
        host_only=True,
        group="lab",
    )
    LAB_SERVER_NAMES: Words = setting(
        "localhost 127.0.0.1 nginx",
        "Host names nginx answers to (space separated); requests for any other Host are refused. "
        "`nginx` is the name job containers use inside the Compose network.",
        group="lab",
        services=("lab", "nginx", "mlflow"),
    )
    LAB_USER: Text = setting(
        "admin",
        "The admin account of MLflow's auth app (every right, accounts included; `lab users` adds the "
        "others). init keeps its password in step with this file.",
        group="lab",
        services=("lab", "init", "mlflow"),
    )
    LAB_PASSWORD: Secret = setting(
        "", "The admin's password.", group="lab", secret=True, generated=True, services=("lab", "init")
    )
    MLFLOW_TRACKING_USERNAME: Text = setting(
        "",
        "Your own account for `make train|promote|score` and `make env` (from `lab users add`); empty: "
        "the admin above. MLFLOW_TRACKING_USERNAME/_PASSWORD set in your shell win over these.",
        host_only=True,
        group="lab",
        optional=True,
    )
    MLFLOW_TRACKING_PASSWORD: Secret = setting("", "Its password.", host_only=True, group="lab", secret=True, optional=True)
    LAB_AUTH_CACHE_SECONDS: Seconds = setting(
        5,
        "How long nginx, and each tracking-server worker, trusts a credential it has checked (seconds): a "
        "removed account or a changed password is refused within twice this.",
        group="lab",
        services=("lab", "nginx", "mlflow"),
    )
    MODEL_API_USER: Text = setting(
        "model-api",
        "The model API's own account (role viewer: it reads the registry, nothing else).",
        group="lab",
        services=("lab", "init"),
    )
    MODEL_API_PASSWORD: Secret = setting("", "Its password.", group="lab", secret=True, generated=True, services=("lab", "init"))
    LAB_MAX_BODY_SIZE: Size = setting(
        "10g",
        "Largest request body nginx accepts (artifact uploads). 0 = unlimited.",
        group="lab",
        services=("nginx",),
    )
    NGINX_STATUS_PORT: Port = setting(
        8081,
        "Port of nginx's own health and status page (never published; natively on loopback).",
        group="lab",
        services=("nginx",),
    )

    # --- postgres ----------------------------------------------------------------------------
    POSTGRES_USER: Text = setting(
        "mlflow",
        "PostgreSQL account of the tracking server.",
        group="postgres",
        services=("lab", "init", "mlflow", "wait-for-schema", "gc"),
    )
    POSTGRES_PASSWORD: Secret = setting(
        "",
        "Its password.",
        group="postgres",
        secret=True,
        generated=True,
        services=("lab", "init", "mlflow", "wait-for-schema", "gc"),
    )
    POSTGRES_MONITOR_USER: Text = setting(
        "lab_monitor",
        "The read-only PostgreSQL role (pg_monitor: statistics, no data) that the monitoring profile's postgres "
        "exporter logs in as; made by init.",
        group="postgres",
        services=("init",),
    )
    POSTGRES_MONITOR_PASSWORD: Secret = setting(
        "",
        "Its password.",
        group="postgres",
        secret=True,
        generated=True,
        services=("lab", "init"),
    )
    POSTGRES_DB: Text = setting(
        "mlflow",
        "Runs, experiments, the registry, traces.",
        group="postgres",
        services=("lab", "init", "mlflow", "wait-for-schema", "gc"),
    )
    POSTGRES_AUTH_DB: Text = setting(
        "mlflow_auth",
        "Accounts, roles, workspaces' grants (MLflow's auth app), on the same server; made by init.",
        group="postgres",
        services=("lab", "init", "mlflow"),
    )
    POSTGRES_PORT: Port = setting(
        5432,
        "Native runner: loopback port of the PostgreSQL process. Kubernetes `external` overlay (`lab k8s "
        "render external`): the managed server's port, with its host in POSTGRES_HOST (add the line; "
        "Compose and the native runner set the host themselves).",
        store=True,
        group="postgres",
    )

    # --- s3 ----------------------------------------------------------------------------------
    S3_BUCKET: Text = setting(
        "mlflow",
        "Bucket that holds every artifact (created by the init step if missing).",
        group="s3",
        services=("lab", "init", "mlflow", "gc"),
    )
    S3_ENDPOINT_URL: Url = setting(
        "",
        "S3 endpoint the tracking server talks to. Empty: the bundled SeaweedFS (Compose service `s3`; "
        "native runner: the `weed` binary on 127.0.0.1:S3_PORT). For another S3-compatible server set it "
        "here and drop `seaweedfs` from COMPOSE_PROFILES. Required by the Kubernetes `external` overlay.",
        store=True,
        group="s3",
        optional=True,
    )
    S3_ACCESS_KEY_ID: Text = setting(
        "mlflow-lab", "The S3 account of the tracking server.", secret=True, group="s3", services=("init", "mlflow", "gc")
    )
    S3_SECRET_ACCESS_KEY: Secret = setting(
        "", "Its secret key.", group="s3", secret=True, generated=True, services=("init", "mlflow", "gc")
    )
    S3_REGION: Text = setting("us-east-1", "Region name sent to the S3 server.", group="s3", services=("init", "mlflow", "gc"))
    S3_PORT: Port = setting(9000, "Port of the bundled S3 server inside the stack (native runner: on loopback).", group="s3")

    # --- mlflow --------------------------------------------------------------------------------
    MLFLOW_PORT: Port = setting(
        5001,
        "Port the tracking server listens on inside the stack (nginx proxies to it).",
        group="mlflow",
        services=("lab", "mlflow"),
    )
    MLFLOW_METRICS_PORT: Port = setting(
        5003,
        "Port of the tracking server's Prometheus metrics inside the stack (its request counts and latencies); "
        "never published: on MLFLOW_PORT MLflow answers /metrics to admins only. Prometheus's scrape configuration "
        "(services/prometheus/prometheus.yml) names the default: change both.",
        group="mlflow",
        services=("mlflow",),
    )
    MLFLOW_WORKERS: Count = setting(
        2, "uvicorn worker processes of the tracking server.", group="mlflow", services=("lab", "mlflow")
    )
    MLFLOW_DB_POOL_SIZE: CountOrZero = setting(
        5,
        "Database connections of the tracking server. Each worker has two connection pools (the tracking "
        "store's and the registry's), each keeping POOL_SIZE open and opening up to MAX_OVERFLOW more under "
        "load; the launching process keeps 2. So at most MLFLOW_WORKERS x 2 x (5 + 10) + 2 = 62 of "
        "PostgreSQL's max_connections (100), leaving room for init, backups and admin sessions. A request "
        "waits up to 30 s for a free connection. Measured under 64 clients logging at once: tests/faults "
        "(the peak is printed).",
        group="mlflow",
    )
    MLFLOW_DB_MAX_OVERFLOW: CountOrZero = setting(10, "See MLFLOW_DB_POOL_SIZE.", group="mlflow")
    MLFLOW_SERVER_ENABLE_JOB_EXECUTION: Flag = setting(
        "false",
        "MLflow 3.17's job runner (huey consumers, ~1.7 GB resident while idle); the lab does not use it. true turns it on.",
        group="mlflow",
        services=("mlflow",),
    )
    LAB_TRACE_RETENTION: Retention = setting(
        "30d",
        "How long a trace's spans stay in PostgreSQL: MLflow's trace archival then moves the spans of traces "
        "older than this to the bucket (s3://<S3_BUCKET>/trace-archive/), where the server still reads them "
        "(search, get_trace, the UI); the trace's row, tags and assessments stay. An experiment may keep its "
        "traces a shorter time (its mlflow.trace.archivalRetention tag, `mlflow experiments update "
        "--trace-archival-retention`) or ask for a pass now (`--trace-archive-now`). docs/trace-archival.md.",
        group="mlflow",
        services=("mlflow",),
    )
    LAB_TRACE_ARCHIVAL_INTERVAL: ArchivalInterval = setting(
        "1h",
        "How often the tracking server runs a trace archival pass (the first a minute after it starts). The lab "
        "runs MLflow's pass itself, each in a short-lived process, because MLflow runs it only in its job runner "
        "(MLFLOW_SERVER_ENABLE_JOB_EXECUTION; with that on, MLflow's own runner does it at this interval).",
        group="mlflow",
        services=("mlflow",),
    )
    MLFLOW_FLASK_SERVER_SECRET_KEY: Secret = setting(
        "",
        "Signs the auth app's forms (CSRF); the same in every worker.",
        group="mlflow",
        secret=True,
        generated=True,
        services=("init", "mlflow"),
    )
    MLFLOW_EXTRA_ALLOWED_HOSTS: Text = setting(
        "",
        "Extra Host header values the tracking server accepts, besides LAB_SERVER_NAMES and the "
        "stack-internal names (comma separated, wildcards allowed).",
        group="mlflow",
        optional=True,
    )

    # --- model-api -------------------------------------------------------------------------------
    MODEL_SERVER: Literal["lab", "mlserver", "mlflow"] = setting(
        "lab",
        "lab (MLServer behind the lab's fast path for V2 and /invocations JSON: same answers and errors, "
        "3-20x the throughput at 64 connections; see docs/benchmarks.md), mlserver (MLServer's own request "
        "handling, as the KServe tutorial runs it), or mlflow (MLflow's own scoring server: /invocations "
        "only, versions resolved at start), for comparison and as a fallback.",
        group="model-api",
        services=("model-api",),
    )
    MODEL_API_MODELS: Words = setting(
        " ".join(SERVED),
        "Registered models to serve (space separated): the lab's models and apps (`make train`, `make genai`). "
        "Each is served once the registry has a version for "
        "it: `make up` works before anything is trained.",
        group="model-api",
        services=("model-api",),
    )
    MODEL_API_MODEL_REF: Text = setting(
        "Production",
        "Which version: a stage (Production, the book's workflow) or an alias (@champion).",
        group="model-api",
        services=("model-api",),
    )
    MODEL_API_POLL_SECONDS: Seconds = setting(
        5,
        "How often the registry is checked for a newly promoted version (seconds).",
        group="model-api",
        services=("model-api",),
    )
    MODEL_API_PORT: Port = setting(
        8090,
        "REST port inside the stack (V2 + /models/<name>/invocations).",
        group="model-api",
        services=("model-api",),
    )
    MODEL_API_GRPC_PORT: Port = setting(8091, "gRPC port inside the stack.", group="model-api", services=("model-api",))
    MODEL_API_METRICS_PORT: Port = setting(
        8092,
        "Prometheus metrics port inside the stack (services/prometheus/prometheus.yml names the default: change both).",
        group="model-api",
        services=("model-api",),
    )
    MODEL_API_WORKERS: CountOrZero = setting(
        0,
        "Where inference runs: 0 = in MLServer's server process, N = in N worker processes (each holds a "
        "copy of every model). Without the hand-off between processes one-row answers are about twice as "
        "fast on 2 cores (docs/model-api.md). Promotions swap versions without a failed request either way. "
        "MODEL_SERVER=lab's fast path needs 0 (with workers, every request takes MLServer's own path).",
        group="model-api",
        services=("model-api",),
    )
    MODEL_API_MAX_BATCH_SIZE: Count = setting(
        64,
        "Batching: requests with fewer rows than this are merged, up to this many per batch. "
        "MODEL_SERVER=lab merges what arrives together and waits up to MODEL_API_MAX_BATCH_TIME only while "
        "waiting gathers more (a lone client never waits); MODEL_SERVER=mlserver batches V2 only and always "
        "waits. Size 1 turns batching off.",
        group="model-api",
        services=("model-api",),
    )
    MODEL_API_MAX_BATCH_TIME: SecondsOrZero = setting(
        0.002, "Longest wait for a batch to fill (seconds).", group="model-api", services=("model-api",)
    )
    MODEL_API_MAX_BODY_SIZE: Size = setting(
        "5m",
        "Largest request body nginx passes to the API; larger ones get 413 before the model sees them.",
        group="model-api",
        services=("nginx",),
    )

    # --- gc ------------------------------------------------------------------------------------------
    LAB_GC_OLDER_THAN: Duration = setting(
        "30d",
        "What garbage collection removes for good: runs, experiments and logged models deleted at least this "
        "long ago, with their artifacts in the bucket (`make gc OLDER_THAN=...` for one run; 0s: everything "
        "deleted). Files a registered model version downloads from are kept.",
        group="gc",
        services=("gc",),
    )
    LAB_GC_INTERVAL: Duration = setting(
        "1d",
        "How often the `gc` service collects (profile `ops` in COMPOSE_PROFILES, either runner); the first "
        "time when it starts. On Kubernetes the gc CronJob's schedule says (daily).",
        group="gc",
        services=("gc",),
    )

    # --- monitoring ---------------------------------------------------------------------------------
    PROMETHEUS_RETENTION: Duration = setting(
        "15d",
        "How long Prometheus keeps its samples (its --storage.tsdb.retention.time).",
        group="monitoring",
    )

    # --- compose ----------------------------------------------------------------------------------
    COMPOSE_PROJECT_NAME: Text = setting("mlflow-lab", "Compose's project name (containers, volumes, network).", group="compose")
    COMPOSE_PROFILES: Text = setting(
        "seaweedfs",
        "Optional parts: `seaweedfs` (the bundled S3 server), `minio` (MinIO built from source instead; set "
        "S3_ENDPOINT_URL=http://minio:9000 with it), `jobs` (train/promote/score), `ops` (garbage collection "
        "on a schedule, LAB_GC_INTERVAL), `monitoring` (Prometheus with the lab's alerts, docs/alerts.md; not "
        "run by the native runner). The native runner runs the S3 server named here too; neither: "
        "S3_ENDPOINT_URL's.",
        group="compose",
        optional=True,
    )

    # --- images -------------------------------------------------------------------------------------
    PYTHON_IMAGE: Image = setting("python:3.11.14-slim-bookworm", "Base of the lab's Python images.", group="images")
    POSTGRES_IMAGE: Image = setting("postgres:15.18-bookworm", "PostgreSQL.", group="images")
    NGINX_IMAGE: Image = setting("nginx:1.28.0-bookworm", "nginx.", group="images")
    SEAWEEDFS_IMAGE: Image = setting("chrislusf/seaweedfs:4.48", "The bundled S3 server.", group="images")
    PROMETHEUS_IMAGE: Image = setting("prom/prometheus:v3.7.3", "Profile `monitoring`: Prometheus.", group="images")
    POSTGRES_EXPORTER_IMAGE: Image = setting(
        "quay.io/prometheuscommunity/postgres-exporter:v0.18.1", "Its PostgreSQL exporter.", group="images"
    )
    NGINX_EXPORTER_IMAGE: Image = setting("nginx/nginx-prometheus-exporter:1.5.1", "Its nginx exporter.", group="images")
    NODE_EXPORTER_IMAGE: Image = setting(
        "prom/node-exporter:v1.10.2", "Its node exporter (free space of the PostgreSQL volume).", group="images"
    )
    MINIO_BUILD_IMAGE: Image = setting(
        "golang:1.24.9-bookworm", "Only for the opt-in `minio` profile: MinIO's build stage.", group="images"
    )
    MINIO_RUNTIME_IMAGE: Image = setting("debian:12.12-slim", "MinIO's runtime base.", group="images")

    # --- image builds ----------------------------------------------------------------------------------
    LAB_BUILD_OFFLINE: Flag = setting(
        "false",
        "true: build the Python image without a package index inside the build. `make up` builds wheels on "
        "the host from requirements.lock into services/mlflow/wheelhouse/, and the build installs only from "
        "them (for builders whose containers cannot reach an index). false: pip installs from the index "
        "during the build.",
        group="build",
    )
    LAB_BUILD_CA_BUNDLE: Text = setting(
        "",
        "A CA bundle for pip during the build, for networks with a TLS-inspecting proxy (e.g. "
        "/etc/ssl/certs/ca-certificates.crt). Passed as a BuildKit secret, never stored in a layer.",
        group="build",
        optional=True,
    )

    # --- wiring: set per service by compose.yaml and the native runner --------------------------------
    POSTGRES_HOST: Text = setting(
        "postgres",
        "Host name of PostgreSQL as the services reach it.",
        store=True,
        group="wiring",
        wiring=True,
        services=("init", "mlflow", "wait-for-schema", "gc"),
    )
    MLFLOW_BIND_HOST: Text = setting("0.0.0.0", "Address the tracking server listens on.", group="wiring", wiring=True)
    MODEL_API_BIND_HOST: Text = setting("0.0.0.0", "Address the model API listens on.", group="wiring", wiring=True)
    MODEL_API_TRACKING_URI: Url = setting(
        "",
        "The tracking server as the model API reaches it (past nginx).",
        group="wiring",
        wiring=True,
        services=("model-api",),
    )
    MODEL_API_REPOSITORY: Text = setting(
        "",
        "Where the model API writes its model-settings.json files (empty: ~/model-repository).",
        group="wiring",
        wiring=True,
        optional=True,
    )
    MLFLOW_UPSTREAM: Text = setting(
        "", "host:port of the tracking server, for nginx.", group="wiring", wiring=True, services=("nginx",)
    )
    MODEL_API_UPSTREAM: Text = setting(
        "", "host:port of the model API's REST server, for nginx.", group="wiring", wiring=True, services=("nginx",)
    )
    MODEL_API_GRPC_UPSTREAM: Text = setting(
        "", "host:port of the model API's gRPC server, for nginx.", group="wiring", wiring=True, services=("nginx",)
    )
    NGINX_LISTEN: Text = setting(
        "", "address:port or port of nginx's HTTP listener.", group="wiring", wiring=True, services=("nginx",)
    )
    NGINX_GRPC_LISTEN: Text = setting(
        "", "address:port or port of nginx's gRPC listener.", group="wiring", wiring=True, services=("nginx",)
    )
    NGINX_STATUS_LISTEN: Text = setting(
        "",
        "address:port or port of nginx's status server (health, stub_status): loopback natively, the stack "
        "network under Compose (for the nginx exporter; never published).",
        group="wiring",
        wiring=True,
        services=("nginx",),
    )
    PROMETHEUS_UPSTREAM: Text = setting(
        "", "host:port of Prometheus, for nginx (/prometheus/, admins only).", group="wiring", wiring=True, services=("nginx",)
    )
    NGINX_RESOLVER: Text = setting(
        "127.0.0.1",
        "DNS server nginx resolves upstream names with (Compose's: 127.0.0.11; unused when the upstreams are IP addresses).",
        group="wiring",
        wiring=True,
    )
    NGINX_RUNTIME_DIR: Text = setting(
        "/tmp/nginx", "nginx's rendered configuration, temporary files and credential cache.", group="wiring", wiring=True
    )
    NGINX_ACCESS_LOG: Text = setting(
        "/dev/stdout", "nginx's access log (the native runner: a file).", group="wiring", wiring=True
    )
    NGINX_TEMPLATES: Text = setting(
        "", "Where nginx's templates are (empty: beside its entrypoint).", group="wiring", wiring=True, optional=True
    )
    NGINX_USERS_FILE: Text = setting(
        "/var/lib/mlflow-lab/users.htpasswd",
        "Where an older lab kept nginx's own accounts (retired on first start, docs/teams.md).",
        group="wiring",
        wiring=True,
    )


def extra(field: FieldInfo) -> dict[str, Any]:
    return field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}


def fields(**where: Any) -> dict[str, FieldInfo]:
    """The settings whose metadata matches `where` (e.g. secret=True), in declaration order."""
    return {
        name: field
        for name, field in LabSettings.model_fields.items()
        if all(bool(extra(field).get(key)) == bool(value) for key, value in where.items())
    }


def required_by(service: str) -> tuple[str, ...]:
    """The settings `service` refuses to start without."""
    return tuple(name for name, field in LabSettings.model_fields.items() if service in extra(field)["services"])


def kind(field: FieldInfo) -> str:
    """How the setting's type reads in the docs."""
    for meta in field.metadata:
        if isinstance(meta, Kind):
            return meta.text
    args = getattr(field.annotation, "__args__", ())
    return f"one of {', '.join(map(str, args))}" if args else "text"


# Groups of settings that only the host reads: Compose itself, image names and builds.
HOST_GROUPS = frozenset({"compose", "images", "build"})


def cluster_place(name: str) -> str | None:
    """Where a setting goes on Kubernetes: the `secret`, the `store` ConfigMap (the external
    stores' addresses), the `config` ConfigMap, or nowhere (None: the host's, or set by the
    manifests themselves)."""
    meta = extra(LabSettings.model_fields[name])
    if meta.get("store"):
        return "store"
    if meta.get("secret"):
        return None if meta.get("host_only") else "secret"
    if meta.get("wiring") or meta.get("host_only") or meta["group"] in HOST_GROUPS:
        return None
    return "config"


PASSWORD_VARS = tuple(fields(secret=True, generated=True))
GENERATED_VARS = PASSWORD_VARS
