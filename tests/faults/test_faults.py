"""Faults a shared machine sees, with the lab up and clients working: each test says what is
lost (nothing) and prints how long recovery took. The processes are killed with SIGKILL from
outside, as the OOM killer would: supervision (supervisord natively, Compose's restart policy)
has to bring them back."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import mlflow
import pytest
import requests
from mlflow.exceptions import MlflowException

from mlflow_lab.jobs import promote, sample_input, train_psystock
from mlflow_lab.registry import stage_api
from tests.faults.metric_logger import MetricLogger

pytestmark = pytest.mark.stack
RECOVERY_BOUND_S = 120  # supervision's restart plus the server's start, with CI headroom


def wait_until_tracking_answers(lab, since: float) -> float:
    while time.monotonic() - since < RECOVERY_BOUND_S:
        try:
            if lab.session().get(f"{lab.url}/api/2.0/mlflow/experiments/search?max_results=1", timeout=5).status_code == 200:
                return time.monotonic() - since
        except requests.RequestException:
            pass
        time.sleep(0.5)
    raise AssertionError(f"tracking did not answer through nginx within {RECOVERY_BOUND_S} s")


def assert_supervised_again(lab, service: str, victim: int) -> None:
    """The service runs again under its supervisor, and nothing of the killed one is left
    (natively its children, e.g. uvicorn, would otherwise keep the port)."""
    deadline = time.monotonic() + RECOVERY_BOUND_S
    while lab.require_internals().main_pid(service) in (victim, 0):
        assert time.monotonic() < deadline, f"{service} was not restarted"
        time.sleep(0.5)
    while living_in_group(victim):  # the killed process's group (supervisord's, or the container's)
        assert time.monotonic() < deadline, f"left running after {service} was killed: {living_in_group(victim)}"
        time.sleep(0.5)


def living_in_group(group: int) -> list[int]:
    """Processes of a process group that still run (zombies waiting to be reaped do not)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()  # after "pid (comm)": state ppid pgrp ...
        except (OSError, IndexError):
            continue
        if int(fields[2]) == group and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found


@pytest.mark.contract  # supervision: supervisord natively, the restart policy under Compose
def test_tracking_server_killed_while_a_client_logs_every_100_ms(lab, mlflow_client):
    run = mlflow_client.create_run(mlflow_client.create_experiment(f"faults-{uuid.uuid4().hex[:8]}")).info.run_id
    with MetricLogger(mlflow_client, run, join_timeout=RECOVERY_BOUND_S) as logger:  # the client's own retries carry it
        time.sleep(2)
        before = len(logger.logged)
        victim = lab.require_internals().main_pid("mlflow")
        os.kill(victim, signal.SIGKILL)
        killed = time.monotonic()
        assert_supervised_again(lab, "mlflow", victim)
        recovered = wait_until_tracking_answers(lab, killed)
        after = len(logger.logged)
        deadline = time.monotonic() + RECOVERY_BOUND_S  # the client's retries back off: give them time
        while len(logger.logged) < after + 10 and time.monotonic() < deadline:
            time.sleep(0.5)
    logged, failures = logger.steps(), logger.failures
    print(
        f"{lab.runner}: tracking server back {recovered:.1f} s after SIGKILL; {len(logged)} steps logged, {len(failures)} failed"
    )
    assert len(logged) >= after + 10 > before + 10, "logging went on after the outage"
    history = mlflow_client.get_metric_history(run, "loss")
    steps = [m.step for m in history]
    assert len(steps) == len(set(steps)), "no step stored twice"
    assert set(logged) <= set(steps), "every step the client saw succeed is stored"
    assert set(steps) <= set(logged) | {step for step, _ in failures}, "nothing stored the client did not send"
    for step, error in failures:
        assert "Traceback" not in error and error, f"step {step} failed without a clear error"


@pytest.mark.contract
def test_postgres_killed_during_writes_loses_no_committed_run(lab, mlflow_client):
    experiment = mlflow_client.create_experiment(f"faults-pg-{uuid.uuid4().hex[:8]}")
    committed, failures, stop = [], [], threading.Event()

    def write_runs() -> None:  # a run counts as committed once the client saw every call succeed
        while not stop.is_set():
            try:
                run = mlflow_client.create_run(experiment).info.run_id
                mlflow_client.log_param(run, "written", "yes")
                mlflow_client.set_terminated(run)
                committed.append(run)
            except Exception as exc:  # noqa: BLE001 - a clear error is allowed; recorded
                failures.append(str(exc).splitlines()[0])
            time.sleep(0.05)

    writer = threading.Thread(target=write_runs)
    writer.start()
    try:
        time.sleep(2)
        victim = lab.require_internals().main_pid("postgres")
        os.kill(victim, signal.SIGKILL)
        killed = time.monotonic()
        assert_supervised_again(lab, "postgres", victim)
        after = len(committed)
        deadline = time.monotonic() + RECOVERY_BOUND_S
        while len(committed) < after + 5:
            assert time.monotonic() < deadline, f"no run committed after PostgreSQL came back: {failures[-3:]}"
            time.sleep(0.5)
        recovered = time.monotonic() - killed
    finally:
        stop.set()
        writer.join(timeout=RECOVERY_BOUND_S)
    print(f"{lab.runner}: writes on {recovered:.1f} s after PostgreSQL's SIGKILL; {len(committed)} runs, {len(failures)} errors")
    for run_id in committed:
        run = mlflow_client.get_run(run_id)
        assert (run.info.status, run.data.params.get("written")) == ("FINISHED", "yes"), run_id
    assert all(error and "Traceback" not in error for error in failures)


