"""Request bodies the model-serving tests send."""

from __future__ import annotations

import pandas as pd


def v2_body(frame: pd.DataFrame) -> dict:
    """A V2 inference request: one named tensor per column, typed as the column is."""
    datatypes = {"float64": "FP64", "int64": "INT64"}
    return {
        "inputs": [
            {
                "name": column,
                "shape": [len(frame)],
                "datatype": datatypes[str(frame[column].dtype)],
                "data": frame[column].tolist(),
            }
            for column in frame.columns
        ]
    }
