"""Trace archival: a trace older than LAB_TRACE_RETENTION (30d) has its spans moved from
PostgreSQL to the bucket by a pass of MLflow's archival (the pass the tracking server's scheduler
runs every LAB_TRACE_ARCHIVAL_INTERVAL, here run once, now, beside the server), and still reads
back whole through nginx with the lab's credentials; a trace of today stays in PostgreSQL.

The oracles are the lab's stores read directly: the span rows in PostgreSQL (their payloads
emptied: MLflow 3.17.2 keeps the rows, with names, times and status, for searches) and the
archived object in the bucket (read from the S3 server). The scheduler itself is checked by its
first pass in the tracking server's log."""

from __future__ import annotations

import time
import uuid

import mlflow
import pytest

pytestmark = pytest.mark.stack

DAY_NS = 86400 * 10**9
ARCHIVE_PREFIX = "trace-archive"  # mlflow_lab.stack.tracking_server's, written again as the oracle
SPANS = "SELECT count(*), coalesce(sum(length(content)), 0) FROM spans WHERE trace_id = %s"
SPANS_LOCATION = "SELECT value FROM trace_tags WHERE request_id = %s AND key = 'mlflow.trace.spansLocation'"


def old_trace(experiment_id: str, marker: str, age_days: int) -> str:
    """A trace that started `age_days` ago: a root, a child with attributes, a grandchild with a
    larger payload, as MLflow's client logs it through nginx."""
    start = time.time_ns() - age_days * DAY_NS
    root = mlflow.start_span_no_context(
        "agent", span_type="AGENT", inputs={"question": marker}, experiment_id=experiment_id, start_time_ns=start
    )
    child = mlflow.start_span_no_context(
        "retrieve", span_type="RETRIEVER", parent_span=root, attributes={"top_k": 3, "marker": marker}, start_time_ns=start + 1000
    )
    leaf = mlflow.start_span_no_context("embed", parent_span=child, inputs={"text": marker * 500}, start_time_ns=start + 2000)
    leaf.end(outputs=[0.25, 0.5], end_time_ns=start + 3000)
    child.end(outputs=["doc-1", "doc-2"], end_time_ns=start + 4000)
    root.end(outputs={"answer": f"answer to {marker}"}, end_time_ns=start + 5000)
    return root.trace_id


def spans_of(trace) -> list[dict]:
    return sorted((span.to_dict() for span in trace.data.spans), key=lambda span: span["name"])


@pytest.fixture(scope="module")
def traces(lab, mlflow_client):
    """An old trace and one of today in a new experiment, as the server stores them."""
    marker = uuid.uuid4().hex
    experiment_id = mlflow_client.create_experiment(f"trace-archival-{marker[:8]}")
    old, new = old_trace(experiment_id, marker, age_days=40), old_trace(experiment_id, marker, age_days=0)
    mlflow.flush_trace_async_logging()
    before = {trace_id: spans_of(mlflow_client.get_trace(trace_id)) for trace_id in (old, new)}
    assert len(before[old]) == 3
    return experiment_id, marker, old, new, before


def test_an_old_trace_is_archived_to_the_bucket_and_still_reads_back(lab, mlflow_client, traces):
    experiment_id, marker, old, new, before = traces
    stack = lab.require_internals()

    started = time.monotonic()
    done = stack.exec("mlflow", ["python", "-m", "mlflow_lab.gc.traces"])
    print(f"\n{done.stdout.strip()} ({time.monotonic() - started:.1f} s)")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("traces: archived "), done.stdout

    # Through nginx, with the lab's credentials: the same spans, now read from the bucket.
    archived = mlflow_client.get_trace(old)
    assert archived.info.tags["mlflow.trace.spansLocation"] == "ARCHIVE_REPO"
    assert spans_of(archived) == before[old]
    found = mlflow.search_traces(locations=[experiment_id], filter_string="trace.status = 'OK'", return_type="list")
    assert {trace.info.trace_id: spans_of(trace) for trace in found} == before

    # PostgreSQL: the old trace's span rows hold no payload any more; today's are untouched.
    with lab.postgres() as db, db.cursor() as cursor:
        cursor.execute(SPANS, (old,))
        assert cursor.fetchone() == (3, 0)
        cursor.execute(SPANS, (new,))
        rows, payload = cursor.fetchone()
        assert rows == 3 and payload > len(marker) * 500
        cursor.execute(SPANS_LOCATION, (new,))
        assert cursor.fetchone() == ("TRACKING_STORE",)

    # The bucket: one object under the archive's prefix for the old trace, holding its payloads.
    bucket = lab.settings["S3_BUCKET"]
    location = archived.info.tags["mlflow.trace.archiveLocation"]
    assert location.startswith(f"s3://{bucket}/{ARCHIVE_PREFIX}/") and f"/{experiment_id}/traces/{old}/" in location, location
    s3, prefix = lab.s3(), location.removeprefix(f"s3://{bucket}/")
    objects = s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
    assert [item["Key"].rsplit("/", 1)[1] for item in objects] == ["traces.pb"]
    body = s3.get_object(Bucket=bucket, Key=objects[0]["Key"])["Body"].read()
    assert marker.encode() in body
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=f"{ARCHIVE_PREFIX}/").get("Contents", [])
    assert not any(f"/traces/{new}/" in item["Key"] for item in listed)


def test_the_server_runs_archival_passes_on_its_own(lab):
    """The tracking server's scheduler (mlflow_lab.gc.traces --schedule) reports its first pass
    a minute after the server starts: waited for here only when the lab is younger than that."""
    lab.require_internals()
    deadline = time.monotonic() + 90
    while "traces: archived " not in (log := lab.log_tail("mlflow", 5000)):
        assert time.monotonic() < deadline, log[-2000:]
        time.sleep(2)
    assert "archival pass failed" not in log
