"""Model lifecycle jobs (train, promote, score, sample-input): one CLI, `lab-job`, that works against any MLflow server."""
