"""Shared base for model results: coefficient tables, intervals, effect sizes, summaries.

:class:`ModelResult` is the common surface of :class:`~alliancetrack.MixedResult`,
:class:`~alliancetrack.OutcomeResult` and :class:`~alliancetrack.GEEResult`:
``coefs`` (``term, estimate, se, statistic, p_value, ci_low, ci_high`` and,
for t-based inference, ``df``), :meth:`ModelResult.conf_int`,
:meth:`ModelResult.effect_size` (with the term's own df) and
:meth:`ModelResult.summary`, which returns a :class:`Summary` with a text
form (``str(summary)``, ``summary.text``) and an HTML form (``_repr_html_``,
shown by Jupyter).  :func:`coef_table` builds a coefficient table with z or t
inference.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from alliancetrack.errors import AllianceDataError

__all__ = ["ModelResult", "Summary", "coef_table", "effect_size_from_t", "rename_term"]


def rename_term(term: str) -> str:
    """R's name for the intercept: ``"Intercept"``/``"const"`` -> ``"(Intercept)"``."""
    return "(Intercept)" if term in ("Intercept", "const") else term


def effect_size_from_t(t: float, df: float) -> dict[str, float]:
    """Convert a t (or z) statistic into the effect sizes r and d.

    ``r = t / sqrt(t**2 + df)`` and ``d = 2 t / sqrt(df)`` (Rosenthal, 1994;
    Rosnow & Rosenthal, 1996), the conversions used in psychotherapy
    meta-analyses such as Eubanks, Muran & Safran (2018).  ``d`` is the
    equal-group-size conversion; both keep the sign of ``t``.  With a mixed
    model pass the term's own (Satterthwaite or Kenward-Roger) df, not the
    number of observations.

    Parameters
    ----------
    t : float
        Test statistic.
    df : float
        Degrees of freedom (must be positive).

    Returns
    -------
    dict
        ``{"t": t, "df": df, "r": r, "d": d}``.

    Examples
    --------
    >>> es = effect_size_from_t(2.0, 100)
    >>> round(es["r"], 4), round(es["d"], 4)
    (0.1961, 0.4)
    """
    if not df > 0:
        raise AllianceDataError(f"effect sizes need positive degrees of freedom, got df={df}.")
    r = t / math.sqrt(t * t + df)
    d = 2.0 * t / math.sqrt(df)
    return {"t": float(t), "df": float(df), "r": float(r), "d": float(d)}


