"""GenAI work through the lab, as a developer of an LLM application does it against a remote
MLflow: traces from MLflow's client (async logging) and from OpenTelemetry's own OTLP/HTTP
exporter, large traces through nginx, the prompt registry, an evaluation with code-based
scorers, and bad OTLP input. Everything goes through nginx with the lab's credentials and is
read back with MLflow's client (docs/genai.md)."""

from __future__ import annotations

import base64
import hashlib
import os
import time

import mlflow
import pytest
import requests
from mlflow.entities import AssessmentSource, Feedback, SpanType
from mlflow.exceptions import MlflowException
from mlflow.genai.scorers import ResponseLength, scorer
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Status, StatusCode

from tests.stack.people import Person, add, cli, unique

pytestmark = pytest.mark.stack

OTLP = "/v1/traces"
PROTOBUF = {"Content-Type": "application/x-protobuf"}
BIG_PAYLOAD_CHARS = 5_000_000  # one span input of 5 MB
MANY_SPANS = 2_000  # spans in one trace, the root included


@pytest.fixture(scope="module")
def experiment_id(mlflow_client, lab):
    """A fresh experiment, active for the fluent API, with MLflow's tracing set up the way a
    developer's process has it: async trace logging on (MLflow 3.17.2's name and default)."""
    patch = pytest.MonkeyPatch()
    patch.setenv("MLFLOW_ENABLE_ASYNC_TRACE_LOGGING", "true")
    mlflow.tracing.reset()  # the tracer provider reads the setting and the tracking URI when set up
    experiment = mlflow.set_experiment(unique("test-genai"))
    yield experiment.experiment_id
    mlflow.flush_trace_async_logging()
    patch.undo()
    mlflow.tracing.reset()
    mlflow.set_experiment(experiment_id="0")  # the default experiment, as before this module


def traced(*names: str, attributes: dict | None = None, resource: Resource | None = None):
    """Spans made by OpenTelemetry's SDK, as any instrumented service makes them: one trace whose
    root is `names[0]` and every other name a child of it. A private provider: MLflow's own
    tracer provider is left alone."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=resource or Resource.create({"service.name": "test-genai"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("test-genai")
    with tracer.start_as_current_span(names[0], attributes=attributes) as root:
        for name in names[1:]:
            with tracer.start_as_current_span(name):
                pass
        root.set_status(Status(StatusCode.OK))
    provider.shutdown()
    return memory.get_finished_spans()


def mlflow_trace_id(spans) -> str:
    return f"tr-{spans[0].context.trace_id:032x}"


def otlp_request(*names: str) -> tuple[bytes, str]:
    """An OTLP/HTTP protobuf body, encoded by OpenTelemetry's own encoder, and its MLflow trace id."""
    spans = traced(*names)
    return encode_spans(spans).SerializeToString(), mlflow_trace_id(spans)


def root(trace):
    (span,) = [span for span in trace.data.spans if span.parent_id is None]
    return span


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def stored_rows(lab, trace_id: str) -> tuple[int, int]:
    """(trace rows, span rows) PostgreSQL holds for `trace_id`; (0, 0) is nothing half-written."""
    lab.require_internals()
    with lab.postgres() as connection, connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM trace_info WHERE request_id = %s", (trace_id,))
        traces = cursor.fetchone()[0]
        cursor.execute("SELECT count(*) FROM spans WHERE trace_id = %s", (trace_id,))
        return traces, cursor.fetchone()[0]


# -- MLflow's own tracing ------------------------------------------------------------------


@pytest.fixture(scope="module")
def app_trace(experiment_id):
    """A small RAG-shaped app traced with @mlflow.trace and mlflow.start_span, then a tag set
    and a feedback and an expectation logged on its trace, as a reviewer would."""

    @mlflow.trace(span_type=SpanType.RETRIEVER)
    def retrieve(question: str) -> list[str]:
        return ["nginx gates every path", "traces land in PostgreSQL"]

    @mlflow.trace(name="answer", span_type=SpanType.CHAIN, attributes={"app.version": "1.4"})
    def answer(question: str) -> str:
        documents = retrieve(question)
        with mlflow.start_span(name="render", span_type=SpanType.PARSER) as span:
            span.set_inputs({"documents": documents})
            span.set_attribute("documents.count", len(documents))
            text = f"{question} -> {'; '.join(documents)}"
            span.set_outputs(text)
        mlflow.update_current_trace(tags={"release": "r1"})
        return text

    output = answer("where do traces go?")
    trace_id = mlflow.get_last_active_trace_id()
    mlflow.flush_trace_async_logging()  # async logging: wait until the lab has the trace
    mlflow.set_trace_tag(trace_id, "reviewed", "yes")
    mlflow.log_feedback(
        trace_id=trace_id,
        name="helpful",
        value=True,
        rationale="cites both documents",
        source=AssessmentSource(source_type="HUMAN", source_id="reviewer@lab"),
    )
    mlflow.log_expectation(trace_id=trace_id, name="expected_answer", value=output)
    return trace_id, output


