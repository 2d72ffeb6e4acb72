# glmer reference for alliancetrack.strategy_effects on the simulated study strategy_sim.csv
# (made by make_strategy_data.py). Run from tests/reference: Rscript strategy_glmer.R
suppressPackageStartupMessages(library(lme4))
d <- read.csv("strategy_sim.csv")
d$repaired <- as.integer(d$repaired == "True")
d$any_immediate <- as.numeric(d$n_immediate > 0)
d$any_expressive <- as.numeric(d$n_expressive > 0)
d$patient <- factor(d$patient)
d$therapist <- factor(d$therapist)
fit <- glmer(repaired ~ (any_immediate + any_expressive) * pd + (1 | therapist) + (1 | patient),
             data = d, family = binomial)
co <- summary(fit)$coefficients
vc <- as.data.frame(VarCorr(fit))
out <- data.frame(term = rownames(co), estimate = co[, 1], se = co[, 2],
                  ci_low = co[, 1] - qnorm(0.975) * co[, 2],
                  ci_high = co[, 1] + qnorm(0.975) * co[, 2])
write.csv(out, "strategy_glmer_coefs.csv", row.names = FALSE)
write.csv(data.frame(group = vc$grp, sd = vc$sdcor, loglik = as.numeric(logLik(fit))),
          "strategy_glmer_variance.csv", row.names = FALSE)
# patient intercept only (strategy_effects(..., groups=None)), counts of uses
fit2 <- glmer(repaired ~ (n_immediate + n_expressive) * pd + (1 | patient), data = d,
              family = binomial)
co2 <- summary(fit2)$coefficients
write.csv(data.frame(term = rownames(co2), estimate = co2[, 1], se = co2[, 2],
                     sd_patient = as.data.frame(VarCorr(fit2))$sdcor[1],
                     loglik = as.numeric(logLik(fit2))),
          "strategy_glmer_counts.csv", row.names = FALSE)
