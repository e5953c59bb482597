"""`make genai` against the lab: the docs question-answering app's prompt, traces, evaluation,
model, promotion and serving, each read back through nginx with the lab's credentials.

The workflow runs once (the module's fixture, as `make genai` runs it: `lab job genai run`);
the tests check what it left in the lab and what the model API answers.
"""

from __future__ import annotations

import uuid

import mlflow
import pytest

from mlflow_lab.errors import LabError
from mlflow_lab.genai import APP_MODEL, EXPERIMENT, PROMPT, PROMPT_ALIAS, evaluation, prompt
from mlflow_lab.testing.stacks import lab_cli

pytestmark = pytest.mark.stack
QUESTION = "How do I restore a backup?"
SCORERS = {s.name for s in evaluation.SCORERS}


@pytest.fixture(scope="module")
def workflow(lab, mlflow_client):
    """`lab job genai run` (what `make genai` runs); its output, and the version it registered."""
    assert APP_MODEL in lab.settings["MODEL_API_MODELS"].split(), "the test lab's model API must serve the app"
    result = lab_cli(lab.cli_env, "job", "genai", "run", "--question", QUESTION, "--wait", "90")
    versions = mlflow_client.search_model_versions(f"name='{APP_MODEL}'")
    newest = max(versions, key=lambda v: int(v.version))
    return result.stdout, newest, mlflow_client


def test_every_step_reports_and_the_served_app_answers(workflow):
    out, version, _ = workflow
    for step in ("1/5 prompt", "2/5 a traced call", "3/5 log, register and evaluate", "4/5 promote", "5/5 the model API"):
        assert step in out
    assert f"registered {APP_MODEL} version {version.version}" in out
    assert "Sources: operations.md#" in out  # the served answer to QUESTION cites the backup doc


def test_the_prompt_comes_from_the_registry_by_alias(workflow):
    _, version, _ = workflow
    loaded = mlflow.genai.load_prompt(f"prompts:/{PROMPT}@{PROMPT_ALIAS}", link_to_model=False)
    assert loaded.variables >= prompt.VARIABLES
    model = mlflow.pyfunc.load_model(f"models:/{APP_MODEL}/{version.version}")
    assert model.model_config["prompt_uri"] == f"prompts:/{PROMPT}/{loaded.version}"
    assert model.model_config["prompt_template"] == loaded.template


def test_calls_are_traced_with_their_retrieval_and_prompt(workflow):
    _, version, client = workflow
    experiment = client.get_experiment_by_name(EXPERIMENT)
    traces = mlflow.search_traces(locations=[experiment.experiment_id], return_type="list", max_results=50)
    app_traces = [t for t in traces if t.info.tags.get("mlflow_lab.prompt")]
    assert app_traces, "no trace of the app in its experiment"
    trace = mlflow.get_trace(app_traces[0].info.trace_id)
    spans = {span.name: span for span in trace.data.spans}
    assert {"docs-qa", "retrieve", "render-prompt", "extractive-answer"} <= set(spans)
    assert spans["retrieve"].span_type == "RETRIEVER"
    documents = spans["retrieve"].outputs
    assert len(documents) == 3 and all(d["metadata"]["source"].partition("#")[0].endswith(".md") for d in documents)
    assert "{{" not in spans["render-prompt"].outputs  # the template, filled in
    assert trace.info.tags["mlflow_lab.generator"] == "extractive"
    assert "Sources:" in spans["docs-qa"].outputs


def test_evaluation_scores_every_question_as_assessments_and_run_metrics(workflow):
    _, version, client = workflow
    run = client.get_run(version.run_id)  # the registered version's run holds the evaluation
    for name in SCORERS:
        assert f"{name}/mean" in run.data.metrics
    assert run.data.metrics[evaluation.PROMOTION_METRIC] >= 0.8
    experiment_id = client.get_run(version.run_id).info.experiment_id
    traces = mlflow.search_traces(locations=[experiment_id], run_id=version.run_id, return_type="list", max_results=50)
    scored = [t for t in traces if {a.name for a in t.info.assessments} >= SCORERS]
    assert len(scored) == len(evaluation.DATASET)
    feedback = next(a for a in scored[0].info.assessments if a.name == "answer_length")
    assert "characters" in feedback.rationale


def test_the_app_is_a_registered_logged_model_in_production(workflow):
    _, version, client = workflow
    production = client.get_model_version_by_alias(APP_MODEL, "champion")
    assert client.get_model_version(APP_MODEL, production.version).current_stage == "Production"
    logged = mlflow.get_logged_model(version.source.removeprefix("models:/"))  # the version's source is its logged model
    assert logged.source_run_id == version.run_id
    assert client.get_registered_model(APP_MODEL).tags["promotion.metric"] == evaluation.PROMOTION_METRIC


def test_served_app_answers_through_nginx_in_both_protocols(lab, workflow):
    _, _, client = workflow
    production = client.get_model_version_by_alias(APP_MODEL, "champion").version
    session = lab.session()
    response = session.post(f"{lab.url}/models/{APP_MODEL}/invocations", json={"inputs": [QUESTION, "How do I add users?"]})
    assert response.status_code == 200, response.text
    assert response.headers["X-Model-Version"] == production
    answers = response.json()["predictions"]
    assert len(answers) == 2 and "operations.md" in answers[0] and "teams.md" in answers[1]
    in_process = mlflow.pyfunc.load_model(f"models:/{APP_MODEL}/{production}").predict([QUESTION])
    assert answers[0] == in_process[0]  # the same app, served: a deterministic answer

    v2 = session.post(
        f"{lab.url}/v2/models/{APP_MODEL}/infer",
        json={"inputs": [{"name": "input", "shape": [1], "datatype": "BYTES", "data": [QUESTION]}]},
    )
    assert v2.status_code == 200, v2.text
    assert v2.json()["outputs"][0]["data"] == [answers[0]]

    if lab.stack is not None:  # the served app traces nothing where no experiment is named for it
        assert "Failed to send trace" not in lab.log_tail("model-api", 200)

    unauthenticated = lab.session(auth=False).post(f"{lab.url}/models/{APP_MODEL}/invocations", json={"inputs": [QUESTION]})
    assert unauthenticated.status_code == 401


def test_an_empty_question_is_a_clear_client_error(lab, workflow):
    response = lab.session().post(f"{lab.url}/models/{APP_MODEL}/invocations", json={"inputs": [" "]})
    assert response.status_code == 400
    assert "a question is a non-empty string" in response.text


def test_a_prompt_missing_a_variable_is_refused_before_use(workflow):
    mlflow.set_experiment(EXPERIMENT)  # where the client records the prompt's use
    name = f"docs-qa-broken-{uuid.uuid4().hex[:6]}"
    broken = mlflow.genai.register_prompt(name, "Answer {{question}} without any context.")
    mlflow.genai.set_prompt_alias(name, PROMPT_ALIAS, broken.version)
    with pytest.raises(LabError, match=r"lacks the variable\(s\) \{\{context\}\}"):
        prompt.ensure(name, PROMPT_ALIAS)
    assert mlflow.genai.load_prompt(f"prompts:/{name}@latest", link_to_model=False).version == broken.version