def test_traced_app_reads_back_intact(app_trace, experiment_id):
    trace_id, output = app_trace
    trace = mlflow.get_trace(trace_id)
    assert trace is not None, "the trace never reached the lab (async logging drops failures silently)"
    spans = {span.name: span for span in trace.data.spans}
    assert sorted(spans) == ["answer", "render", "retrieve"]
    root = spans["answer"]
    assert root.parent_id is None
    assert spans["retrieve"].parent_id == root.span_id and spans["render"].parent_id == root.span_id
    assert root.inputs == {"question": "where do traces go?"} and root.outputs == output
    assert root.span_type == "CHAIN" and root.attributes["app.version"] == "1.4"
    assert spans["retrieve"].outputs == ["nginx gates every path", "traces land in PostgreSQL"]
    assert spans["render"].inputs == {"documents": spans["retrieve"].outputs}
    assert spans["render"].attributes["documents.count"] == 2
    assert trace.info.experiment_id == experiment_id and trace.info.state == "OK"
    assert trace.info.tags["release"] == "r1" and trace.info.tags["reviewed"] == "yes"


def test_assessments_read_back(app_trace):
    trace_id, output = app_trace
    assessments = {a.name: a for a in mlflow.get_trace(trace_id).info.assessments}
    assert sorted(assessments) == ["expected_answer", "helpful"]
    feedback, expectation = assessments["helpful"], assessments["expected_answer"]
    assert (type(feedback).__name__, feedback.value, feedback.rationale) == ("Feedback", True, "cites both documents")
    assert (feedback.source.source_type, feedback.source.source_id) == ("HUMAN", "reviewer@lab")
    assert (type(expectation).__name__, expectation.value) == ("Expectation", output)


def test_search_finds_the_trace_by_tag(app_trace, experiment_id):
    trace_id, _ = app_trace
    found = mlflow.search_traces(locations=[experiment_id], filter_string="tag.release = 'r1'", return_type="list")
    assert [t.info.trace_id for t in found] == [trace_id]
    assert [a.name for a in found[0].info.assessments if a.name == "helpful"] == ["helpful"]
    assert mlflow.search_traces(locations=[experiment_id], filter_string="tag.release = 'r0'", return_type="list") == []


# -- OpenTelemetry's own exporter ------------------------------------------------------------


def test_opentelemetry_exporter_lands_as_an_mlflow_trace(lab, mlflow_client, experiment_id):
    """What a service in any language does: OpenTelemetry's OTLP/HTTP exporter, the lab's
    credentials as a header, the experiment in `x-mlflow-experiment-id`."""
    spans = traced(
        "checkout",
        "charge-card",
        attributes={"cart.items": 3, "payment.currency": "EUR", "payment.amount": 42.5},
        resource=Resource.create({"service.name": "billing"}),
    )
    exporter = OTLPSpanExporter(
        endpoint=lab.url + OTLP,
        headers={"Authorization": basic(lab.user, lab.password), "x-mlflow-experiment-id": experiment_id},
        timeout=30,
    )
    assert exporter.export(spans) == SpanExportResult.SUCCESS
    exporter.shutdown()

    trace_id = mlflow_trace_id(spans)
    trace = mlflow_client.get_trace(trace_id)
    stored = {span.name: span for span in trace.data.spans}
    assert sorted(stored) == ["charge-card", "checkout"]
    assert stored["checkout"].parent_id is None and stored["charge-card"].parent_id == stored["checkout"].span_id
    assert stored["checkout"].attributes["payment.currency"] == "EUR"
    assert stored["checkout"].attributes["payment.amount"] == 42.5
    assert stored["checkout"].attributes["cart.items"] == 3
    assert trace.info.experiment_id == experiment_id and trace.info.state == "OK"


