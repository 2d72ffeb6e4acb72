"""Shared pytest set-up: wide pandas output so docstring examples print whole tables, and
reproducible property-based tests.

Hypothesis draws its examples from a fixed seed per test (profile ``"ci"``, the default), so a
test run -- and CI -- gives the same result every time. ``HYPOTHESIS_PROFILE=explore python -m
pytest`` draws new random examples, to look for failures no fixed seed has shown yet.
"""

import os

import pandas as pd
import pytest
from hypothesis import settings

settings.register_profile("ci", derandomize=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(autouse=True)
def _wide_pandas_display():
    with pd.option_context("display.width", 250, "display.max_columns", 60):
        yield
