"""Batch scoring through MLflow Projects' Kubernetes backend (jobs/kubernetes): MLflow's own
`mlflow run` code turns the lab's project, backend config and Job template into the Job it
would create, as `mlflow run jobs/kubernetes --backend kubernetes --backend-config
jobs/kubernetes/kubernetes_config.json --build-image` does from the checkout. No cluster or
registry here: the image build and push are faked, and so is the Kubernetes API server, at the
wire (urllib3). In between all is real: MLflow's code and the Kubernetes client it calls, which
reads a kubeconfig, sends the Job as JSON and parses the reply into a V1Job. The Job validates
against the Kubernetes schemas and runs the lab's scoring job with the lab's image, as the
scoring account, in the batch-scoring CronJob's pod."""

from __future__ import annotations

import json
import re
import tempfile
import types
from pathlib import Path
from urllib.parse import urlsplit

import kubernetes
import mlflow
import pytest
import urllib3
import yaml
from kubernetes.config import kube_config
from mlflow.projects import docker as project_docker
from mlflow.projects import kubernetes as backend
from mlflow.tracking._tracking_service import utils as tracking_utils

from mlflow_lab.deploy import k8s
from mlflow_lab.settings import REPO_ROOT
from tests.static.api_types import problems
from tests.static.test_k8s import assert_hardened, compose_images, lab_settings, pod_spec

PROJECT = Path("jobs/kubernetes")  # as the README runs it: from the checkout
CONFIG = PROJECT / "kubernetes_config.json"
DIGEST = "sha256:" + "0" * 64
IN_CLUSTER = "http://nginx:8080"
INPUT = "runs:/0123456789abcdef0123456789abcdef/inputs/psystock-input.csv"
MODEL = "models:/psystock/Production"
SECRET_NAMES = re.compile(r"PASSWORD|SECRET|TOKEN|ACCESS_KEY")
CLUSTER = "https://kubernetes.invalid:6443"  # .invalid never resolves: nothing can leave the machine
JOBS_PATH = re.compile(r"/apis/batch/v1/namespaces/(?P<namespace>[^/]+)/jobs")


def kubeconfig(path: Path) -> Path:
    """A kubeconfig as `kubectl` writes it, its current context on the fake cluster."""
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "lab", "cluster": {"server": CLUSTER}}],
                "users": [{"name": "lab", "user": {}}],
                "contexts": [{"name": "lab", "context": {"cluster": "lab", "user": "lab"}}],
                "current-context": "lab",
            }
        )
    )
    return path


def fake_api_server(requests: list[tuple[str, str, dict | None]]):
    """urllib3's request for the fake cluster: keeps (method, URL, JSON body) and answers as an API
    server does a created Job (201, the Job back); other hosts go to the real urllib3."""
    real_request = urllib3.PoolManager.request

    def request(self, method, url, body=None, *args, **kwargs):
        if not url.startswith(CLUSTER):
            return real_request(self, method, url, body, *args, **kwargs)
        sent = json.loads(body) if body else None
        requests.append((method, url, sent))
        created = JOBS_PATH.fullmatch(urlsplit(url).path) and method == "POST"
        status, reply = (201, {**sent, "status": {}}) if created else (404, {"kind": "Status", "code": 404})
        return urllib3.HTTPResponse(body=json.dumps(reply).encode(), status=status, headers={"Content-Type": "application/json"})

    return request


def submit(tracking_uri: str, config: Path = CONFIG, kube_tracking_uri: str | None = IN_CLUSTER) -> dict:
    """Run MLflow's `mlflow run` for the project; what it built and the Job it would create."""
    requests: list[tuple[str, str, dict | None]] = []
    built: dict = {}

    def build_docker_image(work_dir, repository_uri, base_image, run_id, build_image, docker_auth):
        built.update(work_dir=work_dir, repository_uri=repository_uri, base_image=base_image, build_image=build_image)
        return types.SimpleNamespace(tags=[project_docker._get_docker_image_uri(repository_uri, work_dir)])

    with pytest.MonkeyPatch.context() as patch, tempfile.TemporaryDirectory() as home:
        # Where MLflow's load_kube_config() looks when no kube-context is configured (~/.kube/config);
        # it also sets the client's process-wide default configuration, restored afterwards.
        patch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(kubeconfig(Path(home) / "config")))
        patch.setattr(kubernetes.client.Configuration, "_default", None)
        patch.setattr(urllib3.PoolManager, "request", fake_api_server(requests))
        patch.setattr(backend, "push_image_to_registry", lambda tag: DIGEST)
        patch.setattr(project_docker, "build_docker_image", build_docker_image)
        patch.setattr(project_docker, "validate_docker_installation", lambda: None)
        patch.setattr(tracking_utils, "_tracking_uri", tracking_uri)
        if kube_tracking_uri:
            patch.setenv("KUBE_MLFLOW_TRACKING_URI", kube_tracking_uri)
        else:
            patch.delenv("KUBE_MLFLOW_TRACKING_URI", raising=False)
        patch.chdir(REPO_ROOT)
        run = mlflow.projects.run(
            str(PROJECT),
            entry_point="main",
            parameters={"input": INPUT, "model_uri": MODEL},
            experiment_name="batch-scoring",
            backend="kubernetes",
            backend_config=str(config),
            build_image=True,
            synchronous=False,
        )
        experiment_id = mlflow.tracking.MlflowClient().get_run(run.run_id).info.experiment_id
    [(method, url, job)] = requests  # one call to the cluster: the Job's creation
    assert method == "POST" and url.startswith(CLUSTER), url
    namespace = JOBS_PATH.fullmatch(urlsplit(url).path)["namespace"]
    return {"run_id": run.run_id, "experiment_id": experiment_id, "built": built, "namespace": namespace, "job": job}


