"""Garbage collection's pieces without a lab: the durations it reads, where an artifact URI lies
in the bucket, what a deletion keeps, the endpoint `mlflow gc` deletes through (driven by
MLflow's own artifact client, as `mlflow gc` drives it), and `lab gc` refusing bad input
before it asks for a runner. The whole collection runs in tests/stack/test_gc.py."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from mlflow_lab.errors import LabError
from mlflow_lab.gc import command, health
from mlflow_lab.gc.artifact_endpoint import serving
from mlflow_lab.gc.bucket import Bucket, within
from mlflow_lab.gc.collection import own_folder
from mlflow_lab.gc.durations import seconds_of
from mlflow_lab.settings import ENV_EXAMPLE, PASSWORD_VARS, Settings, parse_env_file


@pytest.mark.parametrize(
    "text, seconds", [("30d", 30 * 86400), ("12h", 43200), ("1d2h30m", 95400), ("1.5h", 5400), ("0s", 0), ("90s", 90)]
)
def test_durations_are_read_as_mlflow_gc_reads_them(text, seconds):
    assert seconds_of("--older-than", text) == seconds


@pytest.mark.parametrize("text", ["banana", "", "30", "1h1d", " 30d", "1..2d", "-1d"])
def test_anything_else_is_refused_naming_where_it_came_from(text):
    with pytest.raises(LabError, match=rf"^LAB_GC_INTERVAL must be a duration such as 30d, .*; got {text!r}\.$"):
        seconds_of("LAB_GC_INTERVAL", text)


def test_a_setting_that_is_no_duration_is_refused_by_the_settings_check():
    values = {**parse_env_file(ENV_EXAMPLE), **dict.fromkeys(PASSWORD_VARS, "x")}
    Settings(values).validate("gc", passwords=False)
    with pytest.raises(LabError, match="^LAB_GC_OLDER_THAN must be a duration such as 30d"):
        Settings({**values, "LAB_GC_OLDER_THAN": "a month"}).validate("gc", passwords=False)


def bucket(name: str = "mlflow") -> Bucket:
    s3 = {
        "S3_ENDPOINT_URL": "http://127.0.0.1:9",
        "S3_ACCESS_KEY_ID": "lab",
        "S3_SECRET_ACCESS_KEY": "x",
        "S3_REGION": "us-east-1",
    }
    return Bucket(Settings({"S3_BUCKET": name, **s3}))


def test_artifact_uris_lie_at_their_path_in_the_bucket():
    found = bucket()
    assert found.key_of("mlflow-artifacts:/workspaces/team/3/abc/artifacts") == "workspaces/team/3/abc/artifacts"
    assert found.key_of("mlflow-artifacts:/1/abc/artifacts/model/") == "1/abc/artifacts/model"
    assert found.key_of("s3://mlflow/workspaces/default/2") == "workspaces/default/2"
    assert found.key_of("s3://other-bucket/2") is None and found.key_of("file:///tmp/mlruns/2") is None


def test_a_key_is_kept_within_a_location_never_beside_it():
    keep = {"workspaces/default/1/abc/artifacts/model", "workspaces/default/1/abc/artifacts/notes.txt"}
    assert within("workspaces/default/1/abc/artifacts/model/MLmodel", keep)
    assert within("workspaces/default/1/abc/artifacts/notes.txt", keep)
    assert not within("workspaces/default/1/abc/artifacts/model-2/MLmodel", keep)
    assert not within("workspaces/default/1/abc/artifacts/other.bin", keep)


def test_the_whole_bucket_is_never_deleted():
    with pytest.raises(LabError, match="asked to delete the whole bucket"):
        bucket().delete_folder("", keep=set())


def test_an_experiments_folder_is_swept_only_when_it_is_its_own():
    assert own_folder("workspaces/default/12", "12") and own_folder("12", "12")
    assert not own_folder("workspaces/default/112", "12") and not own_folder("shared", "12")


def test_the_health_check_reads_the_last_collection_of_its_own_lab(tmp_path, monkeypatch):
    monkeypatch.setattr(health.tempfile, "gettempdir", lambda: str(tmp_path))
    one, other = {"S3_ENDPOINT_URL": "http://127.0.0.1:20000"}, {"S3_ENDPOINT_URL": "http://127.0.0.1:21000"}
    assert not health.healthy(one)  # no collection has finished yet
    health.record(one, True, "gc: removed ...")
    assert health.healthy(one) and not health.healthy(other)
    health.record(one, False, "cannot read the tracking database")
    assert not health.healthy(one)
    assert [path.name for path in tmp_path.iterdir()] == [health.status_file(one).name]


class Stop(Exception):
    """Ends the scheduled collector's loop in a test."""