def test_otlp_without_credentials_is_refused(lab, experiment_id):
    body, trace_id = otlp_request("anonymous")
    response = requests.post(lab.url + OTLP, data=body, headers={**PROTOBUF, "x-mlflow-experiment-id": experiment_id}, timeout=30)
    assert response.status_code == 401
    assert response.headers.get("WWW-Authenticate", "").startswith("Basic")
    if lab.stack is not None:
        assert stored_rows(lab, trace_id) == (0, 0)


@pytest.fixture(scope="module")
def members(lab) -> tuple[Person, Person]:
    """Two member accounts: one who traces, one from another team."""
    made = add(lab, unique("tracer"), unique("outsider"))
    return tuple(Person(lab, name, password) for name, password in made.items())


def send_as(person: Person, experiment: str, *names: str, workspace: str | None = None) -> tuple[requests.Response, str]:
    body, trace_id = otlp_request(*names)
    headers = {**PROTOBUF, "x-mlflow-experiment-id": experiment, **({"X-MLFLOW-WORKSPACE": workspace} if workspace else {})}
    return person.call("POST", OTLP, data=body, headers=headers), trace_id


def assert_refused(lab, response: requests.Response, trace_id: str, who: Person, experiment: str) -> None:
    assert response.status_code == 403, response.text
    assert response.json() == {
        "error_code": "PERMISSION_DENIED",
        "message": f"Permission denied: {who.name} may not log traces to experiment {experiment}",
    }
    if lab.stack is not None:
        assert stored_rows(lab, trace_id) == (0, 0)


def test_member_sends_to_own_experiment_not_to_anothers(lab, mlflow_client, members, experiment_id):
    """MLflow's auth app decides: a member may send traces to an experiment they made, not to
    the admin's (they may read it, not write to it): 403, and nothing stored."""
    tracer, _ = members
    own = tracer.api("POST", "experiments/create", {"name": unique("member-traces")}).json()["experiment_id"]
    sent, trace_id = send_as(tracer, own, "member-app", "step")
    assert sent.status_code == 200, sent.text
    assert sorted(s.name for s in mlflow_client.get_trace(trace_id).data.spans) == ["member-app", "step"]

    refused, trace_id = send_as(tracer, experiment_id, "intruder")
    assert_refused(lab, refused, trace_id, tracer, experiment_id)


def test_a_team_workspace_keeps_its_traces_to_itself(lab, members):
    """A team's experiment takes its members' traces (X-MLFLOW-WORKSPACE names the workspace);
    a member of another team is refused, naming the workspace or not."""
    tracer, outsider = members
    workspace = unique("team-traces")
    cli(lab, "workspaces", "add", workspace, "--members", tracer.name)
    in_team = {"X-MLFLOW-WORKSPACE": workspace}
    experiment = tracer.api("POST", "experiments/create", {"name": unique("team-exp")}, headers=in_team).json()["experiment_id"]
    sent, trace_id = send_as(tracer, experiment, "team-app", workspace=workspace)
    assert sent.status_code == 200, sent.text
    found = tracer.call("GET", f"/api/3.0/mlflow/traces/{trace_id}", headers=in_team)
    assert found.status_code == 200, found.text
    assert found.json()["trace"]["trace_info"]["trace_location"]["mlflow_experiment"]["experiment_id"] == experiment
    for named in (workspace, None):
        refused, trace_id = send_as(outsider, experiment, "intruder", workspace=named)
        assert_refused(lab, refused, trace_id, outsider, experiment)


# -- Large traces through nginx ----------------------------------------------------------------