@pytest.fixture(scope="module")
def tracking_uri(tmp_path_factory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('tracking') / 'mlflow.db'}"


@pytest.fixture(scope="module")
def submitted(tracking_uri) -> dict:
    return submit(tracking_uri)


@pytest.fixture(scope="module")
def cronjob() -> dict:
    objects = k8s.render(lab_settings(), "all-in-one")
    return next(o for o in objects if o["kind"] == "CronJob" and o["metadata"]["name"] == "batch-score")


def env_of(container: dict) -> dict[str, dict]:
    names = [item["name"] for item in container["env"]]
    assert len(names) == len(set(names)), f"a variable set twice (the last one wins): {names}"
    return {item["name"]: item for item in container["env"]}


def secrets_in_the_open(container: dict) -> list[str]:
    """Variables named like a secret whose value is written in the object, not read from a Secret."""
    return [item["name"] for item in container["env"] if SECRET_NAMES.search(item["name"]) and "valueFrom" not in item]


def test_the_job_validates_and_runs_the_scoring_job_in_the_image_mlflow_built(submitted):
    job = submitted["job"]
    assert problems(job) == []
    assert submitted["namespace"] == job["metadata"]["namespace"] == "mlflow-lab"
    # Job names carry a timestamp after the project's name and must stay a DNS label.
    assert re.fullmatch(r"batch-score-[0-9-]+", job["metadata"]["name"]) and len(job["metadata"]["name"]) <= 63
    [container] = job["spec"]["template"]["spec"]["containers"]
    assert container["name"] == "batch-score"
    assert container["command"] == ["lab-job", "score", INPUT, "--model-uri", MODEL, "--output", "/tmp/predictions.csv"]

    # Built FROM the lab's jobs image (Compose's, tagged as components/images tags it), with
    # this folder added, pushed to the config's repository and pinned by digest.
    built = submitted["built"]
    repository = json.loads((REPO_ROOT / CONFIG).read_text())["repository-uri"]
    assert built["build_image"] is True and Path(built["work_dir"]) == REPO_ROOT / PROJECT
    assert built["base_image"].startswith("mlflow-lab/jobs:") and built["base_image"] in compose_images()
    assert built["repository_uri"] == repository
    assert container["image"].startswith(f"{repository}:") and container["image"].endswith(f"@{DIGEST}")


def test_the_job_logs_into_the_submitted_run_as_the_scoring_account(submitted, cronjob):
    [container] = submitted["job"]["spec"]["template"]["spec"]["containers"]
    env = env_of(container)
    assert env["MLFLOW_RUN_ID"]["value"] == submitted["run_id"]
    assert env["MLFLOW_EXPERIMENT_ID"]["value"] == submitted["experiment_id"]
    assert env["MLFLOW_TRACKING_URI"]["value"] == IN_CLUSTER  # KUBE_MLFLOW_TRACKING_URI, not the submitter's
    [cron_container] = pod_spec(cronjob)["containers"]
    cron_env = env_of(cron_container)
    for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        assert env[name] == cron_env[name], name
        assert env[name]["valueFrom"]["secretKeyRef"]["name"] == "batch-scoring-account"
    assert secrets_in_the_open(container) == []


def test_the_pod_is_the_batch_scoring_cronjobs(submitted, cronjob):
    """The template repeats the CronJob's pod (its account, hardening and bounds): they agree."""
    spec = submitted["job"]["spec"]["template"]["spec"]
    cron_spec = pod_spec(cronjob)
    [container], [cron_container] = spec["containers"], cron_spec["containers"]
    assert_hardened(spec, container, "job-template.yaml")
    for key in ("restartPolicy", "automountServiceAccountToken", "securityContext", "volumes"):
        assert spec[key] == cron_spec[key], key
    for key in ("resources", "securityContext", "volumeMounts"):
        assert container[key] == cron_container[key], key
    env, cron_env = env_of(container), env_of(cron_container)
    assert {name: env[name] for name in ("HOME", "MPLCONFIGDIR")} == {name: cron_env[name] for name in ("HOME", "MPLCONFIGDIR")}


def test_without_kube_tracking_uri_the_job_would_call_the_submitters_uri(tracking_uri):
    """Why the README sets KUBE_MLFLOW_TRACKING_URI: MLflow appends the submitter's tracking URI
    after the template's variables, so the template cannot set it."""
    [container] = submit(tracking_uri, kube_tracking_uri=None)["job"]["spec"]["template"]["spec"]["containers"]
    assert env_of(container)["MLFLOW_TRACKING_URI"]["value"] == tracking_uri


def test_a_broken_template_fails_the_checks(tracking_uri, tmp_path):
    template = yaml.safe_load((REPO_ROOT / PROJECT / "job-template.yaml").read_text())
    pod = template["spec"]["template"]["spec"]
    pod["restartPolicies"] = pod.pop("restartPolicy")
    pod["containers"][0]["env"].append({"name": "AWS_SECRET_ACCESS_KEY", "value": "in-the-template"})
    (tmp_path / "job-template.yaml").write_text(yaml.safe_dump(template))
    config = json.loads((REPO_ROOT / CONFIG).read_text())
    (tmp_path / "kubernetes_config.json").write_text(
        json.dumps({**config, "kube-job-template-path": str(tmp_path / "job-template.yaml")})
    )
    job = submit(tracking_uri, config=tmp_path / "kubernetes_config.json")["job"]
    assert any("restartPolicies" in problem for problem in problems(job)), problems(job)
    assert secrets_in_the_open(job["spec"]["template"]["spec"]["containers"][0]) == ["AWS_SECRET_ACCESS_KEY"]
