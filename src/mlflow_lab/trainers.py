"""The lab's models, each with the module that trains it: the one list of them.

The model API serves these by default (MODEL_API_MODELS), `make train` and `make promote`
take all of them, and `lab-job train <name>` offers each.

GenAI apps are registered by their workflow (`make genai`), not trained: they are in APPS,
not in MODELS, and the model API serves them by default too (SERVED). Serving one costs
memory only once the registry has a version of it (the docs-qa app: ~115 MB in the model
API's process, measured with its embedding model and tokenizer loaded).
"""

from mlflow_lab.genai import APP_MODEL

TRAINERS = {"wine-quality": "mlflow_lab.jobs.train_wine", "psystock": "mlflow_lab.jobs.train_psystock"}
MODELS = tuple(TRAINERS)
APPS = (APP_MODEL,)
SERVED = MODELS + APPS
