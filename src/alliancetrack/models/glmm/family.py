"""Response families of the GLMM engine: binomial (logit), Poisson (log), negative binomial (log).

Each family gives the inverse link, its derivative, the variance function and
the full conditional log-likelihood (with all constants, as R's family
``aic()`` functions, so the Laplace log-likelihood equals glmer's ``logLik``).
The negative binomial is the NB2 parameterisation of ``MASS::negative.binomial``
and ``glmer.nb``: variance ``mu + mu^2 / theta``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import expit, gammaln

__all__ = ["Family", "make_family"]

_ETA_MAX = 700.0


@dataclass(frozen=True)
class Family:
    """A GLM family with a fixed link: ``name`` is binomial, poisson or negbin."""

    name: str
    theta: float = np.inf  # negative-binomial dispersion

    def linkinv(self, eta: np.ndarray) -> np.ndarray:
        if self.name == "binomial":
            return np.clip(expit(eta), 1e-300, 1 - 1e-16)
        return np.exp(np.clip(eta, -_ETA_MAX, _ETA_MAX))

    def mu_eta(self, mu: np.ndarray) -> np.ndarray:
        """d mu / d eta as a function of mu."""
        return mu * (1 - mu) if self.name == "binomial" else mu

    def variance(self, mu: np.ndarray) -> np.ndarray:
        if self.name == "binomial":
            return mu * (1 - mu)
        if self.name == "poisson":
            return mu
        return mu + mu * mu / self.theta

    def loglik(self, y: np.ndarray, mu: np.ndarray, wt: np.ndarray) -> np.ndarray:
        """Per-observation log-likelihood (full constants).

        Binomial: ``y`` is the proportion of successes, ``wt`` the number of trials.
        """
        return self.kernel(y, mu, wt) + self.constant(y, wt)

    def kernel(self, y: np.ndarray, mu: np.ndarray, wt: np.ndarray) -> np.ndarray:
        """The part of :meth:`loglik` that depends on ``mu``."""
        if self.name == "binomial":
            k = wt * y
            with np.errstate(divide="ignore", invalid="ignore"):
                ll = k * np.log(mu) + (wt - k) * np.log1p(-mu)
            return np.where(wt > 0, ll, 0.0)
        if self.name == "poisson":
            return wt * (y * np.log(mu) - mu)
        return wt * (y * np.log(mu) - (self.theta + y) * np.log(self.theta + mu))

    def constant(self, y: np.ndarray, wt: np.ndarray) -> np.ndarray:
        """The part of :meth:`loglik` that does not depend on ``mu``."""
        if self.name == "binomial":
            k = wt * y
            const = gammaln(wt + 1) - gammaln(k + 1) - gammaln(wt - k + 1)
            return np.where(wt > 0, const, 0.0)
        if self.name == "poisson":
            return -wt * gammaln(y + 1)
        th = self.theta
        return wt * (gammaln(y + th) - gammaln(th) - gammaln(y + 1) + th * np.log(th))

    def with_theta(self, theta: float) -> Family:
        return Family(self.name, float(theta))


def make_family(name: str) -> Family:
    """The family called ``name`` (``"binomial"``, ``"poisson"`` or ``"negbin"``)."""
    if name not in ("binomial", "poisson", "negbin"):
        raise ValueError(
            f"family must be 'binomial', 'poisson' or 'negbin', got {name!r}."
        )
    return Family(name, 1.0 if name == "negbin" else np.inf)
