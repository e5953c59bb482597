"""PsyStock data: a synthetic daily BTC/USD close series and the features built from it.

No market data can be downloaded at run time, so the series is SYNTHETIC: a seeded
random walk with the traits that make real daily crypto prices hard to model (fat-tailed
shocks, volatility clustering via GARCH(1,1), and a weak short-term momentum so that there
is something to learn). Training and building scoring input both call `build_features`,
so the model always sees the columns it was trained on.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

WINDOW = 14
FEATURES = [f"move_{lag}" for lag in range(1, WINDOW + 1)]  # move_1 = the latest day's move
TARGET = "up_tomorrow"


def synthetic_prices(days: int = 3000, seed: int = 7, start: str = "2016-01-01") -> pd.DataFrame:
    """Daily closes: GARCH(1,1) volatility, Student-t shocks, AR(1) momentum on returns."""
    rng = np.random.default_rng(seed)
    omega, alpha, beta, momentum = 2e-5, 0.10, 0.85, 0.15
    shocks = rng.standard_t(df=4, size=days) / np.sqrt(2.0)  # unit variance for df=4
    variance = omega / (1 - alpha - beta)
    returns = np.empty(days)
    previous = 0.0
    for day in range(days):
        returns[day] = 0.0008 + momentum * previous + np.sqrt(variance) * shocks[day]
        variance = omega + alpha * (returns[day] - 0.0008) ** 2 + beta * variance
        previous = returns[day]
    close = 430.0 * np.exp(np.cumsum(returns))
    return pd.DataFrame({"date": pd.date_range(start, periods=days, freq="D"), "close": close.round(2)})


def build_features(prices: pd.DataFrame) -> pd.DataFrame:
    """One row per day with the previous WINDOW days' moves (1 up, 0 down) and, where
    tomorrow is known, the target. Rows without a full window are dropped."""
    moves = (prices["close"].diff() > 0).astype("int64")
    frame = pd.DataFrame({name: moves.shift(lag - 1) for lag, name in enumerate(FEATURES, start=1)})
    frame.insert(0, "date", prices["date"])
    frame[TARGET] = (prices["close"].shift(-1) > prices["close"]).astype("float64")
    frame.loc[prices["close"].shift(-1).isna(), TARGET] = np.nan
    frame = frame.iloc[WINDOW:].reset_index(drop=True)  # the first window has no complete history
    frame[FEATURES] = frame[FEATURES].astype("int64")
    return frame


def scoring_input(days: int, seed: int) -> pd.DataFrame:
    """Feature rows ready for batch scoring (no target column), one per day."""
    return build_features(synthetic_prices(days, seed))[["date", *FEATURES]]
