"""Feature code shared by training and batch-scoring input."""
