# Reference values for alliancetrack's linear mixed models (tests/test_lmm_reference.py).
# lme4 1.1-31, lmerTest (Satterthwaite df), pbkrtest (Kenward-Roger df).
# Run from the repository root:  Rscript tests/reference/lmm_reference.R
# Writes tests/reference/lmm_data_*.csv (the data) and tests/reference/lmm_reference.csv.
suppressPackageStartupMessages({library(lme4); library(lmerTest); library(pbkrtest)})
out_dir <- "tests/reference"

# --- data ---------------------------------------------------------------------------
write.csv(sleepstudy, file.path(out_dir, "lmm_data_sleepstudy.csv"), row.names = FALSE)
write.csv(Penicillin, file.path(out_dir, "lmm_data_penicillin.csv"), row.names = FALSE)
write.csv(Pastes, file.path(out_dir, "lmm_data_pastes.csv"), row.names = FALSE)

# simulated three-level cohort: sessions in patients in therapists; half the therapists
# trained (therapist-level binary predictor); training changes the alliance slope
set.seed(20240514)
n_t <- 12; n_p <- 6; n_s <- 8
cohort <- expand.grid(session = 1:n_s, pat = 1:n_p, therapist = 1:n_t)
cohort$patient <- sprintf("t%02dp%d", cohort$therapist, cohort$pat)
cohort$trained <- as.integer(cohort$therapist %% 2 == 0)
u_t <- rnorm(n_t, 0, 0.35)
b <- MASS::mvrnorm(n_t * n_p, c(0, 0), matrix(c(0.5^2, 0.5 * 0.08 * 0.3, 0.5 * 0.08 * 0.3, 0.08^2), 2))
pid <- (cohort$therapist - 1) * n_p + cohort$pat
cohort$alliance <- 4 + 0.10 * cohort$session + 0.2 * cohort$trained +
  0.05 * cohort$session * cohort$trained + u_t[cohort$therapist] +
  b[pid, 1] + b[pid, 2] * cohort$session + rnorm(nrow(cohort), 0, 0.45)
cohort$alliance <- round(cohort$alliance, 4)
cohort$pat <- NULL
write.csv(cohort, file.path(out_dir, "lmm_data_cohort.csv"), row.names = FALSE)

# outcome model with 8 therapists (patient level); trained is a therapist-level predictor
set.seed(7)
oc <- expand.grid(pat = 1:7, therapist = 1:8)
oc$patient <- sprintf("t%dp%d", oc$therapist, oc$pat)
oc$trained <- as.integer(oc$therapist <= 4)
oc$bdi_pre <- round(rnorm(nrow(oc), 25, 6), 1)
oc$bdi_post <- round(5 + 0.5 * oc$bdi_pre - 2 * oc$trained + rnorm(8, 0, 2.5)[oc$therapist] +
  rnorm(nrow(oc), 0, 5), 1)
oc$pat <- NULL
write.csv(oc, file.path(out_dir, "lmm_data_outcome8.csv"), row.names = FALSE)

# --- fits ---------------------------------------------------------------------------
models <- list(
  list("sleepstudy_reml", Reaction ~ Days + (Days | Subject), "sleepstudy", TRUE),
  list("sleepstudy_ml", Reaction ~ Days + (Days | Subject), "sleepstudy", FALSE),
  list("sleepstudy_uncorr", Reaction ~ Days + (Days || Subject), "sleepstudy", TRUE),
  list("penicillin", diameter ~ 1 + (1 | plate) + (1 | sample), "Penicillin", TRUE),
  list("pastes", strength ~ 1 + (1 | batch/cask), "Pastes", TRUE),
  list("cohort_reml", alliance ~ session * trained + (session | patient) + (1 | therapist), "cohort", TRUE),
  list("cohort_ml", alliance ~ session * trained + (session | patient) + (1 | therapist), "cohort", FALSE),
  list("cohort_uncorr", alliance ~ session * trained + (session || patient) + (1 | therapist), "cohort", TRUE),
  list("cohort_uncorr_ml", alliance ~ session * trained + (session || patient) + (1 | therapist), "cohort", FALSE),
  list("outcome8", bdi_post ~ bdi_pre + trained + (1 | therapist), "oc", TRUE)
)

rows <- list()
add <- function(...) rows[[length(rows) + 1]] <<- data.frame(..., stringsAsFactors = FALSE)
fits <- list()
for (m in models) {
  name <- m[[1]]
  fit <- eval(bquote(lmer(.(m[[2]]), data = .(as.name(m[[3]])), REML = .(m[[4]]),
              control = lmerControl(optimizer = "bobyqa", optCtrl = list(maxfun = 1e5)))))
  fits[[name]] <- fit
  cf <- summary(fit, ddf = "Satterthwaite")$coefficients
  has_kr <- m[[4]]
  if (has_kr) ckr <- summary(fit, ddf = "Kenward-Roger")$coefficients
  for (i in seq_len(nrow(cf))) {
    add(model = name, kind = "fixed", term = rownames(cf)[i], term2 = NA,
        estimate = cf[i, "Estimate"], se = cf[i, "Std. Error"],
        df_satt = cf[i, "df"], p_satt = cf[i, "Pr(>|t|)"],
        se_kr = if (has_kr) ckr[i, "Std. Error"] else NA,
        df_kr = if (has_kr) ckr[i, "df"] else NA,
        p_kr = if (has_kr) ckr[i, "Pr(>|t|)"] else NA)
  }
  vc <- as.data.frame(VarCorr(fit))
  for (i in seq_len(nrow(vc))) {
    add(model = name, kind = if (is.na(vc$var2[i])) "sd" else "corr", term = vc$grp[i],
        term2 = paste(vc$var1[i], ifelse(is.na(vc$var2[i]), "", vc$var2[i]), sep = "|"),
        estimate = vc$sdcor[i], se = NA, df_satt = NA, p_satt = NA, se_kr = NA, df_kr = NA, p_kr = NA)
  }
  add(model = name, kind = "fit", term = "logLik", term2 = NA, estimate = as.numeric(logLik(fit)),
      se = NA, df_satt = NA, p_satt = NA, se_kr = NA, df_kr = NA, p_kr = NA)
  add(model = name, kind = "fit", term = "singular", term2 = NA, estimate = as.numeric(isSingular(fit)),
      se = NA, df_satt = NA, p_satt = NA, se_kr = NA, df_kr = NA, p_kr = NA)
}
# likelihood-ratio tests as lme4's anova (refits REML fits by ML)
lrt <- function(name, small, large) {
  a <- anova(fits[[small]], fits[[large]])
  add(model = name, kind = "lrt", term = "Chisq", term2 = NA, estimate = a$Chisq[2],
      se = NA, df_satt = a$Df[2], p_satt = a$`Pr(>Chisq)`[2], se_kr = NA, df_kr = NA, p_kr = NA)
}
lrt("cohort_uncorr_vs_corr", "cohort_uncorr", "cohort_reml")
lrt("cohort_uncorr_vs_corr_ml", "cohort_uncorr_ml", "cohort_ml")
fits[["outcome8_null"]] <- lmer(bdi_post ~ bdi_pre + (1 | therapist), data = oc, REML = TRUE)
lrt("outcome8_trained", "outcome8_null", "outcome8")

res <- do.call(rbind, rows)
write.csv(res, file.path(out_dir, "lmm_reference.csv"), row.names = FALSE)
cat("R", R.version$major, R.version$minor, "lme4", as.character(packageVersion("lme4")),
    "lmerTest", as.character(packageVersion("lmerTest")),
    "pbkrtest", as.character(packageVersion("pbkrtest")), "\n")
