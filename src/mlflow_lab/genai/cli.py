"""`lab-job genai`: the GenAI workflow's commands (docs/genai-workshop.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mlflow_lab.genai import APP_MODEL, corpus, workflow

app = typer.Typer(help="The docs question-answering app: prompt, traces, evaluation, model, serving.", no_args_is_help=True)


@app.command("run")
def run(
    question: Annotated[str, typer.Option(help="What the served app is asked at the end.")] = "How do I restore a backup?",
    docs: Annotated[Path, typer.Option(help="Folder of Markdown documents the app answers from.")] = corpus.DOCS,
    wait: Annotated[float, typer.Option(min=0, help="Seconds to wait for the model API to serve the promoted version.")] = 180,
) -> None:
    """Every step: prompt from the registry, a traced call, log + register + evaluate, promote, ask the model API."""
    workflow.run(docs, question, wait, say=typer.echo)


@app.command("ask")
def ask(
    question: Annotated[str, typer.Argument(help="A question about the lab.")],
    local: Annotated[bool, typer.Option(help=f"Load models:/{APP_MODEL}@champion here instead of asking the model API.")] = False,
) -> None:
    """Ask the app: the model API through nginx (default), or the registered app loaded in this process (traced)."""
    if local:
        import os

        import mlflow

        from mlflow_lab.genai import EXPERIMENT

        os.environ.setdefault("MLFLOW_EXPERIMENT_NAME", EXPERIMENT)  # where the loaded app traces its calls
        typer.echo(mlflow.pyfunc.load_model(f"models:/{APP_MODEL}@champion").predict([question])[0])
        return
    answer, version = workflow.served_answer(question)
    typer.echo(f"[{APP_MODEL} v{version}] {answer}")
