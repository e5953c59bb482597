"""Trace archival's pieces without a stack: the settings refuse what MLflow's config would refuse,
the config the lab writes is one MLflow's own loader accepts, and the scheduler runs a pass at
once, then every interval, and outlives a failed one."""

from __future__ import annotations

import sys

import pytest
from mlflow.tracing.trace_archival_config import load_trace_archival_server_config

from mlflow_lab.errors import LabError
from mlflow_lab.gc import traces
from mlflow_lab.settings import REPO_ROOT, Settings, check
from mlflow_lab.stack.tracking_server import TRACE_ARCHIVE_PREFIX, command, write_trace_archival_config


def settings(**values: str) -> Settings:
    """The defaults of .env.example, with the secrets a first run would generate."""
    secrets = {name: "s3cr3t-" + name.lower() for name in ("POSTGRES_PASSWORD", "S3_ACCESS_KEY_ID", "S3_SECRET_ACCESS_KEY")}
    secrets["MLFLOW_FLASK_SERVER_SECRET_KEY"] = "k" * 32
    return Settings.load(
        REPO_ROOT / ".env.example",
        environ={"S3_BUCKET": "lab-artifacts", "S3_ENDPOINT_URL": "http://s3:9000", **secrets, **values},
    )


@pytest.mark.parametrize("value", ["30d", "12h", "90m", "1m"])
def test_retentions_mlflow_reads_are_accepted(value):
    check("LAB_TRACE_RETENTION", value)


@pytest.mark.parametrize("value", ["0d", "30", "1d12h", "30s", "1.5d", "-1d"])
def test_a_retention_mlflow_cannot_read_is_refused_naming_the_form(value):
    with pytest.raises(LabError, match="LAB_TRACE_RETENTION.*a retention such as 30d"):
        check("LAB_TRACE_RETENTION", value)


@pytest.mark.parametrize(
    ("value", "ok"), [("1h", True), ("1s", True), ("1d", True), ("0s", False), ("2d", False), ("1.5s", False)]
)
def test_the_interval_is_within_what_mlflow_takes(value, ok):
    if ok:
        check("LAB_TRACE_ARCHIVAL_INTERVAL", value)
    else:
        with pytest.raises(LabError, match="LAB_TRACE_ARCHIVAL_INTERVAL"):
            check("LAB_TRACE_ARCHIVAL_INTERVAL", value)


def test_mlflows_loader_reads_the_config_the_lab_writes():
    lab = settings(LAB_TRACE_RETENTION="12h", LAB_TRACE_ARCHIVAL_INTERVAL="30m")
    config = load_trace_archival_server_config(write_trace_archival_config(lab))
    assert config.enabled is True
    assert config.location == f"s3://lab-artifacts/{TRACE_ARCHIVE_PREFIX}"
    assert (config.retention, config.interval_seconds) == ("12h", 1800)
    # A pass process's own config lets MLflow run its one pass at once.
    assert load_trace_archival_server_config(write_trace_archival_config(lab, traces.PASS_PROCESS_INTERVAL)).interval_seconds == 1


def test_the_server_is_started_with_the_config():
    lab = settings()
    path = write_trace_archival_config(lab)
    argv, _ = command(lab, "/tmp/metrics", path)
    assert argv[argv.index("--trace-archival-config") + 1] == str(path)


def test_the_schedule_runs_a_pass_at_once_then_every_interval_and_outlives_a_failed_one(tmp_path, capsys):
    count = tmp_path / "count"
    # Each pass: one line appended; the second pass fails.
    script = (
        "import pathlib, sys; p = pathlib.Path(sys.argv[1]); n = len(p.read_text().splitlines()) if p.exists() else 0;"
        "p.write_text(p.read_text() + 'x\\n' if p.exists() else 'x\\n');"
        "print(f'traces: archived {n} trace(s)') if n != 1 else sys.exit('traces: the database is away')"
    )
    traces.on_schedule(0.2, first_delay=0, passes=3, argv=[sys.executable, "-c", script, str(count)])
    out, err = capsys.readouterr()
    assert count.read_text().count("x") == 3
    assert out.splitlines() == ["traces: archived 0 trace(s)", "traces: archived 2 trace(s)"]
    assert err.strip() == "traces: archival pass failed: traces: the database is away"
