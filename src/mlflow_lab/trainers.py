"""The lab's models, each with the module that trains it: the one list of them.

The model API serves these by default (MODEL_API_MODELS), `make train` and `make promote`
take all of them, and `lab-job train <name>` offers each.
"""

TRAINERS = {"wine-quality": "mlflow_lab.jobs.train_wine", "psystock": "mlflow_lab.jobs.train_psystock"}
MODELS = tuple(TRAINERS)
