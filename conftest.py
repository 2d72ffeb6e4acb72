"""Shared pytest set-up: wide pandas output so docstring examples print whole tables."""

import pandas as pd
import pytest


@pytest.fixture(autouse=True)
def _wide_pandas_display():
    with pd.option_context("display.width", 250, "display.max_columns", 60):
        yield
