"""Shared pytest set-up: wide pandas output so docstring examples print whole tables."""

import pandas as pd
import pytest


@pytest.fixture(autouse=True)
def _wide_pandas_display():
    with pd.option_context("display.width", 250, "display.max_columns", 60):
        yield


# strategy_effects needs fit_glmm (branch glmm); until that is merged its module is not collected
# for docstring examples (tests/test_strategy_effects.py skips itself).
collect_ignore = []
try:
    import alliancetrack.models.glmm  # noqa: F401
except ImportError:
    collect_ignore.append("src/alliancetrack/models/strategies.py")
