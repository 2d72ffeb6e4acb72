"""Statistical models: linear mixed models (lme4 syntax), outcome models, results."""
