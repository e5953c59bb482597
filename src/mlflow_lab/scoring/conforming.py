"""Predicting input that already conforms to a model's signature, without enforcing it again.

MLflow's pyfunc `predict` enforces the input schema on every call (~0.75 ms per call here,
more than a sklearn model's own predict of a few rows). The model API's fast path and batch
scoring build their DataFrames from the signature, with exactly its column types and no
missing values: enforcing the schema on such a frame returns the same frame, so for plain
flavors (the estimator's own predict behind the schema check) they call the flavor's
predict directly. Any other input or flavor goes through `PyFuncModel.predict`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from mlflow.pyfunc import PyFuncModel
from mlflow.types import DataType

from mlflow_lab.adapters import mlflow_internals

# Flavors whose pyfunc predict is schema enforcement, then the estimator's own predict.
PLAIN_FLAVORS = ("mlflow.sklearn", "mlflow.xgboost")
# Column types whose enforcement is the identity on a column of exactly this dtype without nulls.
EXACT_DTYPES = {DataType.double: np.dtype("float64"), DataType.long: np.dtype("int64")}


def signature_dtypes(model: PyFuncModel) -> dict[str, np.dtype] | None:
    """Input name -> dtype when every input is a required double or long column; else None."""
    schema = model.metadata.get_input_schema()
    if schema is None or schema.is_tensor_spec() or not schema.has_input_names():
        return None
    dtypes = {}
    for spec in schema.inputs:
        if not spec.required or spec.type not in EXACT_DTYPES:
            return None
        dtypes[spec.name] = EXACT_DTYPES[spec.type]
    return dtypes


def conforming_predictor(model: PyFuncModel) -> Callable[[pd.DataFrame], Any]:
    """predict() for a frame of signature_dtypes' columns, in that order, without missing values."""
    if model.loader_module in PLAIN_FLAVORS and not mlflow_internals.signature_from_type_hints(model):
        return mlflow_internals.flavor_predict(model)
    return model.predict
