"""The app as an MLflow model, logged from this file ("models from code", what MLflow 3 recommends
over pickling an object): `mlflow.pyfunc.log_model(python_model=<this file>, ...)`.

A PythonModel, string in and string out: `predict(["question", ...])` gives one answer per
question (signature: one string column in, one out), through the model API's /invocations
(`{"inputs": ["..."]}`, `dataframe_split`, ...) and V2 (BYTES) as any model's input.
- Not MLflow 3.17's ResponsesAgent (its recommendation for chat agents; ChatModel is
  deprecated): it takes and returns OpenAI Responses objects, which MLServer's MLflow runtime,
  the lab's model API, does not decode.
- Not declared with `list[str]` type hints (MLflow 3's way for a new pyfunc): that runtime
  (1.7.1) decodes `{"inputs": [...]}` into a numpy array, which the hint refuses ("Expected
  list, but got ndarray"). So predict() takes what each protocol gives: a list, an array or a
  one-column frame.

The loaded app traces its calls only where the environment names their experiment
(MLFLOW_EXPERIMENT_NAME or MLFLOW_EXPERIMENT_ID; `lab-job genai ask --local` does). The lab's
model API names none, and its account is a viewer: tracing every request there would only log
a refused export per request.

The index comes as an artifact, the prompt's template and URI in the model config: the served
app needs neither the documents nor the prompt registry.
"""

import os
from pathlib import Path

import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature, set_model
from mlflow.pyfunc import PythonModel
from mlflow.types import ColSpec, Schema

from mlflow_lab.errors import LabError

INDEX_ARTIFACT = "index"
SIGNATURE = ModelSignature(inputs=Schema([ColSpec("string")]), outputs=Schema([ColSpec("string")]))


class DocsQAModel(PythonModel):
    def load_context(self, context) -> None:
        from mlflow_lab.genai.app import DocsQA
        from mlflow_lab.genai.generate import Llm
        from mlflow_lab.genai.index import Index

        config = context.model_config
        self.app = DocsQA(
            Index.load(Path(context.artifacts[INDEX_ARTIFACT])),
            config["prompt_template"],
            config["prompt_uri"],
            Llm.from_env(),
            traced=traced_here(),
        )

    def predict(self, context, model_input, params: dict | None = None):
        try:
            return [self.app.answer(question) for question in questions(model_input)]
        except LabError as exc:  # bad input: MLflow's scoring code passes its own exception's message on (a 400)
            raise MlflowException.invalid_parameter_value(str(exc)) from None


def traced_here(environ=os.environ) -> bool:
    """Whether the loaded app traces its calls: where the environment names their experiment."""
    return bool(environ.get("MLFLOW_EXPERIMENT_NAME") or environ.get("MLFLOW_EXPERIMENT_ID"))


def questions(model_input) -> list:
    """The questions, from a list, a numpy array or a one-column DataFrame (what MLflow's and
    MLServer's decoders make of the request)."""
    if isinstance(model_input, pd.DataFrame):
        if len(model_input.columns) != 1:
            raise LabError(f"one column of questions is expected; got {len(model_input.columns)} columns.")
        model_input = model_input.iloc[:, 0]
    values = model_input.tolist() if hasattr(model_input, "tolist") else list(model_input)
    return [v.decode() if isinstance(v, bytes) else v for v in values]


set_model(DocsQAModel())
