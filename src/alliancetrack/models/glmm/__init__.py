"""Generalised linear mixed models matching lme4's glmer / glmer.nb (see :mod:`.model`)."""

from alliancetrack.models.glmm.model import GLMMResult, fit_glmm

__all__ = ["GLMMResult", "fit_glmm"]
