"""Faults across the network: links between the lab's containers cut (or slowed) while clients
work; the processes themselves are left alone. A cut drops every packet between two
containers (iptables DROP inside one container's network namespace, both directions), as a
partition does: nothing is refused, packets just stop arriving, then arrive again. Each test
says what a client sees, checks that nothing committed is lost or doubled, and prints how long
recovery took once the link was back (docs/network-faults.md records the figures).

Compose only: the faults are made between containers, with `nsenter` into their network
namespaces (root, and iptables on the host). Every rule carries FAULT_TAG and is removed in a
`finally`; each test checks that none is left.
"""

from __future__ import annotations

import contextlib
import re
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import pytest
from mlflow.exceptions import MlflowException

from mlflow_lab.jobs import promote, sample_input, train_psystock
from tests.faults.metric_logger import MetricLogger
from tests.stack.payloads import v2_body

pytestmark = [pytest.mark.stack, pytest.mark.contract("compose")]

FAULT_TAG = "mlflow-lab-network-fault"  # the comment on every rule these tests add
MODEL = "psystock"  # served by the test lab's model API (MODEL_API_MODELS)
CUT_FROM_DB_S = 15
RECOVERY_BOUND_S = 60  # TCP's retransmission backoff after a 15-s silence (~13 s) plus CI headroom
FOLLOW_BOUND_S = 60  # a poll (MODEL_API_POLL_SECONDS, 5 s), retransmission, loading the version
# A client that gives up on one request after this long and does not retry: during an S3 cut
# the tracking server itself waits on S3 far longer (docs/network-faults.md).
CLIENT_TIMEOUT_S = 10
LATENCY_S = 0.2
RELAY_MARK = 0x1AB  # firewall mark of the latency relay's own connections
RELAY = Path(__file__).with_name("latency_relay.py")