def test_the_schedule_collects_at_once_then_every_interval_and_outlives_a_failed_collection(tmp_path, monkeypatch, capsys):
    from mlflow_lab.gc import __main__ as program
    from mlflow_lab.gc import collection

    monkeypatch.setattr(health.tempfile, "gettempdir", lambda: str(tmp_path))
    outcomes = iter([LabError("cannot read the tracking database at postgres:5432"), "gc: removed 1 run(s) ..."])

    def collect(settings, older_than):
        assert older_than == "7d"
        outcome = next(outcomes)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    slept: list[float] = []

    def sleep(seconds):
        slept.append(seconds)
        if len(slept) == 2:
            raise Stop

    monkeypatch.setattr(collection, "collect", collect)
    monkeypatch.setattr(program.time, "sleep", sleep)
    monkeypatch.setattr(program.signal, "signal", lambda *args: None)
    with pytest.raises(Stop):
        program.on_schedule(Settings({"LAB_GC_INTERVAL": "12h", "LAB_GC_OLDER_THAN": "7d"}))
    said = capsys.readouterr()
    assert slept == [43200, 43200]
    assert "gc: failed: cannot read the tracking database at postgres:5432" in said.err
    assert "gc: removed 1 run(s)" in said.out and said.out.count("gc: next collection at") == 2
    assert health.healthy(os.environ)  # the last collection succeeded


def test_a_schedule_of_no_time_is_refused():
    from mlflow_lab.gc import __main__ as program

    with pytest.raises(LabError, match="^LAB_GC_INTERVAL must be longer than 0s.$"):
        program.on_schedule(Settings({"LAB_GC_INTERVAL": "0s"}))


def mlflow_delete(uri: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    """What `mlflow gc` does with a run's artifact URI, in a process with `env` (as it gets it)."""
    code = (
        "import sys; from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository;"
        "get_artifact_repository(sys.argv[1]).delete_artifacts()"
    )
    return subprocess.run([sys.executable, "-c", code, uri], env={**os.environ, **env}, capture_output=True, text=True)


def test_mlflows_artifact_client_deletes_a_folder_through_the_endpoint():
    asked: list[str] = []
    with serving(asked.append) as endpoint:
        done = mlflow_delete("mlflow-artifacts:/workspaces/team-a/7/0123abcd/artifacts", endpoint.client_env())
    assert done.returncode == 0, done.stderr
    assert asked == ["workspaces/team-a/7/0123abcd/artifacts"]


def test_the_endpoint_answers_only_its_own_client_and_reports_a_failed_deletion():
    asked: list[str] = []
    with serving(asked.append) as endpoint:
        guess = {**endpoint.client_env(), "MLFLOW_TRACKING_PASSWORD": "guess"}
        stranger = mlflow_delete("mlflow-artifacts:/workspaces/default/1/abc/artifacts", guess)
    assert stranger.returncode != 0 and "401" in stranger.stderr and asked == []

    tried: list[str] = []

    def failing(folder: str) -> None:
        tried.append(folder)
        raise LabError("the S3 server did not delete it")

    with serving(failing) as endpoint:
        failed = mlflow_delete("mlflow-artifacts:/workspaces/default/1/abc/artifacts", endpoint.client_env())
    assert failed.returncode != 0 and "the S3 server did not delete it" in failed.stderr
    assert len(tried) == 1  # not retried: the S3 client under it has retried already
    assert str(endpoint.failure) == "the S3 server did not delete it"


class Runner:
    """A stand-in that records what it was asked to run."""

    def __init__(self, result: subprocess.CompletedProcess):
        self.result, self.ran = result, []

    def exec(self, service: str, argv: list[str]) -> subprocess.CompletedProcess:
        self.ran.append((service, argv))
        return self.result


def test_lab_gc_refuses_a_bad_duration_before_it_asks_for_a_runner():
    def no_runner():
        raise AssertionError("a runner was asked for")

    with pytest.raises(LabError, match=r"^--older-than must be a duration such as 30d, 12h, 1d2h30m or 0s; got 'banana'\.$"):
        command.run("banana", no_runner)


def test_lab_gc_runs_the_collection_beside_the_tracking_server_and_says_its_failure_in_one_sentence():
    runner = Runner(subprocess.CompletedProcess([], 0, "gc: removed ...\ngc: bucket mlflow: ...\n", ""))
    assert command.run("7d", lambda: runner) == "gc: removed ...\ngc: bucket mlflow: ..."
    assert runner.ran == [("mlflow", ["python", "-m", "mlflow_lab.gc", "--older-than", "7d"])]
    failed = Runner(
        subprocess.CompletedProcess([], 1, "gc: mlflow gc --older-than 7d\n", "gc: cannot read the tracking database\n")
    )
    with pytest.raises(LabError, match=r"^cannot read the tracking database\.$"):
        command.run("7d", lambda: failed)