def test_s3_down_during_uploads_gives_errors_and_leaves_no_dangling_version(lab, mlflow_client, tmp_path, monkeypatch):
    name = f"faults-s3-{uuid.uuid4().hex[:6]}"
    train_psystock.train(experiment=name, register_as=name, days=200, n_estimators=5)
    promote.promote(mlflow_client, name, "1", force=True)
    frame = sample_input.build("psystock", rows=5, seed=2)
    expected = mlflow.pyfunc.load_model(f"models:/{name}/Production").predict(frame)
    artifact = tmp_path / "notes.txt"
    artifact.write_text("written while the bucket was away\n")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")  # the error, not minutes of backoff
    stack = lab.require_internals()
    stack.stop_service("s3")
    try:
        run = mlflow_client.create_run(mlflow_client.get_experiment_by_name(name).experiment_id).info.run_id
        started = time.monotonic()
        with pytest.raises(MlflowException) as upload:
            mlflow_client.log_artifact(run, str(artifact))
        assert "Traceback" not in str(upload.value)
        print(f"{lab.runner}: artifact upload refused in {time.monotonic() - started:.1f} s: {str(upload.value)[-160:]}")
        started = time.monotonic()
        with pytest.raises(MlflowException):
            train_psystock.train(experiment=name, register_as=name, days=200, n_estimators=5)  # log_model + register
        print(f"{lab.runner}: log_model refused in {time.monotonic() - started:.1f} s")
    finally:
        stack.start_service("s3")
        monkeypatch.delenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES")
    versions = mlflow_client.search_model_versions(f"name = '{name}'")
    assert [v.version for v in versions] == ["1"], "no version registered while its files could not be written"
    with stage_api():
        assert mlflow_client.get_latest_versions(name, stages=["Production"])[0].version == "1"
    again = mlflow.pyfunc.load_model(f"models:/{name}/Production").predict(frame)
    assert list(again) == list(expected), "the Production model loads, unchanged"
    mlflow_client.log_artifact(run, str(artifact))  # and uploads work again
    assert [f.path for f in mlflow_client.list_artifacts(run)] == ["notes.txt"]


def test_two_forced_promotions_at_once_leave_one_production_version(lab, mlflow_client):
    name = f"faults-promote-{uuid.uuid4().hex[:6]}"
    for _ in range(2):
        train_psystock.train(experiment=name, register_as=name, days=200, n_estimators=5)
    for attempt in range(10):
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(lambda version: promote.promote(mlflow_client, name, version, force=True), ["1", "2"]))
        with stage_api():
            production = [
                v.version for v in mlflow_client.search_model_versions(f"name = '{name}'") if v.current_stage == "Production"
            ]
        assert len(production) == 1, (attempt, production)
        assert mlflow_client.get_model_version_by_alias(name, "champion").version == production[0], attempt


def kill_job_once(command: list[str], env: dict[str, str], ready, moment: str) -> None:
    """Start a job and SIGKILL it as soon as `ready()` (the moment it names)."""
    job = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    try:
        while not ready():
            assert job.poll() is None, f"the job ended before {moment}"
            assert time.monotonic() < deadline, f"the job was not killed: it never reached the moment {moment}"
            time.sleep(0.05)
    finally:
        job.send_signal(signal.SIGKILL)
        job.wait()


