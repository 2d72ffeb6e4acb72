"""Exceptions raised by alliancetrack."""

from __future__ import annotations

__all__ = ["AllianceDataError"]


class AllianceDataError(ValueError):
    """Raised when input data cannot be used as given.

    The message always names the column, rows or patients at fault and says
    what to do about it.  It is a :class:`ValueError`, so ``except ValueError``
    catches it too.
    """
