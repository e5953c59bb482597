"""The model API: MLServer serving what the registry says is in Production, following promotions.

config.py           settings from .env
runtime.py          the MLflow runtime with clean 4xx errors, a per-model /invocations route,
                    the registry version in every answer, and a warm-up before ready
follower.py         polls the registry and swaps versions without a failed request
mlserver_server.py  MODEL_SERVER=mlserver: MLServer with the lab's error handlers, batching and metrics
mlflow_server.py    MODEL_SERVER=mlflow: MLflow's own scoring server, for comparison and as a fallback
__main__.py         the entrypoint: `python -m mlflow_lab.stack.model_api`
"""
