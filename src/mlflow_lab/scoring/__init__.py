"""Batch-scoring building blocks: chunked table I/O checked against a model signature."""

# Model metadata `task` value of a binary classifier whose pyfunc returns P(class 1):
# batch scoring then writes `probability` and a 0/1 `decision`.
CLASSIFIER_TASK = "binary-classification"
