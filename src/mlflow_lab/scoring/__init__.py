"""Batch-scoring building blocks: chunked table I/O checked against a model signature."""
