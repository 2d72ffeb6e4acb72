"""Statistical models relating rupture-repair episodes to outcomes (mixed models, GLMMs, GEE)."""
