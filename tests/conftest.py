"""Test fixtures: where the shared reference data live."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


def pytest_configure(config):
    pytest.shared = SHARED


@pytest.fixture
def shared() -> Path:
    """Path of ``../shared`` (reference data; read-only)."""
    return SHARED
