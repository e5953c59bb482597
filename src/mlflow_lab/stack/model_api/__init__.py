"""The model API: MLServer serving what the registry says is in Production, following promotions.

config.py           settings from .env
runtime.py          the MLflow runtime with clean 4xx errors, a per-model /invocations route,
                    the registry version in every answer, and a warm-up before ready
follower.py         polls the registry and swaps versions without a failed request
mlserver_server.py  MODEL_SERVER=mlserver: MLServer with the lab's error handlers, batching and metrics
fast_path.py        MODEL_SERVER=lab (the default): a lean front for the two hot routes, in front of MLServer
mlflow_server.py    MODEL_SERVER=mlflow: MLflow's own scoring server, for comparison and as a fallback
http_errors.py      every server's HTTP errors as the lab's one-line JSON
one_model.py        one model directory, served the way KServe and SageMaker start a model container
__main__.py         the entrypoint: `python -m mlflow_lab.stack.model_api`

MLServer's private names, which runtime, fast_path, mlserver_server and one_model need, are
reached only through mlflow_lab.adapters.mlserver_internals (pinned to the locked version by
tests/unit/test_library_contracts.py).
"""
