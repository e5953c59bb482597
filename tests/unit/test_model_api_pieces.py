"""Pieces of the model API and scoring that need no stack: error sentences and model references."""

from pathlib import Path

import pytest
from mlflow.exceptions import MlflowException
from mlflow.pyfunc.scoring_server import _decode_json_input

from mlflow_lab.errors import LabError
from mlflow_lab.scoring.errors import short_reason
from mlflow_lab.settings import ENV_EXAMPLE, Settings, parse_env_file
from mlflow_lab.stack.model_api.config import ApiConfig
from mlflow_lab.trainers import SERVED


def test_schema_errors_keep_the_reason_and_drop_the_data():
    exc = MlflowException(
        "Failed to enforce schema of data '   alcohol\n0   987654.125' with schema "
        "'['alcohol': double (required)]'. Error: Model is missing inputs ['ash']."
    )
    assert short_reason(exc) == "Model is missing inputs ['ash']."


def test_malformed_json_is_named_without_echoing_the_body():
    with pytest.raises(MlflowException) as raised:
        _decode_json_input('{"dataframe_split": 987654.125')
    reason = short_reason(raised.value)
    assert reason.startswith("malformed JSON body:") and "987654.125" not in reason


def config(**overrides) -> ApiConfig:
    # MODEL_API_TRACKING_URI is derived by each runner (compose.yaml, the native runner).
    values = {**parse_env_file(ENV_EXAMPLE), "MODEL_API_TRACKING_URI": "http://mlflow:5001", **overrides}
    return ApiConfig.from_settings(Settings(values), Path("/tmp/repo"))


def test_model_reference_is_a_stage_or_an_alias():
    assert config().model_uri("wine-quality") == "models:/wine-quality/Production"
    assert config(MODEL_API_MODEL_REF="@champion").model_uri("psystock") == "models:/psystock@champion"
    assert config().models == SERVED  # the lab's models and apps, as trainers.py lists them


@pytest.mark.parametrize(
    "overrides, words",
    [
        ({"MODEL_API_WORKERS": "-1"}, r"MODEL_API_WORKERS must be 0 \(inference in the server process\) or more; got -1"),
        ({"MODEL_API_MODELS": ""}, "MODEL_API_MODELS is empty"),
    ],
)
def test_model_api_refuses_settings_it_cannot_honour(overrides, words):
    with pytest.raises(LabError, match=words):
        config(**overrides)


def tensor_schema(*specs):
    import numpy as np
    from mlflow.types import Schema, TensorSpec

    return Schema([TensorSpec(np.dtype(dtype), shape, name) for dtype, shape, name in specs])


def request(*tensors):
    from mlserver.types import InferenceRequest

    return InferenceRequest(
        inputs=[
            {"name": name, "shape": shape, "datatype": datatype, "data": [1.5] * count}
            for name, shape, datatype, count in tensors
        ]
    )


@pytest.mark.parametrize(
    "sent, fitted",
    [
        (("input-0", [13], "FP32", 13), ([1, 13], "FP64")),  # the KServe tutorial: one row, widened
        (("input-0", [2, 13], "FP64", 26), ([2, 13], "FP64")),  # already right
        (("input-0", [13], "INT32", 13), ([1, 13], "FP64")),  # int32 fits exactly in float64
        (("input-0", [13], "INT64", 13), ([1, 13], "INT64")),  # int64 -> float64 may lose digits: left to be refused
        (("input-0", [12], "FP64", 12), ([12], "FP64")),  # wrong length: left to be refused
        (("input-0", [13], "BYTES", 13), ([1, 13], "BYTES")),  # text: left to be refused
    ],
)
def test_v2_tensors_are_fitted_to_a_tensor_signature_only_where_nothing_is_lost(sent, fitted):
    from mlflow_lab.stack.model_api.runtime import fit_tensors

    [tensor] = fit_tensors(request(sent), tensor_schema(("float64", (-1, 13), None))).inputs
    assert (tensor.shape, tensor.datatype) == (list(fitted[0]), fitted[1])


def test_v2_requests_for_column_signatures_are_left_alone():
    from mlflow.types import ColSpec, Schema

    from mlflow_lab.stack.model_api.runtime import fit_tensors

    payload = request(("alcohol", [1], "FP32", 1))
    assert fit_tensors(payload, Schema([ColSpec("double", "alcohol")])) is payload