def test_span_with_a_5_mb_payload(experiment_id, capsys):
    document = os.urandom(BIG_PAYLOAD_CHARS // 2).hex()  # 5,000,000 characters, incompressible
    started = time.perf_counter()
    with mlflow.start_span(name="summarise-contract") as span:
        span.set_inputs({"document": document})
        span.set_outputs({"summary": "long"})
    trace_id = span.trace_id
    mlflow.flush_trace_async_logging()
    sent = time.perf_counter() - started
    trace = mlflow.get_trace(trace_id)
    read = time.perf_counter() - started - sent
    assert trace is not None, "the 5 MB trace never reached the lab"
    (stored,) = trace.data.spans
    assert len(stored.inputs["document"]) == BIG_PAYLOAD_CHARS
    assert hashlib.sha256(stored.inputs["document"].encode()).digest() == hashlib.sha256(document.encode()).digest()
    assert stored.outputs == {"summary": "long"}
    with capsys.disabled():
        size = len(trace.to_json()) / 1e6
        print(f"\n[genai] 5 MB span: logged and flushed in {sent:.2f} s, read back ({size:.1f} MB) in {read:.2f} s")


def test_trace_with_2000_spans(experiment_id, capsys):
    started = time.perf_counter()
    with mlflow.start_span(name="agent-run") as root:
        for step in range(MANY_SPANS - 1):
            with mlflow.start_span(name=f"tool-{step:04d}") as span:
                span.set_inputs({"step": step})
                span.set_outputs(step * 2)
    mlflow.flush_trace_async_logging()
    sent = time.perf_counter() - started
    trace = mlflow.get_trace(root.trace_id)
    read = time.perf_counter() - started - sent
    assert trace is not None, "the 2,000-span trace never reached the lab"
    spans = trace.data.spans
    assert len(spans) == MANY_SPANS
    children = [s for s in spans if s.name != "agent-run"]
    assert {s.parent_id for s in children} == {root.span_id}
    assert sorted(s.name for s in children) == [f"tool-{step:04d}" for step in range(MANY_SPANS - 1)]
    assert all(s.outputs == s.inputs["step"] * 2 for s in children)
    with capsys.disabled():
        size = len(trace.to_json()) / 1e6
        print(
            f"\n[genai] {MANY_SPANS} spans: made, logged and flushed in {sent:.2f} s, read back ({size:.1f} MB) in {read:.2f} s"
        )


# -- Prompts and evaluation ------------------------------------------------------------------


@pytest.fixture(scope="module")
def prompt_name(experiment_id):
    name = unique("qa-prompt").replace("-", "_")
    mlflow.genai.register_prompt(
        name=name, template="Answer {{question}} from {{context}}.", commit_message="first", tags={"task": "qa"}
    )
    mlflow.genai.register_prompt(name=name, template="Q: {{question}}\nContext: {{context}}\nA:", commit_message="second")
    mlflow.genai.set_prompt_alias(name, alias="production", version=1)
    return name


def test_prompt_versions_and_aliases(prompt_name):
    production = mlflow.genai.load_prompt(f"prompts:/{prompt_name}@production", cache_ttl_seconds=0)
    assert (production.version, production.commit_message) == (1, "first")
    assert production.format(question="Where are traces kept?", context="PostgreSQL") == (
        "Answer Where are traces kept? from PostgreSQL."
    )
    latest = mlflow.genai.load_prompt(f"prompts:/{prompt_name}@latest", cache_ttl_seconds=0)
    assert latest.version == 2 and latest.variables == {"question", "context"}
    assert mlflow.genai.load_prompt(f"prompts:/{prompt_name}/1").template == "Answer {{question}} from {{context}}."

    mlflow.genai.set_prompt_alias(prompt_name, alias="production", version=2)
    moved = mlflow.genai.load_prompt(f"prompts:/{prompt_name}@production", cache_ttl_seconds=0)
    assert moved.version == 2
    assert moved.format(question="q?", context="c") == "Q: q?\nContext: c\nA:"
    mlflow.genai.set_prompt_alias(prompt_name, alias="production", version=1)


def test_prompt_bad_input_is_a_clear_error(prompt_name):
    prompt = mlflow.genai.load_prompt(prompt_name, version=1)
    with pytest.raises(MlflowException, match=r"Missing variables: \{'context'\}"):
        prompt.format(question="q?")
    with pytest.raises(MlflowException) as missing:
        mlflow.genai.load_prompt(f"prompts:/{prompt_name}@no-such-alias", cache_ttl_seconds=0)
    assert missing.value.error_code in {"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"}
    assert "no-such-alias" in missing.value.message


# question, the expected answer, what the app answers, and the scores that answer must get:
# exact match, length within 12 characters, words.
EVALUATION = [
    ("What stores the runs?", "PostgreSQL", "PostgreSQL", (True, "yes", 1)),
    ("What stores the artifacts?", "S3", "S3", (True, "yes", 1)),
    ("What checks the passwords?", "MLflow's auth app", "nginx, then MLflow", (False, "no", 3)),
]


def test_evaluation_with_code_scorers_is_stored_on_traces(experiment_id, prompt_name):
    prompt = mlflow.genai.load_prompt(f"prompts:/{prompt_name}@production", cache_ttl_seconds=0)

    answers = {question: answer for question, _, answer, _ in EVALUATION}

    def predict(question: str) -> str:
        prompt.format(question=question, context="the lab's docs")  # what an LLM would be sent
        return answers[question]

    @scorer
    def exact_match(outputs, expectations) -> bool:
        return outputs == expectations["expected_response"]

    @scorer
    def word_count(outputs) -> Feedback:
        return Feedback(value=len(outputs.split()), rationale="words in the answer")

    data = [{"inputs": {"question": q}, "expectations": {"expected_response": expected}} for q, expected, _, _ in EVALUATION]
    result = mlflow.genai.evaluate(
        data=data, predict_fn=predict, scorers=[exact_match, ResponseLength(max_length=12), word_count]
    )
    assert result.metrics["exact_match/mean"] == pytest.approx(2 / 3)

    traces = mlflow.search_traces(locations=[experiment_id], run_id=result.run_id, return_type="list")
    stored = {}
    for trace in traces:
        assessments = {a.name: a.value for a in trace.info.assessments}
        scores = (assessments.pop("exact_match"), assessments.pop("response_length"), assessments.pop("word_count"))
        stored[root(trace).inputs["question"]] = (assessments, scores)
    assert stored == {q: ({"expected_response": expected}, scores) for q, expected, _, scores in EVALUATION}


# -- Bad OTLP input: 4xx with a clear JSON message, nothing written, the server still up -------


def post_otlp(lab, body: bytes, headers: dict) -> requests.Response:
    return lab.session().post(lab.url + OTLP, data=body, headers=headers, timeout=30)


def assert_clear_refusal(response: requests.Response, *words: str) -> str:
    assert 400 <= response.status_code < 500, (response.status_code, response.text)
    assert response.headers["Content-Type"].startswith("application/json"), response.text
    message = response.json()["message"]
    for word in words:
        assert word.lower() in message.lower(), message
    return message


def assert_still_serving(lab, experiment_id: str) -> None:
    body, trace_id = otlp_request("after-bad-input")
    response = post_otlp(lab, body, {**PROTOBUF, "x-mlflow-experiment-id": experiment_id})
    assert response.status_code == 200, response.text
    if lab.stack is not None:
        assert stored_rows(lab, trace_id)[1] == 1


# Each bad request: the words its refusal must name.
BAD_INPUT = {
    "no experiment header": ["x-mlflow-experiment-id"],
    "a body that is not OTLP": ["OpenTelemetry"],
    "JSON that is not OTLP JSON": ["OpenTelemetry"],
    "an unknown content type": ["Content-Type"],
    "an unknown experiment": ["987654321"],
    "an experiment id that is not one": ["no-such-experiment"],
}


def bad_request(case: str, body: bytes, experiment_id: str) -> tuple[bytes, dict]:
    to = {**PROTOBUF, "x-mlflow-experiment-id": experiment_id}
    return {
        "no experiment header": (body, PROTOBUF),
        "a body that is not OTLP": (b"this is not an OTLP message", to),
        "JSON that is not OTLP JSON": (b"{resourceSpans: [", {**to, "Content-Type": "application/json"}),
        "an unknown content type": (body, {**to, "Content-Type": "text/plain"}),
        "an unknown experiment": (body, {**to, "x-mlflow-experiment-id": "987654321"}),
        "an experiment id that is not one": (body, {**to, "x-mlflow-experiment-id": "no-such-experiment"}),
    }[case]


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_otlp_input_is_refused_cleanly(lab, experiment_id, case):
    body, trace_id = otlp_request(f"bad-{case}")
    response = post_otlp(lab, *bad_request(case, body, experiment_id))
    assert_clear_refusal(response, *BAD_INPUT[case])
    if lab.stack is not None:
        assert stored_rows(lab, trace_id) == (0, 0)
    assert_still_serving(lab, experiment_id)