@dataclass(frozen=True)
class Container:
    """One service's container as the Docker engine sees it."""

    id: str

    @classmethod
    def of(cls, lab, service: str) -> Container:
        found = lab.require("compose").run("ps", "--quiet", service, capture=True).stdout.split()
        assert len(found) == 1, f"expected one running container of {service}, found {found}"
        return cls(found[0])

    def inspect(self, template: str) -> str:
        return subprocess.run(
            ["docker", "inspect", "--format", template, self.id], capture_output=True, text=True, check=True
        ).stdout.strip()

    @property
    def pid(self) -> int:
        return int(self.inspect("{{.State.Pid}}"))

    @property
    def address(self) -> str:
        return self.inspect("{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}")

    @property
    def life(self) -> tuple[str, str]:
        """When it started and how often the engine restarted it: unchanged unless it restarted."""
        return self.inspect("{{.State.StartedAt}}"), self.inspect("{{.RestartCount}}")

    def netns(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess:
        """A host program (iptables, tc) run in this container's network namespace."""
        return subprocess.run(["nsenter", "-t", str(self.pid), "-n", *argv], capture_output=True, text=True, check=check)

    def fault_rules(self) -> list[str]:
        return [
            rule
            for table in ("filter", "nat")
            for rule in self.netns("iptables", "-t", table, "-S").stdout.splitlines()
            if FAULT_TAG in rule
        ]


@dataclass
class Link:
    restored: float = 0.0  # time.monotonic() when the link came back


@contextlib.contextmanager
def cut(lab, source: str, target: str):
    """Every packet between `source`'s container and `target`'s dropped (in source's namespace)."""
    container, address = Container.of(lab, source), Container.of(lab, target).address
    rules = [("OUTPUT", "-d", address), ("INPUT", "-s", address)]
    link = Link()
    try:
        for chain, direction, peer in rules:
            container.netns("iptables", "-A", chain, direction, peer, "-m", "comment", "--comment", FAULT_TAG, "-j", "DROP")
        yield link
    finally:
        for chain, direction, peer in rules:
            container.netns(
                "iptables", "-D", chain, direction, peer, "-m", "comment", "--comment", FAULT_TAG, "-j", "DROP", check=False
            )
        link.restored = time.monotonic()
        assert container.fault_rules() == [], f"rules left in {source}'s namespace"


@contextlib.contextmanager
def latency(lab, source: str, target: str, port: int, seconds: float):
    """`seconds` of one-way latency on `source`'s connections to `target`'s `port`: redirected
    (iptables REDIRECT in source's namespace) through latency_relay.py, which runs there."""
    container, address = Container.of(lab, source), Container.of(lab, target).address
    argv = [sys.executable, str(RELAY), address, str(port), str(seconds), str(RELAY_MARK)]
    relay = subprocess.Popen(
        ["nsenter", "-t", str(container.pid), "-n", *argv],
        stdout=subprocess.PIPE,
        text=True,
    )
    rule = ["OUTPUT", "-p", "tcp", "-d", address, "--dport", str(port), "-m", "mark", "!", "--mark", str(RELAY_MARK)]
    tag = ["-m", "comment", "--comment", FAULT_TAG]
    relayed: list[str] = []
    try:
        relay_port = relay.stdout.readline().strip()
        assert relay_port.isdigit(), "the latency relay did not start"
        container.netns("iptables", "-t", "nat", "-A", *rule, *tag, "-j", "REDIRECT", "--to-ports", relay_port)
        reader = threading.Thread(target=lambda: relayed.extend(relay.stdout), daemon=True)
        reader.start()
        yield relayed
    finally:
        if relay.stdout and "relay_port" in locals() and relay_port.isdigit():
            container.netns("iptables", "-t", "nat", "-D", *rule, *tag, "-j", "REDIRECT", "--to-ports", relay_port, check=False)
        relay.terminate()
        relay.wait(timeout=10)
        assert container.fault_rules() == [], f"rules left in {source}'s namespace"


def registered_version(client, run_id: str) -> str:
    (version,) = [v.version for v in client.search_model_versions(f"name = '{MODEL}'") if v.run_id == run_id]
    return version


def predict(lab, frame) -> tuple[int, str | None, list]:
    """Status, served version and outputs of a V2 request for MODEL through nginx."""
    response = lab.session().post(f"{lab.url}/v2/models/{MODEL}/infer", json=v2_body(frame), timeout=30)
    if not response.ok:
        return response.status_code, None, []
    answer = response.json()
    return response.status_code, answer["model_version"], answer["outputs"][0]["data"]


def wait_for_version(lab, version: str, frame, bound: float) -> float:
    started = time.monotonic()
    while predict(lab, frame)[1] != version:
        assert time.monotonic() - started < bound, f"{MODEL} version {version} not served within {bound} s"
        time.sleep(0.5)
    return time.monotonic() - started


@pytest.fixture(scope="module")
def served(lab, mlflow_client):
    """A psystock version in Production, served by the model API: (version, input, its output)."""
    lab.require("compose")
    run_id, _ = train_psystock.train(experiment=f"net-faults-{uuid.uuid4().hex[:6]}", register_as=MODEL, days=200, n_estimators=5)
    version = registered_version(mlflow_client, run_id)
    promote.promote(mlflow_client, MODEL, version, force=True)
    frame = sample_input.build(MODEL, rows=3, seed=4)
    wait_for_version(lab, version, frame, FOLLOW_BOUND_S)
    return version, frame, predict(lab, frame)[2]


def test_tracking_server_cut_from_postgresql_for_15_s_loses_and_doubles_no_metric(lab, mlflow_client):
    mlflow_server = Container.of(lab, "mlflow")
    life = mlflow_server.life
    run = mlflow_client.create_run(mlflow_client.create_experiment(f"net-db-{uuid.uuid4().hex[:6]}")).info.run_id
    # The MLflow client through nginx, with its default timeout and retries.
    with MetricLogger(mlflow_client, run, join_timeout=RECOVERY_BOUND_S) as logger:
        time.sleep(2)
        with cut(lab, "mlflow", "postgres") as link:
            cut_at = time.monotonic()
            time.sleep(CUT_FROM_DB_S)
        logged = logger.logged
        in_cut = [step for step, _, when in logged if cut_at < when < link.restored]
        after = len([1 for *_, when in logged if when < link.restored])
        while len(logged) < after + 10:  # ten more writes acknowledged: the server works again
            assert time.monotonic() - link.restored < RECOVERY_BOUND_S, f"no recovery; errors: {logger.failures[-3:]}"
            time.sleep(0.2)
        first = logged[after][2] - link.restored
        ten = logged[after + 9][2] - link.restored
    failures = [error for _, error in logger.failures]
    print(
        f"\ncut from PostgreSQL {CUT_FROM_DB_S} s: {len(in_cut)} writes acknowledged during the cut, {len(failures)} errors "
        f"({failures[:1]}); after the link came back: first write in {first:.1f} s, ten in {ten:.1f} s; {len(logged)} in all"
    )
    history = [(m.step, m.value) for m in mlflow_client.get_metric_history(run, "loss")]
    assert len(history) == len(set(history)), "a (step, value) stored twice"
    missing = {(step, value) for step, value, _ in logged} - set(history)
    assert not missing, f"acknowledged but not stored: {sorted(missing)[:5]}"
    with lab.postgres() as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT step, value FROM metrics WHERE run_uuid = %s AND key = 'loss' GROUP BY step, value HAVING count(*) > 1",
            (run,),
        )
        assert cur.fetchall() == [], "duplicate metric rows in PostgreSQL"
    assert mlflow_server.life == life, "the tracking server was restarted"
    assert all("Traceback" not in error for error in failures)