def test_batch_scoring_killed_halfway_leaves_no_output_and_a_rerun_succeeds(lab, mlflow_client, tmp_path):
    name = f"faults-score-{uuid.uuid4().hex[:6]}"
    train_psystock.train(experiment=name, register_as=name, days=200, n_estimators=5)
    source, output = tmp_path / "input.csv", tmp_path / "scored.csv"
    sample_input.build("psystock", rows=400_000, seed=1).to_csv(source, index=False)
    # The job scores 400,000 rows in a fraction of a second; ten times them keep it writing
    # for seconds, so the moment "it started writing" is not missed.
    rows = 400_000 * 10
    lines = source.read_bytes().split(b"\n", 1)[1]
    with source.open("ab") as more:
        for _ in range(9):
            more.write(lines)
    command = [
        sys.executable,
        "-m",
        "mlflow_lab.jobs",
        "score",
        str(source),
        "--model-uri",
        f"models:/{name}/1",
        "--output",
        str(output),
    ]
    env = {**os.environ, **lab.client_env()}
    partial = tmp_path / f".{output.name}.partial"
    kill_job_once(command, env, lambda: partial.exists() and partial.stat().st_size > 0, "it started writing")
    assert not output.exists(), "no output under the final name"
    rerun = subprocess.run(command, env=env, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert sum(1 for _ in output.open()) == rows + 1


def test_training_killed_mid_run_registers_nothing_and_the_next_up_marks_its_runs_failed(lab, mlflow_client):
    from mlflow.entities import ViewType

    from mlflow_lab.testing.stacks import lab_cli

    name = f"faults-train-{uuid.uuid4().hex[:6]}"
    command = [sys.executable, "-m", "mlflow_lab.jobs", "train", "wine-quality", "--experiment", name, "--register-as", name]
    # A search long enough to be killed in; heartbeats every second instead of every 20.
    env = {**os.environ, **lab.client_env(), "LAB_JOB_HEARTBEAT_SECONDS": "1"}

    def runs() -> list:
        experiment = mlflow_client.get_experiment_by_name(name)
        return mlflow_client.search_runs([experiment.experiment_id], run_view_type=ViewType.ALL) if experiment else []

    # Mid-run: the default-params run has ended and the tuning run has begun.
    kill_job_once([*command, "--n-iter", "5000"], env, lambda: len(runs()) >= 2, "its second run began")
    before = runs()
    killed = {run.info.run_id for run in before if run.info.status == "RUNNING"}  # nobody could end them
    assert killed
    assert not {v.run_id for v in mlflow_client.search_model_versions(f"name = '{name}'")} & killed, "registered mid-run"
    time.sleep(4)  # three missed heartbeats
    lab_cli(lab.cli_env, "up")  # what the team runs next
    after = {run.info.run_id: run for run in runs()}
    assert after.keys() == {run.info.run_id for run in before}
    for run in before:
        if run.info.run_id in killed:
            assert after[run.info.run_id].info.status == "FAILED" and after[run.info.run_id].info.end_time
        else:
            assert after[run.info.run_id].info.status == run.info.status  # ended runs are left alone
    rerun = subprocess.run([*command, "--n-iter", "2"], env=env, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr[-2000:]


CLIENTS, LOAD_SECONDS = 64, 30


def test_64_clients_logging_for_30_s_get_no_error_and_stay_within_the_connection_budget(lab, mlflow_client):
    """Each client logs into its own run as fast as the lab answers. Nothing fails, every
    history is exactly what its client logged, and the tracking server's connections stay
    within what .env sizes (.env.example says why): each worker's two pools (tracking and
    registry stores) of POOL_SIZE + MAX_OVERFLOW, plus the 2 the launching process keeps."""
    s = lab.settings
    budget = s.int("MLFLOW_WORKERS") * 2 * (s.int("MLFLOW_DB_POOL_SIZE") + s.int("MLFLOW_DB_MAX_OVERFLOW")) + 2
    with lab.postgres() as conn, conn.cursor() as cur:
        cur.execute("SHOW max_connections")
        assert budget <= int(cur.fetchone()[0]) - 20, "the budget leaves no room for init, backups and admins"
    experiment = mlflow_client.create_experiment(f"load-{uuid.uuid4().hex[:8]}")
    runs = [mlflow_client.create_run(experiment).info.run_id for _ in range(CLIENTS)]
    done, peak = threading.Event(), [0]

    def watch_connections() -> None:  # connections of the tracking database, sampled each 0.5 s
        with lab.postgres() as conn, conn.cursor() as cur:
            while not done.is_set():
                cur.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (s["POSTGRES_DB"],))
                peak[0] = max(peak[0], cur.fetchone()[0] - 1)  # not this watcher
                conn.rollback()
                time.sleep(0.5)

    def client(run_id: str) -> int:
        own, step, end = mlflow.MlflowClient(lab.url), 0, time.monotonic() + LOAD_SECONDS
        while time.monotonic() < end:
            own.log_metric(run_id, "load", float(step), step=step)
            step += 1
        return step

    watcher = threading.Thread(target=watch_connections, daemon=True)
    watcher.start()
    started = time.monotonic()
    with ThreadPoolExecutor(CLIENTS) as pool:
        logged = list(pool.map(client, runs))  # raises the first client error
    elapsed = time.monotonic() - started
    done.set()
    watcher.join(10)
    total = sum(logged)
    rate = f"{total} metrics ({total / elapsed:.0f}/s)"
    print(f"\n{CLIENTS} clients, {elapsed:.0f} s: {rate}, peak {peak[0]} database connections (budget {budget})")
    assert min(logged) > 0, "a client never got a write through"
    for run_id, count in zip(runs, logged, strict=True):
        steps = [m.step for m in mlflow_client.get_metric_history(run_id, "load")]
        assert sorted(steps) == list(range(count)), f"run {run_id}: history differs from the {count} values logged"
    assert 0 < peak[0] <= budget
    if lab.stack is not None:
        assert "QueuePool limit" not in lab.log_tail("mlflow", 2000)


def move_tree(source: Path, target: Path) -> None:
    """Copy everything of `source` (owners, modes) into the existing `target`, then empty `source`."""
    subprocess.run(["cp", "-a", f"{source}/.", str(target)], check=True)
    for child in source.iterdir():
        shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()


@contextlib.contextmanager
def s3_data_on_a_small_disk(lab, free_mb: int):
    """The S3 server's data on a filesystem of its own (a tmpfs) with `free_mb` left, the way a
    dedicated data disk fills up; moved back to where it was afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small filesystem under the S3 server's data needs root")
    stack = lab.require_internals()
    data = stack.data_dir("s3")
    aside = data.with_name(f"{data.name}.faults-aside")
    owner = data.stat()
    stack.stop_service("s3")
    aside.mkdir()
    move_tree(data, aside)
    used_mb = sum(p.stat().st_size for p in aside.rglob("*") if p.is_file()) // (1 << 20)
    options = f"size={used_mb + free_mb}m,mode={owner.st_mode & 0o7777:o},uid={owner.st_uid},gid={owner.st_gid}"
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(data)], capture_output=True, text=True)
    try:
        if mounted.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
        move_tree(aside, data)
        stack.start_service("s3")
        yield data
        stack.stop_service("s3")
        move_tree(data, aside)
    finally:
        if mounted.returncode == 0:
            subprocess.run(["umount", str(data)], check=True)
        move_tree(aside, data)
        aside.rmdir()
        stack.start_service("s3")


def fill(folder: Path, leave_bytes: int) -> Path:
    """Another program's file taking all but `leave_bytes` of the filesystem."""
    filler = folder / "filler-of-another-program"
    stats = os.statvfs(folder)
    with filler.open("wb") as out:
        out.truncate(0)
        remaining = stats.f_bavail * stats.f_frsize - leave_bytes
        while remaining > 0:
            out.write(b"\0" * min(remaining, 1 << 20))
            remaining -= 1 << 20
    return filler


def test_a_full_disk_under_the_s3_data_refuses_uploads_and_corrupts_nothing(lab, mlflow_client, tmp_path, monkeypatch):
    experiment = mlflow_client.create_experiment(f"faults-disk-{uuid.uuid4().hex[:6]}")
    earlier = mlflow_client.create_run(experiment).info.run_id
    before = tmp_path / "before.bin"
    before.write_bytes(os.urandom(3 << 20))
    mlflow_client.log_artifact(earlier, str(before))
    big = tmp_path / "after.bin"
    big.write_bytes(os.urandom(8 << 20))
    with s3_data_on_a_small_disk(lab, free_mb=200) as data:
        filler = fill(data, leave_bytes=1 << 20)
        monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")  # the error, not minutes of backoff
        run = mlflow_client.create_run(experiment).info.run_id
        started = time.monotonic()
        with pytest.raises(MlflowException) as refused:
            mlflow_client.log_artifact(run, str(big))
        took = time.monotonic() - started
        print(f"\n{lab.runner}: upload onto a full disk refused in {took:.1f} s: {str(refused.value)[-200:]}")
        assert "Traceback" not in str(refused.value)
        filler.unlink()  # space freed
        monkeypatch.delenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES")
        deadline = time.monotonic() + 120
        while True:  # the S3 server may take a moment to notice the space
            try:
                mlflow_client.log_artifact(run, str(big))
                break
            except MlflowException:
                assert time.monotonic() < deadline, "uploads did not work again after space was freed"
                time.sleep(2)
        print(f"{lab.runner}: uploads work again {time.monotonic() - started:.1f} s after the first refusal")
        for run_id, local in ((earlier, before), (run, big)):
            assert intact(run_id, local, tmp_path / run_id), f"{local.name} is not intact"
    assert intact(earlier, before, tmp_path / "moved-back")  # also once the data is back where it was


def intact(run_id: str, local: Path, into: Path) -> bool:
    fetched = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=local.name, dst_path=str(into))
    return Path(fetched).read_bytes() == local.read_bytes()
