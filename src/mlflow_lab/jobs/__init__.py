"""Model lifecycle jobs (train, promote): plain CLIs that work against any MLflow server."""