def test_tracking_server_cut_from_s3_refuses_uploads_cleanly_and_registers_nothing_half(
    lab, mlflow_client, served, tmp_path, monkeypatch
):
    experiment = mlflow_client.create_experiment(f"net-s3-{uuid.uuid4().hex[:6]}")
    run = mlflow_client.create_run(experiment).info.run_id
    artifact = tmp_path / "weights.bin"
    artifact.write_bytes(b"\x07" * (2 << 20))
    versions_before = {v.version for v in mlflow_client.search_model_versions(f"name = '{MODEL}'")}
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", str(CLIENT_TIMEOUT_S))
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    with cut(lab, "mlflow", "s3") as link:
        started = time.monotonic()
        with pytest.raises(MlflowException) as upload:
            mlflow_client.log_artifact(run, str(artifact))
        upload_error = time.monotonic() - started
        started = time.monotonic()
        with pytest.raises(MlflowException) as registering:
            train_psystock.train(experiment=f"net-s3-{uuid.uuid4().hex[:6]}", register_as=MODEL, days=200, n_estimators=5)
        log_model_error = time.monotonic() - started
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_TIMEOUT")
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES")
    for error in (upload.value, registering.value):
        assert "Traceback" not in str(error)
    while True:  # uploads work again
        try:
            mlflow_client.log_artifact(run, str(artifact))
            break
        except MlflowException:
            assert time.monotonic() - link.restored < RECOVERY_BOUND_S, "uploads did not work again"
            time.sleep(1)
    recovered = time.monotonic() - link.restored
    print(
        f"\ncut from S3: upload refused after {upload_error:.1f} s (...{str(upload.value)[-90:]}), "
        f"registering log_model after {log_model_error:.1f} s; uploads work again {recovered:.1f} s after the link came back"
    )
    fetched = mlflow.artifacts.download_artifacts(run_id=run, artifact_path=artifact.name, dst_path=str(tmp_path / "back"))
    assert Path(fetched).read_bytes() == artifact.read_bytes()
    versions = mlflow_client.search_model_versions(f"name = '{MODEL}'")
    assert {v.version for v in versions} == versions_before, "a version registered while its files could not be written"
    for version in versions:  # every version in the registry has its files
        uri = f"models:/{MODEL}/{version.version}"
        local = mlflow.artifacts.download_artifacts(uri, dst_path=str(tmp_path / version.version))
        assert (Path(local) / "MLmodel").is_file(), f"version {version.version} has no MLmodel"


