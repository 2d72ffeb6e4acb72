"""Each patient's own dip: a random effect around the cohort's dip (``patient_dips=True``).

The simulator, like real ruptures, gives every episode its own depth; one
shared dip fits the deep ones and the shallow ones badly.  A rupture that
lasts to the end of treatment and is shallower than the shared dip can then
only be fitted by bending the stable level up beside it, so a stable level
that steps down (no rupture) or a gradual decline competes with it, and
such sessions got probabilities of 0.6-0.7 although nearly all are ruptures.

Here patient *i*'s lowered states lie ``u_i · dip`` (times the state's share)
below their stable level, with ``u_i ~ N(1, s²)``: a normal random effect,
estimated as the others are, by empirical Bayes within EM.

* M-step (:func:`m_dip_factors`): given the state posteriors and the stable
  level, ``u_i`` is the weighted least-squares depth of the patient's
  lowered sessions shrunk toward 1 (its posterior mean); with the shared
  parameters, ``s²`` is the mean of ``(u_i - 1)²`` plus the posterior
  variance (the EM update of a normal random-effect variance; Laird & Ware
  1982).
* The factor enters the penalised likelihood of an explanation through its
  prior and the Laplace volume of its posterior (:func:`dip_factor_log_prior`),
  so a patient's depth is not free: a shallow rupture costs what its depth
  is unusual.
* A depth search (:func:`alliancetrack.detection.hmm_paths.depth_search`)
  tries a grid of factors by the patient's marginal likelihood at the start
  of the final fit, whose shared parameters are fixed: EM alone stays where
  it started, since a drop once read as a decline has its depth fitted to
  the decline and the rupture reading then looks worse than it is.

References
----------
Laird, N. M., & Ware, J. H. (1982). Random-effects models for longitudinal
data. *Biometrics*, 38(4), 963-974.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from alliancetrack.detection.hmm_model import HMMParams

__all__ = ["DIP_FACTOR_GRID", "DIP_FACTOR_RANGE", "DIP_FACTOR_SD_START", "dip_factor_log_prior",
           "m_dip_factors"]

#: Starting SD of the patients' dip factors (``s``).
DIP_FACTOR_SD_START = 0.25
#: Range of a patient's dip factor.
DIP_FACTOR_RANGE = (0.2, 3.0)
#: Smallest variance of the dip factors (``s²``): the prior stays proper.
DIP_FACTOR_VAR_MIN = 1e-4
#: Factors tried by the depth search.
DIP_FACTOR_GRID = np.round(np.arange(0.55, 1.46, 0.1), 2)


def _depth_statistics(post: np.ndarray, y: np.ndarray, w: np.ndarray,
                      params: HMMParams) -> tuple[np.ndarray, np.ndarray]:
    """Per patient: the weighted sum of depth-times-drop and of depth², over lowered states
    (a state ``mult_k · dip_i`` below the stable level, ``dip_i`` the patient's dip at
    factor 1), each session weighted by its posterior, t weight and ``1 / sigma_i²``."""
    depth = params.unit_dips()[:, None, None] * params.mult[None, None, :]
    g = post * w / params.sigma[:, None, None] ** 2
    num = (g * depth * (params.base[:, :, None] - y)).sum(axis=(1, 2))
    info = (g * depth * depth).sum(axis=(1, 2))
    return num, info


def m_dip_factors(post: np.ndarray, y: np.ndarray, w: np.ndarray, params: HMMParams,
                  shared: bool = True) -> None:
    """Update each patient's dip factor (posterior mean) and, if ``shared``, their variance.

    ``y`` and ``w`` are from :func:`alliancetrack.detection.hmm_model.effective`;
    call after the stable level's update.  Patients without lowered sessions
    keep the factor 1 (their information is 0).

    Examples
    --------
    One patient whose two ruptured sessions lie 0.5 below a stable level of
    4 (the cohort dip 1), weight 1 each, noise SD 1, prior SD 0.5: the
    factor is ``(2·0.5 + 1/0.25) / (2 + 1/0.25) = 5/6``.

    >>> import numpy as np
    >>> from alliancetrack.detection.hmm_model import HMMParams
    >>> p = HMMParams(start=np.array([1.0, 0, 0]), trans=np.eye(3), dip=1.0,
    ...               base=np.full((1, 2), 4.0), sigma=np.ones(1), df=10.0,
    ...               patient_dips=True, dip_factor_var=0.25)
    >>> post = np.zeros((1, 2, 3)); post[0, :, 1] = 1
    >>> y = np.full((1, 2, 3), 3.5)
    >>> m_dip_factors(post, y, np.ones((1, 2, 3)), p, shared=False)
    >>> round(float(p.dip_factor[0]), 4)
    0.8333
    """
    num, info = _depth_statistics(post, y, w, params)
    s2 = params.dip_factor_var
    u = (num + 1.0 / s2) / (info + 1.0 / s2)
    if shared:
        post_var = 1.0 / (info + 1.0 / s2)
        params.dip_factor_var = float(max(np.mean((u - 1.0) ** 2 + post_var),
                                          DIP_FACTOR_VAR_MIN))
    params.dip_factor = np.clip(u, *DIP_FACTOR_RANGE)
    params.dip_info = info


def dip_factor_log_prior(params: HMMParams) -> np.ndarray:
    """Each patient's log prior of their dip factor plus the Laplace volume of its posterior.

    ``-(u_i - 1)² / (2 s²) - ½·log(1 + info_i · s²)``, at the factor's
    posterior mean ``u_i`` with ``info_i`` the curvature of the patient's
    log-likelihood in it: added to the log-likelihood at ``u_i`` this is the
    log-likelihood with the factor integrated out over its normal prior
    (exact where the likelihood is normal in the factor, the Laplace
    approximation otherwise), so explanations are weighed with the factor
    integrated out.  Zero when the patients share one dip, and for a patient
    without lowered sessions.

    Examples
    --------
    >>> import numpy as np
    >>> from alliancetrack.detection.hmm_model import HMMParams
    >>> p = HMMParams(start=np.array([1.0, 0, 0]), trans=np.eye(3), dip=1.0,
    ...               base=np.zeros((2, 3)), sigma=np.ones(2), df=10.0,
    ...               patient_dips=True, dip_factor_var=0.04)
    >>> p.dip_factor, p.dip_info = np.array([1.0, 0.8]), np.array([0.0, 3.0])
    >>> dip_factor_log_prior(p).round(3).tolist()
    [0.0, -0.557]
    """
    if not params.patient_dips:
        return np.zeros(len(params.sigma))
    s2 = params.dip_factor_var
    return 0.0 - ((params.dip_factor - 1.0) ** 2 / (2 * s2) + 0.5 * np.log1p(params.dip_info * s2))
