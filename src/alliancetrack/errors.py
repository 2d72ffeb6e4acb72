"""Exceptions raised by alliancetrack."""

from __future__ import annotations

__all__ = ["AllianceDataError", "OptionError"]


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
    1 score(s) in column 'wai' lie outside the wai-sr range 1-5: row 0: 9. Check the scoring (sum vs item mean) or pass the right scale.
    """


class OptionError(ValueError, TypeError):
    """Raised for an option a detector does not take (unknown or inapplicable).

    The message names the option and lists the valid ones.  It is a
    :class:`ValueError` (a bad parameter) and, for code written against
    earlier versions that raised :class:`TypeError` for unknown keywords, a
    :class:`TypeError` too.

    Examples
    --------
    >>> import pandas as pd, alliancetrack as at
    >>> df = pd.DataFrame({"patient": 1, "session": [1, 2, 3], "alliance": [4.0, 2.0, 4.0]})
    >>> try:
    ...     at.detect_episodes(df, method="changepoint", foo=1)
    ... except ValueError as err:
    ...     print(str(err)[:62])
    Unknown option(s) ['foo'] for method='changepoint'; valid opti
    """
