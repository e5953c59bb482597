"""The app as an MLflow model, logged from this file ("models from code", what MLflow 3 recommends
over pickling an object): `mlflow.pyfunc.log_model(python_model=<this file>, ...)`.

A PythonModel with type hints, string in and string out: `predict(["question", ...])` gives
one answer per question. MLflow 3.17's ResponsesAgent (its recommendation for chat agents,
ChatModel being deprecated) takes and returns OpenAI Responses objects, which MLServer's MLflow
runtime, the lab's model API, does not decode; a list of strings goes through its
/invocations (`{"inputs": ["..."]}`) and V2 endpoints as any model's input does.

The index comes as an artifact, the prompt's template and URI in the model config: the served
app needs neither the documents nor the prompt registry.
"""

from pathlib import Path

from mlflow.models import set_model
from mlflow.pyfunc import PythonModel

INDEX_ARTIFACT = "index"


class DocsQAModel(PythonModel):
    def load_context(self, context) -> None:
        from mlflow_lab.genai.app import DocsQA
        from mlflow_lab.genai.generate import Llm
        from mlflow_lab.genai.index import Index

        config = context.model_config
        self.app = DocsQA(
            Index.load(Path(context.artifacts[INDEX_ARTIFACT])), config["prompt_template"], config["prompt_uri"], Llm.from_env()
        )

    def predict(self, context, model_input: list[str], params: dict | None = None) -> list[str]:
        return [self.app.answer(question) for question in model_input]


set_model(DocsQAModel())
