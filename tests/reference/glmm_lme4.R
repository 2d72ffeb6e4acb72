# Reference values for alliancetrack.fit_glmm from lme4 (glmer, glmer.nb).
# Run from the project root:  Rscript tests/reference/glmm_lme4.R
# Reads tests/reference/glmm_counts.csv and glmm_repair.csv (written by make_glmm_data.py)
# and writes glmm_cbpp.csv (lme4's cbpp), glmm_lme4_coefs.csv, glmm_lme4_fits.csv,
# glmm_lme4_variance.csv.
suppressPackageStartupMessages(library(lme4))
dir <- "tests/reference"
counts <- read.csv(file.path(dir, "glmm_counts.csv"))
repair <- read.csv(file.path(dir, "glmm_repair.csv"))
data(cbpp, package = "lme4")
cb <- data.frame(herd = as.character(cbpp$herd), incidence = cbpp$incidence,
                 size = cbpp$size, period = as.character(cbpp$period))
write.csv(cb, file.path(dir, "glmm_cbpp.csv"), row.names = FALSE)

ctrl <- glmerControl(optimizer = "bobyqa", optCtrl = list(maxfun = 1e5))
# the same fits with PIRLS converged tightly (lme4 default tolPwrss = 1e-7 stops PIRLS early,
# which moves its finite-difference Hessian, hence the default SEs, by up to ~2%)
tight <- glmerControl(optimizer = "bobyqa", optCtrl = list(maxfun = 1e5), tolPwrss = 1e-12)
fits <- list(
  pois_laplace = glmer(n_ruptures ~ pd + trained + offset(log(n_sessions)) + (1 | therapist),
                       data = counts, family = poisson, control = ctrl),
  pois_agq10 = glmer(n_ruptures ~ pd + trained + offset(log(n_sessions)) + (1 | therapist),
                     data = counts, family = poisson, nAGQ = 10, control = ctrl),
  pois_od_laplace = glmer(n_ruptures_od ~ pd + trained + offset(log(n_sessions)) + (1 | therapist),
                          data = counts, family = poisson, control = ctrl),
  negbin = glmer.nb(n_ruptures_od ~ pd + trained + offset(log(n_sessions)) + (1 | therapist),
                    data = counts, control = ctrl),
  bin_laplace = glmer(repaired ~ depth + trained + (1 | therapist), data = repair,
                      family = binomial, control = ctrl),
  bin_agq10 = glmer(repaired ~ depth + trained + (1 | therapist), data = repair,
                    family = binomial, nAGQ = 10, control = ctrl),
  bin_nested = glmer(repaired ~ depth + trained + (1 | therapist/patient), data = repair,
                     family = binomial, control = ctrl),
  cbpp = glmer(cbind(incidence, size - incidence) ~ period + (1 | herd), data = cb,
               family = binomial, control = ctrl)
)

coefs <- do.call(rbind, lapply(names(fits), function(m) {
  f <- fits[[m]]
  b <- fixef(f)
  ft <- if (m == "negbin") {
    glmer(formula(f), data = counts, control = tight,
          family = MASS::negative.binomial(getME(f, "glmer.nb.theta")))
  } else update(f, control = tight)
  data.frame(model = m, term = names(b), estimate = unname(b),
             se = sqrt(diag(as.matrix(vcov(f)))),
             se_rx = suppressWarnings(sqrt(diag(as.matrix(vcov(f, use.hessian = FALSE))))),
             estimate_tight = unname(fixef(ft)),
             se_tight = sqrt(diag(as.matrix(vcov(ft)))))
}))
fitrows <- do.call(rbind, lapply(names(fits), function(m) {
  f <- fits[[m]]
  th <- if (m == "negbin") getME(f, "glmer.nb.theta") else NA
  data.frame(model = m, loglik = as.numeric(logLik(f)), nobs = nobs(f), theta = th,
             singular = isSingular(f))
}))
vc <- do.call(rbind, lapply(names(fits), function(m) {
  v <- as.data.frame(VarCorr(fits[[m]]))
  data.frame(model = m, group = v$grp, term = v$var1, variance = v$vcov, sd = v$sdcor)
}))
write.csv(coefs, file.path(dir, "glmm_lme4_coefs.csv"), row.names = FALSE)
write.csv(fitrows, file.path(dir, "glmm_lme4_fits.csv"), row.names = FALSE)
write.csv(vc, file.path(dir, "glmm_lme4_variance.csv"), row.names = FALSE)
cat("lme4", as.character(packageVersion("lme4")), "\n")