def coef_table(
    names: Sequence[str],
    estimates: Sequence[float],
    se: Sequence[float],
    df: Sequence[float] | None = None,
    alpha: float = 0.05,
) -> pd.DataFrame:
    """Coefficient table with z (``df=None``) or t inference.

    Returns ``term, estimate, se, statistic, p_value, ci_low, ci_high`` and,
    with ``df``, a ``df`` column (two-sided t p-values and t intervals;
    a missing df falls back to the normal distribution for that row).

    Examples
    --------
    >>> coef_table(["Intercept", "x"], [1.0, 0.5], [0.5, 0.25], df=[10, 10]).round(4)
              term  estimate    se  statistic  p_value  ci_low  ci_high    df
    0  (Intercept)       1.0  0.50        2.0   0.0734 -0.1141   2.1141  10.0
    1            x       0.5  0.25        2.0   0.0734 -0.0570   1.0570  10.0
    """
    est = np.asarray(estimates, dtype=float)
    se = np.asarray(se, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        stat = est / se
    out = pd.DataFrame({
        "term": [rename_term(str(n)) for n in names],
        "estimate": est,
        "se": se,
        "statistic": stat,
    })
    if df is None:
        q = stats.norm.ppf(1 - alpha / 2)
        p = 2 * stats.norm.sf(np.abs(stat))
        qv = np.full(len(est), q)
    else:
        dfa = np.asarray(df, dtype=float)
        finite = np.isfinite(dfa) & (dfa > 0)
        dfs = np.where(finite, dfa, 1.0)
        p = np.where(finite, 2 * stats.t.sf(np.abs(stat), dfs), 2 * stats.norm.sf(np.abs(stat)))
        qv = np.where(
            finite, stats.t.ppf(1 - alpha / 2, dfs), stats.norm.ppf(1 - alpha / 2)
        )
    out["p_value"] = p
    out["ci_low"] = est - qv * se
    out["ci_high"] = est + qv * se
    if df is not None:
        out["df"] = np.asarray(df, dtype=float)
    return out


class Summary:
    """A model summary with a text form (``str``) and an HTML form (Jupyter).

    Examples
    --------
    >>> s = Summary("Model\\nline 2", "Model")
    >>> print(s)
    Model
    line 2
    >>> "line 2" in s
    True
    """

    def __init__(self, text: str, title: str = "", table: pd.DataFrame | None = None):
        self.text = text
        self.title = title
        self.table = table

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return self.text

    def __contains__(self, item: str) -> bool:
        return item in self.text

    def splitlines(self) -> list[str]:
        """Lines of the text form."""
        return self.text.splitlines()

    def _repr_html_(self) -> str:
        head = f"<h4>{html.escape(self.title)}</h4>" if self.title else ""
        body = f"<pre>{html.escape(self.text)}</pre>"
        if self.table is not None:
            body = (
                f"<pre>{html.escape(self.text.split(chr(10) + chr(10))[0])}</pre>"
                + self.table.to_html(index=False, float_format=lambda z: f"{z:.4g}")
            )
        return f"<div class='alliancetrack-summary'>{head}{body}</div>"


class ModelResult:
    """Mixin for result classes that have a ``coefs`` table.

    Subclasses provide ``coefs`` and ``alpha`` and implement
    ``_summary_text()``; ``df_resid`` is the fallback df when ``coefs`` has no
    ``df`` column.
    """

    coefs: pd.DataFrame
    alpha: float = 0.05
    _title: str = "Model"

    @property
    def df_resid(self) -> float:  # pragma: no cover - overridden
        raise NotImplementedError

    def _row(self, term: str) -> pd.Series:
        key = rename_term(term)
        row = self.coefs.loc[self.coefs["term"] == key]
        if row.empty:
            raise AllianceDataError(
                f"term {term!r} is not a fixed effect (coefficient) of this model; "
                f"choose one of {list(self.coefs['term'])}."
            )
        return row.iloc[0]

    def term_df(self, term: str) -> float:
        """The df used for ``term``'s test (its ``df`` column, else ``df_resid``)."""
        row = self._row(term)
        if "df" in row.index and np.isfinite(row["df"]):
            return float(row["df"])
        return float(self.df_resid)

    def conf_int(self, alpha: float | None = None) -> pd.DataFrame:
        """``term, ci_low, ci_high`` at level ``1 - alpha`` (t with the ``df`` column, else z).

        Examples
        --------
        >>> import pandas as pd
        >>> class R(ModelResult):
        ...     coefs = coef_table(["x"], [1.0], [0.5], df=[4])
        >>> R().conf_int(0.1).round(3).values.tolist()
        [['x', -0.066, 2.066]]
        """
        a = self.alpha if alpha is None else alpha
        df = self.coefs["df"] if "df" in self.coefs.columns else None
        tab = coef_table(self.coefs["term"], self.coefs["estimate"], self.coefs["se"], df, a)
        return tab[["term", "ci_low", "ci_high"]]

    def effect_size(self, term: str, df: float | None = None) -> dict[str, float]:
        """Effect sizes r and d of a coefficient from its test statistic.

        ``r = t / sqrt(t^2 + df)`` and ``d = 2 t / sqrt(df)`` (Rosenthal, 1994),
        with the term's own df (its ``df`` column: Satterthwaite or
        Kenward-Roger for mixed models) unless ``df`` is given.

        Returns
        -------
        dict
            ``term, estimate, t, df, r, d``.
        """
        row = self._row(term)
        out = {"term": str(row["term"]), "estimate": float(row["estimate"])}
        out.update(effect_size_from_t(float(row["statistic"]), self.term_df(term) if df is None
                                      else df))
        return out

    def _summary_text(self) -> str:  # pragma: no cover - overridden
        raise NotImplementedError

    def summary(self) -> Summary:
        """Readable summary: ``str(s)`` or ``s.text`` for text, HTML in notebooks."""
        return Summary(self._summary_text(), self._title, self.coefs)

    def __str__(self) -> str:
        return self._summary_text()