def test_model_api_cut_from_the_tracking_server_keeps_serving_and_follows_once_back(lab, mlflow_client, served):
    version, frame, output = served
    run_id, _ = train_psystock.train(experiment=f"net-api-{uuid.uuid4().hex[:6]}", register_as=MODEL, days=200, n_estimators=7)
    newer = registered_version(mlflow_client, run_id)
    poll = lab.settings.int("MODEL_API_POLL_SECONDS")
    with cut(lab, "model-api", "mlflow") as link:
        for _ in range(3):  # before and after the promotion, over more than two polls
            assert predict(lab, frame) == (200, version, output)
            time.sleep(poll / 2)
        promote.promote(mlflow_client, MODEL, newer, force=True)
        ends = time.monotonic() + 2 * poll
        while time.monotonic() < ends:
            assert predict(lab, frame) == (200, version, output), "the model API changed while it could not see the registry"
            time.sleep(0.5)
    followed = wait_for_version(lab, newer, frame, FOLLOW_BOUND_S)
    print(f"\nmodel API cut from the tracking server: served version {newer} {followed:.1f} s after the link came back")
    expected = mlflow.pyfunc.load_model(f"models:/{MODEL}/{newer}").predict(frame)
    np.testing.assert_allclose(predict(lab, frame)[2], np.asarray(expected, dtype="float64").reshape(-1), rtol=1e-6)
    assert time.monotonic() - link.restored < FOLLOW_BOUND_S + 30


def test_200_ms_between_nginx_and_the_tracking_server_ui_and_clients_still_work(lab, mlflow_client, tmp_path):
    artifact = tmp_path / "report.txt"
    artifact.write_text("slow link\n" * 1000)
    session, timings = lab.session(), {}
    with latency(lab, "nginx", "mlflow", lab.settings.int("MLFLOW_PORT"), LATENCY_S) as relayed:

        def timed(what: str, call):
            started = time.monotonic()
            result = call()
            timings[what] = time.monotonic() - started
            return result

        page = timed("GET /", lambda: session.get(f"{lab.url}/", timeout=60))
        assert page.status_code == 200 and "<html" in page.text.lower()
        static = re.search(r'(?:src|href)="\.?/?(static-files/[^"]+\.js)"', page.text)
        assert static, "no static file named in the UI page"
        script = timed("static file", lambda: session.get(f"{lab.url}/{static.group(1)}", timeout=60))
        assert script.status_code == 200 and len(script.content) > 1000
        experiment = timed("create experiment", lambda: mlflow_client.create_experiment(f"net-slow-{uuid.uuid4().hex[:6]}"))
        run = timed("create run", lambda: mlflow_client.create_run(experiment).info.run_id)
        for step in range(5):
            timed("log metric", lambda step=step: mlflow_client.log_metric(run, "loss", 1.0 / (step + 1), step=step))
        timed("upload artifact", lambda: mlflow_client.log_artifact(run, str(artifact)))
        fetched = timed(
            "download artifact",
            lambda: mlflow.artifacts.download_artifacts(run_id=run, artifact_path=artifact.name, dst_path=str(tmp_path / "back")),
        )
    assert Path(fetched).read_text() == artifact.read_text()
    assert [m.step for m in mlflow_client.get_metric_history(run, "loss")] == list(range(5))
    assert relayed, "no connection from nginx went through the slow link"
    print(
        f"\n{LATENCY_S * 1000:.0f} ms nginx -> tracking server ({len(relayed)} connections relayed): "
        + ", ".join(f"{what} {took:.2f} s" for what, took in timings.items())
    )
