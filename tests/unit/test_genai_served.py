"""The app as a logged model, loaded by the model API's MLServer runtime in this process: every
request form the lab's model API takes gives one answer per question, and a bad question is one
sentence (the stack test asks the served app through nginx)."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pandas as pd
import pytest
from mlserver.errors import InferenceError
from mlserver.settings import ModelParameters, ModelSettings
from mlserver.types import InferenceRequest

from mlflow_lab.errors import LabError
from mlflow_lab.genai import corpus, prompt, served
from mlflow_lab.genai.index import Index
from mlflow_lab.stack.model_api.runtime import LabMLflowRuntime

DOCS = {
    "operations.md": "## Restoring\n\nRun make restore with the archive on a running lab. It refuses a lab with runs.",
    "teams.md": "## A workshop\n\nAdd accounts for attendees with make users. Each gets a password once.",
}


@pytest.fixture(scope="module")
def runtime(tmp_path_factory):
    """The app saved and loaded by the runtime; its traces go to a throwaway store (not MLflow's
    default ./mlflow.db and ./mlruns)."""
    import mlflow

    folder = tmp_path_factory.mktemp("app")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        mlflow.set_tracking_uri(f"sqlite:///{folder}/mlflow.db")
        yield _loaded(folder)
    mlflow.set_tracking_uri(None)


def _loaded(folder) -> LabMLflowRuntime:
    import mlflow

    index = Index.build([p for name, text in DOCS.items() for p in corpus.split_markdown(name, text)])
    mlflow.pyfunc.save_model(
        str(folder / "model"),
        python_model=served.__file__,
        artifacts={served.INDEX_ARTIFACT: str(index.save(folder / "index"))},
        model_config={"prompt_template": prompt.DEFAULT_TEMPLATE, "prompt_uri": "prompts:/p/1"},
        signature=served.SIGNATURE,
    )
    parameters = ModelParameters(uri=str(folder / "model"))
    model = LabMLflowRuntime(ModelSettings(name="docs-qa", implementation=LabMLflowRuntime, parameters=parameters))
    asyncio.run(model.load())
    return model


def invocations(runtime, body: dict) -> list[str]:
    response = asyncio.run(runtime.invocations(json.dumps(body), "application/json"))
    assert response.status_code == 200
    return json.loads(response.body)["predictions"]


@pytest.mark.parametrize(
    "body",
    [
        {"inputs": ["How do I restore?", "How do I add accounts for attendees?"]},
        {"instances": ["How do I restore?", "How do I add accounts for attendees?"]},
        {"dataframe_split": {"columns": ["question"], "data": [["How do I restore?"], ["How do I add accounts for attendees?"]]}},
        {"dataframe_records": [{"question": "How do I restore?"}, {"question": "How do I add accounts for attendees?"}]},
    ],
)
def test_every_invocations_form_gives_one_answer_per_question(runtime, body):
    restore, accounts = invocations(runtime, body)
    assert "Sources: operations.md#restoring" in restore and "Sources: teams.md#a-workshop" in accounts


def test_v2_bytes_in_bytes_out(runtime):
    request = InferenceRequest(inputs=[{"name": "question", "shape": [1], "datatype": "BYTES", "data": ["How do I restore?"]}])
    [output] = asyncio.run(runtime.predict(request)).outputs
    assert output.datatype == "BYTES"
    assert b"operations.md#restoring" in output.data[0]


def test_a_blank_question_is_one_sentence_in_both_protocols(runtime):
    with pytest.raises(InferenceError, match=r"^a question is a non-empty string\.$"):
        asyncio.run(runtime.invocations(json.dumps({"inputs": [" "]}), "application/json"))
    blank = InferenceRequest(inputs=[{"name": "question", "shape": [1], "datatype": "BYTES", "data": [""]}])
    with pytest.raises(InferenceError, match="a question is a non-empty string"):
        asyncio.run(runtime.predict(blank))


def test_questions_come_from_lists_arrays_and_one_column_frames():
    assert served.questions(["a", b"b"]) == ["a", "b"]
    assert served.questions(np.array(["a", "b"])) == ["a", "b"]
    assert served.questions(pd.DataFrame({"q": ["a"]})) == ["a"]
    with pytest.raises(LabError, match="one column"):
        served.questions(pd.DataFrame({"q": ["a"], "r": ["b"]}))


def test_a_loaded_app_traces_only_where_an_experiment_is_named():
    assert not served.traced_here({})
    assert served.traced_here({"MLFLOW_EXPERIMENT_NAME": "docs-qa"})
    assert served.traced_here({"MLFLOW_EXPERIMENT_ID": "3"})
