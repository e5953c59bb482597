"""The workflow's steps against a lab (or any MLflow server): prompt, build, log and register,
evaluate, promote, ask the served app. Each step prints what it did and where to see it."""

from __future__ import annotations

import importlib.metadata
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import mlflow
import requests
from mlflow import MlflowClient

from mlflow_lab.errors import LabError
from mlflow_lab.genai import APP_MODEL, EXPERIMENT, PROMPT, PROMPT_ALIAS, corpus, embedding, evaluation, prompt, served
from mlflow_lab.genai.app import DocsQA
from mlflow_lab.genai.generate import Llm
from mlflow_lab.genai.index import Index
from mlflow_lab.jobs import promote as promote_job
from mlflow_lab.jobs.runs import job_runs

SAMPLE_QUESTION = "How do I promote a new model version to Production?"
# What the logged model needs beyond the lab's package (which the model API's image has).
REQUIREMENTS = ("mlflow", "wordllama", "tokenizers", "safetensors", "toml", "numpy")


@dataclass(frozen=True)
class Built:
    run_id: str
    model_id: str
    version: str
    prompt_uri: str
    metrics: dict[str, float]


def build_app(docs: Path, llm: Llm | None) -> DocsQA:
    """The prompt from the registry (registered if missing) and the index of `docs`."""
    version = prompt.ensure(PROMPT, PROMPT_ALIAS)
    return DocsQA(Index.build(corpus.load(docs)), version.template, f"prompts:/{version.name}/{version.version}", llm)


def log_register_evaluate(app: DocsQA, say: Callable[[str], None]) -> Built:
    """One run: the app logged as a model and registered as APP_MODEL, then evaluated (traces
    linked to the logged model, scorer means as the run's metrics)."""
    with job_runs(EXPERIMENT) as start_run, start_run("docs-qa") as run, tempfile.TemporaryDirectory() as folder:
        mlflow.log_params(
            {"embedding_model": app.index.model, "passages": len(app.index.passages), "top_k": app.top_k}
            | {"prompt": app.prompt_uri, "generator": app.generator}
        )
        info = mlflow.pyfunc.log_model(
            name="app",
            python_model=served.__file__,
            artifacts={served.INDEX_ARTIFACT: str(app.index.save(Path(folder) / "index"))},
            model_config={"prompt_template": app.template, "prompt_uri": app.prompt_uri},
            prompts=[app.prompt_uri],
            signature=served.SIGNATURE,
            input_example=[SAMPLE_QUESTION],
            pip_requirements=[f"{name}=={importlib.metadata.version(name)}" for name in REQUIREMENTS],
            registered_model_name=APP_MODEL,
        )
        version = str(info.registered_model_version)
        say(f"logged model {info.model_id} in run {run.info.run_id}; registered {APP_MODEL} version {version}")
        result = evaluation.evaluate(app.answer, model_id=info.model_id)
        say("evaluation: " + "  ".join(f"{k}={v:.2f}" for k, v in sorted(result.metrics.items())))
    promote_job.declare_promotion_metric(MlflowClient(), APP_MODEL, evaluation.PROMOTION_METRIC, higher_is_better=True)
    return Built(run.info.run_id, info.model_id, version, app.prompt_uri, dict(result.metrics))


def served_answer(question: str, wait_for_version: str | None = None, timeout: float = 0) -> tuple[str, str]:
    """(answer, version) from the lab's model API, through nginx with the caller's account:
    POST <MLFLOW_TRACKING_URI>/models/docs-qa/invocations. With `wait_for_version`, retries
    until that version answers or `timeout` seconds passed (the API follows the registry
    every MODEL_API_POLL_SECONDS, then loads the version)."""
    base = os.environ.get("MLFLOW_TRACKING_URI", "")
    if not base.startswith("http"):
        raise LabError('MLFLOW_TRACKING_URI names no HTTP server: eval "$(make -s env)" sets the lab\'s.')
    auth = (os.environ.get("MLFLOW_TRACKING_USERNAME", ""), os.environ.get("MLFLOW_TRACKING_PASSWORD", ""))
    url = f"{base.rstrip('/')}/models/{APP_MODEL}/invocations"
    deadline, hint = time.monotonic() + timeout, ""
    while True:
        try:
            response = requests.post(url, json={"inputs": [question]}, auth=auth, timeout=60)
        except requests.RequestException as exc:
            problem = str(exc)
        else:
            version = response.headers.get("X-Model-Version", "")
            if response.ok and wait_for_version in (None, version):
                return _prediction(response.json()), version
            problem = f"version {version} answers, not {wait_for_version} yet" if response.ok else response.text[:300]
            if response.status_code == 404:
                hint = f" Is {APP_MODEL} in MODEL_API_MODELS (.env)? The model API serves only the models it names."
        if time.monotonic() >= deadline:
            raise LabError(f"the model API did not answer at {url}: {problem}.{hint}")
        time.sleep(1)


def _prediction(body) -> str:
    predictions = body.get("predictions", body) if isinstance(body, dict) else body
    if isinstance(predictions, list) and predictions and isinstance(predictions[0], str):
        return predictions[0]
    raise LabError(f"the model API answered in an unexpected form: {str(body)[:300]}")


def run(docs: Path, question: str, wait_s: float, say: Callable[[str], None] = print) -> Built:
    """Every step, in order; the served app answers `question` at the end."""
    mlflow.set_experiment(EXPERIMENT)
    llm = Llm.from_env()
    say(f"1/5 prompt: loading prompts:/{PROMPT}@{PROMPT_ALIAS} (registered if missing)")
    app = build_app(docs, llm)
    say(f"    {app.prompt_uri}; {len(app.index.passages)} passages of {docs} embedded with {embedding.MODEL}")
    say(f"2/5 a traced call ({app.generator}): {SAMPLE_QUESTION}")
    say("    " + app.answer(SAMPLE_QUESTION).replace("\n", "\n    "))
    say(f"3/5 log, register and evaluate (experiment {EXPERIMENT!r})")
    built = log_register_evaluate(app, say)
    decision = promote_job.promote(MlflowClient(), APP_MODEL, built.version)
    say(f"4/5 promote: {APP_MODEL} v{decision.version} {'promoted' if decision.promoted else 'unchanged'} ({decision.reason})")
    serving = built.version if decision.promoted else decision.champion_version
    say(f"5/5 the model API (version {serving}): {question}")
    answer, version = served_answer(question, serving, wait_s)
    say(f"    [v{version}] " + answer.replace("\n", "\n    "))
    return built
