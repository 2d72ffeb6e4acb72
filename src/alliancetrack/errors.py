"""Exceptions raised by alliancetrack."""

from __future__ import annotations

__all__ = ["AllianceDataError"]


class AllianceDataError(ValueError):
    """Raised when input data cannot be used as given.

    The message always names the column, rows or patients at fault and says
    what to do about it.  It is a :class:`ValueError`, so ``except ValueError``
    catches it too.

    Examples
    --------
    >>> import pandas as pd, alliancetrack as at
    >>> try:
    ...     at.read_alliance(pd.DataFrame({"id": [1], "s": [1], "wai": [9.0]}), patient="id",
    ...                      session="s", score="wai", scale="wai-sr")
    ... except at.AllianceDataError as err:
    ...     print(err)
    1 score(s) in column 'wai' lie outside the wai-sr range 1-5: row 0: 9. Check the scoring (sum vs item mean) or pass the right scale. If they are missing-value codes, pass missing_values=[9] (command line: --missing 9).
    """
