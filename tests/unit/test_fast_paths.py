"""The model API's fast decoding and batch scoring's CSV passthrough, against a real local model:
they must give MLflow's own answers, or step aside (Refused / applies() false) for MLflow to answer."""

from __future__ import annotations

import json

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.models import infer_signature
from sklearn.linear_model import ElasticNet

from mlflow_lab.jobs import batch_score, sample_input, train_wine
from mlflow_lab.scoring import conforming, csv_passthrough
from mlflow_lab.stack.model_api.fast_path import Refused, decode_invocations, decode_v2
from tests.stack.payloads import v2_body


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    x_train, _, y_train, _ = train_wine.load_data(42)
    estimator = ElasticNet(alpha=0.1, random_state=42).fit(x_train, y_train)
    path = tmp_path_factory.mktemp("model") / "wine"
    mlflow.sklearn.save_model(estimator, path, signature=infer_signature(x_train, estimator.predict(x_train)))
    return mlflow.pyfunc.load_model(str(path))


@pytest.fixture(scope="module")
def frame():
    return sample_input.build("wine-quality", rows=7, seed=3)


def test_both_protocols_decode_to_the_signatures_columns(model, frame):
    dtypes = conforming.signature_dtypes(model)
    assert list(dtypes) == list(frame.columns) and set(dtypes.values()) == {np.dtype("float64")}
    split = {"dataframe_split": json.loads(frame.to_json(orient="split", index=False))}
    records = {"dataframe_records": json.loads(frame.to_json(orient="records"))}
    for columns in (decode_v2(v2_body(frame), dtypes), decode_invocations(split, dtypes), decode_invocations(records, dtypes)):
        decoded = pd.DataFrame(columns, columns=list(dtypes))
        pd.testing.assert_frame_equal(decoded, frame)
        np.testing.assert_allclose(conforming.conforming_predictor(model)(decoded), model.predict(frame), rtol=1e-12)


def _v2(frame: pd.DataFrame, **change) -> dict:
    body = v2_body(frame)
    body["inputs"][0].update(change)
    return body


@pytest.mark.parametrize(
    "case, body",
    [
        ("a column the model lacks", lambda f: v2_body(f.assign(colour=1.0))),
        ("FP32 for a double column", lambda f: _v2(f, datatype="FP32")),
        ("text", lambda f: _v2(f, data=["a"] * len(f))),
        ("nulls", lambda f: _v2(f, data=[None] * len(f))),
        ("a shape that is not the data's", lambda f: _v2(f, shape=[len(f), 1])),
        ("nested lists", lambda f: _v2(f, data=[[v] for v in f.iloc[:, 0]])),
        ("parameters", lambda f: {**v2_body(f), "parameters": {"content_type": "pd"}}),
        ("a tensor parameter", lambda f: _v2(f, parameters={"content_type": "np"})),
        ("an id that is not text", lambda f: {**v2_body(f), "id": 7}),
        ("no rows", lambda f: v2_body(f.head(0))),
    ],
)
def test_v2_requests_the_fast_path_cannot_vouch_for_go_to_mlserver(model, frame, case, body):
    with pytest.raises(Refused):
        decode_v2(body(frame), conforming.signature_dtypes(model))


@pytest.mark.parametrize(
    "body",
    [
        {"dataframe_split": {"columns": ["alcohol"], "data": [["x"]]}},
        {"dataframe_split": {"columns": ["alcohol", "alcohol"], "data": [[1.0, 2.0]]}},
        {"dataframe_split": {"columns": ["alcohol"], "data": [[1.0], [2.0, 3.0]]}},
        {"dataframe_split": {"columns": ["alcohol"], "data": [[1.0]], "index": [0]}},
        {"dataframe_split": {"columns": ["alcohol"], "data": []}},
        {"dataframe_records": [{"alcohol": 1.0}, {"ash": 2.0}]},
        {"instances": [{"alcohol": 1.0}]},
        {"dataframe_split": {"columns": ["alcohol"], "data": [[1.0]]}, "params": {"x": 1}},
    ],
)
def test_invocations_the_fast_path_cannot_vouch_for_go_to_mlserver(model, body):
    with pytest.raises(Refused):
        decode_invocations(body, conforming.signature_dtypes(model))


def _naive(model, source, output):
    """The book's way: pandas in, pyfunc predict, pandas out."""
    rows = pd.read_csv(source, dtype="float64")
    rows["prediction"] = model.predict(rows)
    rows.to_csv(output, index=False)


@pytest.mark.parametrize(
    "text_of",
    [
        pytest.param(lambda csv: csv, id="plain"),
        pytest.param(lambda csv: csv.rstrip("\n"), id="no final newline"),
        pytest.param(lambda csv: csv.replace("\n", "\n\n", 3), id="blank lines"),
    ],
)
def test_csv_passthrough_writes_what_the_naive_way_writes(model, tmp_path, monkeypatch, text_of):
    monkeypatch.setattr(csv_passthrough, "BLOCK_BYTES", 4096)  # many blocks from a small file
    rows = sample_input.build("wine-quality", rows=500, seed=4)
    source = tmp_path / "in.csv"
    source.write_text(text_of(rows.to_csv(index=False)))
    assert csv_passthrough.applies(source, tmp_path / "out.csv")
    assert batch_score.score_file(model, source, tmp_path / "out.csv", chunk_rows=64) == 500
    _naive(model, source, tmp_path / "naive.csv")
    ours, theirs = pd.read_csv(tmp_path / "out.csv"), pd.read_csv(tmp_path / "naive.csv")
    assert list(ours.columns) == list(theirs.columns)
    pd.testing.assert_frame_equal(ours[rows.columns], theirs[rows.columns])
    np.testing.assert_allclose(ours["prediction"], theirs["prediction"], rtol=1e-12)


def test_quoted_or_crlf_csv_is_not_passed_through(tmp_path):
    source = tmp_path / "in.csv"
    source.write_text('"a","b"\n1,"2"\n')
    assert not csv_passthrough.applies(source, tmp_path / "out.csv")
    source.write_text('"a","b"\r\n1,2\r\n')
    assert not csv_passthrough.applies(source, tmp_path / "out.csv")
    source.write_text('"a","b"\n1,2\n')  # a quoted header is fine: it is not copied
    assert csv_passthrough.applies(source, tmp_path / "out.csv")
    assert not csv_passthrough.applies(source, tmp_path / "out.parquet")
