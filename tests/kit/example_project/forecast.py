"""The project's own code: fit a line, log it to whatever MLflow the environment names."""

import mlflow


def fit_and_log(xs: list[float], ys: list[float]) -> str:
    n = len(xs)
    mean_x, mean_y = sum(xs) / n, sum(ys) / n
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / sum((x - mean_x) ** 2 for x in xs)
    with mlflow.start_run() as run:
        mlflow.log_param("points", n)
        mlflow.log_metric("slope", slope)
        mlflow.log_dict({"slope": slope, "intercept": mean_y - slope * mean_x}, "line.json")
    return run.info.run_id
