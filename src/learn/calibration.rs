//! Calibrating fusion: fit the combiner of [`crate::forensics::fusion`] to a labelled corpus.
//!
//! Each labelled analysis becomes a [`Sample`]: every module's score and whether it abstained.
//! The model is L2-regularised logistic regression on, per module (sorted by name), the logit
//! of its score when it voted (0 when it abstained) and an abstention indicator; its
//! coefficients are exactly the fusion weights, the abstention terms and the bias of
//! [`FusionWeights`], so `fuse` computes the fitted probability. It is fitted by Newton's
//! method (iteratively reweighted least squares) with a step-halving line search. The L2
//! penalty pulls each logit weight towards its v1 value and each abstention term towards 0
//! (the bias is free): a module the corpus never shows voting (metadata on normalised images)
//! keeps its v1 weight instead of being silenced, and a large penalty gives v1 plus a fitted
//! bias.
//!
//! A sample on which a decisive-evidence rule fires keeps its bound at fusion time whatever
//! the combiner says, so it is left out of the fit (it is still scored in cross-validation,
//! bound applied).
//!
//! Every fit weighs the two classes equally ([`CLASS_PRIOR`]), whatever their counts, so the
//! fused probability is a likelihood ratio that does not depend on the corpus's make-up: the
//! score scale, not the bias, decides where the bands start. Sources are often single-class,
//! and with a count-weighted fit, leaving out a source of real photos taught the bias that real
//! photos are rare and pushed that source's held-out scores up (and a generated source's down),
//! so held-out figures pooled over sources were worse than the ranking the fit gives. Within
//! each class, a source weighs the square root of its size ([`SOURCE_BALANCE`]): one large
//! source (the clothing photos) otherwise decided most of what "real" means to the fit, and
//! leaving it out moved every weight.
//!
//! Cross-validation leaves one group (a source) out at a time: the score that matters is the
//! one on images from sources the fit has not seen. The L2 penalty
//! is the one with the lowest held-out log-loss over a small grid; the held-out figures are
//! reported at that penalty (so they are slightly optimistic: the grid is small).
//!
//! Pure: no I/O. `tellscan calibrate` turns a labels file into samples and writes the result.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{bail, ensure};

use super::balance::group_size_weights;
use super::metrics::{expected_calibration_error, roc_auc};
use crate::forensics::evidence::{logit, sigmoid};
use crate::forensics::fusion::{self, Bound, FitInfo, FusionWeights, ScoreScale};
use crate::forensics::report::{ModuleReport, Report, AI_GENERATED_FROM, LIKELY_AI_FROM};

/// L2 penalties tried by [`calibrate`] (on the summed log-loss).
pub const L2_GRID: [f64; 7] = [0.01, 0.1, 1.0, 10.0, 100.0, 1000.0, 10000.0];

/// Bins of the expected calibration error.
pub const ECE_BINS: usize = 10;

/// Share of the fit's total weight given to generated samples: each class weighs half, so
/// that neither the corpus's class counts nor the source a fold leaves out move the bias.
pub const CLASS_PRIOR: f64 = 0.5;

/// How far every fit evens out the sources within a class: a sample weighs `n^-SOURCE_BALANCE`
/// (before the class scaling), `n` being how many samples of its class its source holds. At
/// 0.5 a source weighs the root of its size, so no single large source (the 260 clothing photos
/// are over half of the real ones) decides what "real" looks like, and leaving it out moves the
/// fit less; 1 (every source alike) ranked web chains a little better but cost as-delivered
/// AUC and sensitivity (`weights/MODEL_CARD.md`).
pub const SOURCE_BALANCE: f64 = 0.5;

/// One labelled analysis.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Module name → (score 0-1, abstained); the `fusion` entry is not a module.
    pub modules: BTreeMap<String, (f64, bool)>,
    /// `true` for an AI-generated image.
    pub positive: bool,
    /// Cross-validation group (the image's source): a group is held out as a whole.
    pub group: String,
    /// The decisive-evidence bound fusion puts on this analysis, if any.
    pub bound: Option<Bound>,
    /// How the image was prepared (`raw`, `web`, …): the verdict bands must hold in each.
    pub condition: String,
}

impl Sample {
    /// A sample from a detector report.
    pub fn from_report(report: &Report, positive: bool, group: impl Into<String>) -> Self {
        Self::from_modules(&report.modules, positive, group)
    }

    /// A sample from module reports (the `fusion` entry, if present, is ignored).
    pub fn from_modules(
        modules: &BTreeMap<String, ModuleReport>,
        positive: bool,
        group: impl Into<String>,
    ) -> Self {
        let mut modules = modules.clone();
        modules.remove("fusion");
        Self {
            bound: fusion::bound(&modules),
            modules: modules.into_iter().map(|(name, m)| (name, (m.score, m.abstained))).collect(),
            positive,
            group: group.into(),
            condition: String::new(),
        }
    }

    /// The same sample, prepared as `condition`.
    pub fn in_condition(mut self, condition: impl Into<String>) -> Self {
        self.condition = condition.into();
        self
    }

    /// The module outputs as fusion reads them.
    fn outputs(&self) -> impl Iterator<Item = (&str, f64, bool)> {
        self.modules.iter().map(|(name, &(score, abstained))| (name.as_str(), score, abstained))
    }

    /// The fused probability (0-1) under `weights`, decisive bound included, before the score
    /// scale (without a scale, what `fuse` reports as the score / 100).
    pub fn probability(&self, weights: &FusionWeights) -> f64 {
        weights.probability(self.outputs(), self.bound)
    }

    /// The fused score (0-1) under `weights`: the probability on the weights' score scale,
    /// decisive bound included.
    pub fn score(&self, weights: &FusionWeights) -> f64 {
        weights.score(self.outputs(), self.bound)
    }
}

/// The feature layout: `[1, logit-if-voting per module…, abstained per module…]`.
#[derive(Debug, Clone, PartialEq)]
struct Features {
    modules: Vec<String>,
}

impl Features {
    fn of(samples: &[Sample]) -> Self {
        let names: BTreeSet<&String> = samples.iter().flat_map(|s| s.modules.keys()).collect();
        Self { modules: names.into_iter().cloned().collect() }
    }

    fn len(&self) -> usize {
        1 + 2 * self.modules.len()
    }

    /// A module missing from the sample neither votes nor abstains: both features are 0,
    /// as fusion adds nothing for it.
    fn row(&self, sample: &Sample) -> Vec<f64> {
        let k = self.modules.len();
        let mut x = vec![0.0; self.len()];
        x[0] = 1.0;
        for (i, name) in self.modules.iter().enumerate() {
            match sample.modules.get(name) {
                Some(&(_, true)) => x[1 + k + i] = 1.0,
                Some(&(score, false)) => x[1 + i] = logit(score),
                None => {}
            }
        }
        x
    }

    /// Where the penalty pulls each coefficient: the v1 weight for a module's logit, 0 for
    /// its abstention term. A module the corpus never shows voting keeps its v1 weight.
    fn prior(&self) -> Vec<f64> {
        let v1 = FusionWeights::v1();
        let mut prior = vec![0.0; self.len()];
        for (i, name) in self.modules.iter().enumerate() {
            prior[1 + i] = v1.weights.get(name).copied().unwrap_or(v1.default_weight);
        }
        prior
    }

    fn weights(&self, beta: &[f64]) -> FusionWeights {
        let k = self.modules.len();
        let named = |offset: usize| -> BTreeMap<String, f64> {
            self.modules.iter().enumerate().map(|(i, n)| (n.clone(), beta[offset + i])).collect()
        };
        FusionWeights {
            bias: beta[0],
            weights: named(1),
            default_weight: 0.0,
            abstain: named(1 + k),
            fitted: None,
            scale: None,
        }
    }
}

/// Fit the combiner on `samples` with L2 penalty `l2` (each class weighing half, see
/// [`CLASS_PRIOR`]; samples with a decisive bound left out). The result has `fitted: None`;
/// [`calibrate`] fills it in.
pub fn fit(samples: &[Sample], l2: f64) -> anyhow::Result<FusionWeights> {
    let features = Features::of(samples);
    let fitted: Vec<&Sample> = samples.iter().filter(|s| s.bound.is_none()).collect();
    let beta = fit_rows(&features, &fitted, l2)?;
    Ok(features.weights(&beta))
}

/// Fit on the given samples, the classes reweighted so that the positive share of the total
/// weight is [`CLASS_PRIOR`] (total weight = number of samples), and within each class each
/// sample weighing `n^-`[`SOURCE_BALANCE`], `n` being its source's samples of that class.
fn fit_rows(features: &Features, samples: &[&Sample], l2: f64) -> anyhow::Result<Vec<f64>> {
    ensure!(l2.is_finite() && l2 >= 0.0, "the L2 penalty must be a finite number ≥ 0, not {l2}");
    let n_pos = samples.iter().filter(|s| s.positive).count();
    let n_neg = samples.len() - n_pos;
    if n_pos == 0 || n_neg == 0 {
        bail!(
            "cannot fit fusion on {} sample(s) with {n_pos} AI and {n_neg} real: both classes are needed \
             (samples decided by a decisive-evidence rule are not fitted)",
            samples.len()
        );
    }
    let rows: Vec<(Vec<f64>, f64, f64)> = samples
        .iter()
        .zip(sample_weights(samples))
        .map(|(s, weight)| (features.row(s), if s.positive { 1.0 } else { 0.0 }, weight))
        .collect();
    Ok(newton(&rows, &features.prior(), l2))
}

/// Each sample's weight in a fit: `n^-`[`SOURCE_BALANCE`] for a source holding `n` samples of
/// its class, scaled so that the generated samples sum to [`CLASS_PRIOR`] of the total and
/// the total is the number of samples. Both classes must be present.
fn sample_weights(samples: &[&Sample]) -> Vec<f64> {
    let sources: Vec<(&str, bool)> = samples.iter().map(|s| (s.group.as_str(), s.positive)).collect();
    let balance = group_size_weights(&sources, SOURCE_BALANCE);
    let class_sum = |positive: bool| -> f64 {
        samples.iter().zip(&balance).filter(|(s, _)| s.positive == positive).map(|(_, b)| b).sum()
    };
    let n = samples.len() as f64;
    let (w_pos, w_neg) = (n * CLASS_PRIOR / class_sum(true), n * (1.0 - CLASS_PRIOR) / class_sum(false));
    samples.iter().zip(balance).map(|(s, b)| if s.positive { w_pos } else { w_neg } * b).collect()
}

/// Penalised negative log-likelihood: Σ wᵢ·(softplus(ηᵢ) − yᵢηᵢ) + λ/2·Σ_{j≥1} (βⱼ − mⱼ)²
/// with `m` the prior.
fn objective(rows: &[(Vec<f64>, f64, f64)], beta: &[f64], prior: &[f64], l2: f64) -> f64 {
    let data: f64 = rows.iter().map(|(x, y, w)| w * (softplus(dot(x, beta)) - y * dot(x, beta))).sum();
    data + 0.5 * l2 * beta[1..].iter().zip(&prior[1..]).map(|(b, m)| (b - m).powi(2)).sum::<f64>()
}

/// Newton's method with step halving, from the prior; the bias gets a tiny ridge so that the
/// Hessian stays positive definite even at `l2` = 0 with a constant column.
fn newton(rows: &[(Vec<f64>, f64, f64)], prior: &[f64], l2: f64) -> Vec<f64> {
    const MAX_ITERATIONS: usize = 100;
    let d = prior.len();
    let mut beta = prior.to_vec();
    let mut current = objective(rows, &beta, prior, l2);
    for _ in 0..MAX_ITERATIONS {
        let mut grad: Vec<f64> = beta.iter().zip(prior).map(|(b, m)| l2 * (b - m)).collect();
        grad[0] = 0.0;
        let mut hessian = vec![vec![0.0; d]; d];
        for (j, row) in hessian.iter_mut().enumerate() {
            row[j] = if j == 0 { 1e-9 } else { l2.max(1e-9) };
        }
        for (x, y, w) in rows {
            let p = sigmoid(dot(x, &beta));
            let (r, h) = (w * (p - y), w * p * (1.0 - p));
            for ((g, row), &xj) in grad.iter_mut().zip(hessian.iter_mut()).zip(x) {
                if xj != 0.0 {
                    *g += r * xj;
                    for (cell, &xk) in row.iter_mut().zip(x) {
                        *cell += h * xj * xk;
                    }
                }
            }
        }
        let step = solve_spd(hessian, &grad);
        let mut t = 1.0;
        let (next, value) = loop {
            let next: Vec<f64> = beta.iter().zip(&step).map(|(b, s)| b - t * s).collect();
            let value = objective(rows, &next, prior, l2);
            if value <= current || t < 1e-6 {
                break (next, value);
            }
            t *= 0.5;
        };
        let moved = beta.iter().zip(&next).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
        if value > current {
            break; // no descent along the Newton direction: at the optimum up to rounding
        }
        beta = next;
        current = value;
        if moved < 1e-10 {
            break;
        }
    }
    beta
}

/// Solve `a·x = b` for a symmetric positive definite `a` by Cholesky decomposition; when
/// rounding makes `a` lose definiteness, the diagonal is nudged up and the factorisation
/// retried. (The crate's other solvers are fixed 3×3 and 4×4 ones inside the pixel modules.)
fn solve_spd(a: Vec<Vec<f64>>, b: &[f64]) -> Vec<f64> {
    let d = b.len();
    let scale = (0..d).map(|i| a[i][i].abs()).fold(0.0, f64::max).max(1e-300);
    let mut jitter = 0.0;
    loop {
        if let Some(l) = cholesky(&a, jitter) {
            // forward: l·y = b; back: lᵀ·x = y
            let mut y = vec![0.0; d];
            for i in 0..d {
                y[i] = (b[i] - (0..i).map(|k| l[i][k] * y[k]).sum::<f64>()) / l[i][i];
            }
            let mut x = vec![0.0; d];
            for i in (0..d).rev() {
                x[i] = (y[i] - (i + 1..d).map(|k| l[k][i] * x[k]).sum::<f64>()) / l[i][i];
            }
            return x;
        }
        jitter = if jitter == 0.0 { 1e-12 * scale } else { jitter * 100.0 };
    }
}

/// Lower-triangular `l` with `l·lᵀ = a + jitter·I`; `None` when a pivot is not positive.
fn cholesky(a: &[Vec<f64>], jitter: f64) -> Option<Vec<Vec<f64>>> {
    let d = a.len();
    let mut l = vec![vec![0.0; d]; d];
    for i in 0..d {
        for j in 0..=i {
            let s: f64 = (0..j).map(|k| l[i][k] * l[j][k]).sum();
            if i == j {
                let pivot = a[i][i] + jitter - s;
                if pivot <= 0.0 || !pivot.is_finite() {
                    return None;
                }
                l[i][i] = pivot.sqrt();
            } else {
                l[i][j] = (a[i][j] - s) / l[j][j];
            }
        }
    }
    Some(l)
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// `ln(1 + eˣ)` without overflow.
fn softplus(x: f64) -> f64 {
    if x > 0.0 {
        x + (-x).exp().ln_1p()
    } else {
        x.exp().ln_1p()
    }
}

/// Out-of-fold probabilities of one leave-one-group-out run.
#[derive(Debug, Clone, PartialEq)]
pub struct CrossValidation {
    /// The L2 penalty of the fits.
    pub l2: f64,
    /// Number of folds (distinct groups).
    pub folds: usize,
    /// Per sample (in input order): the calibrated fused probability from the fit that did
    /// not see the sample's group, decisive bound applied.
    pub calibrated: Vec<f64>,
    /// Per sample: the fused probability under v1 weights (which were not fitted, so every
    /// sample is held out for them), decisive bound applied.
    pub uncalibrated: Vec<f64>,
    /// Mean log-loss of `calibrated`.
    pub log_loss: f64,
}

impl CrossValidation {
    /// The labels, in sample order.
    fn truth(samples: &[Sample]) -> Vec<bool> {
        samples.iter().map(|s| s.positive).collect()
    }

    /// Held-out (ECE, AUC) of the uncalibrated and the calibrated probabilities.
    /// Samples of folds that could not be fitted are left out of both.
    pub fn figures(&self, samples: &[Sample]) -> [(f64, Option<f64>); 2] {
        let kept: Vec<usize> = (0..samples.len()).filter(|&i| !self.calibrated[i].is_nan()).collect();
        let truth: Vec<bool> = kept.iter().map(|&i| samples[i].positive).collect();
        let figures = |p: &[f64]| {
            let p: Vec<f64> = kept.iter().map(|&i| p[i]).collect();
            (expected_calibration_error(&p, &truth, ECE_BINS).unwrap_or(0.0), roc_auc(&p, &truth))
        };
        [figures(&self.uncalibrated), figures(&self.calibrated)]
    }
}

/// Leave-one-group-out cross-validation at one L2 penalty.
pub fn cross_validate(samples: &[Sample], l2: f64) -> anyhow::Result<CrossValidation> {
    let groups: BTreeSet<&str> = samples.iter().map(|s| s.group.as_str()).collect();
    ensure!(
        groups.len() >= 2,
        "cross-validation needs at least two groups (sources), found {}",
        groups.len()
    );
    let features = Features::of(samples);
    let fittable: Vec<&Sample> = samples.iter().filter(|s| s.bound.is_none()).collect();
    let mut calibrated = vec![f64::NAN; samples.len()];
    for group in &groups {
        let train: Vec<&Sample> = fittable.iter().copied().filter(|s| s.group != *group).collect();
        if one_class(&train) && !one_class(&fittable) {
            // the only source of a class is held out: this fold cannot be fitted, and its
            // samples get no held-out probability (NaN, left out of every held-out figure)
            continue;
        }
        let beta = fit_rows(&features, &train, l2)
            .map_err(|e| anyhow::anyhow!("fold without source {group:?}: {e}"))?;
        let weights = features.weights(&beta);
        for (i, s) in samples.iter().enumerate().filter(|(_, s)| s.group == *group) {
            calibrated[i] = s.probability(&weights);
        }
    }
    let v1 = FusionWeights::v1();
    let uncalibrated: Vec<f64> = samples.iter().map(|s| s.probability(&v1)).collect();
    let log_loss = log_loss(&calibrated, &CrossValidation::truth(samples));
    Ok(CrossValidation { l2, folds: groups.len(), calibrated, uncalibrated, log_loss })
}

/// `true` when the samples hold at most one class.
fn one_class(samples: &[&Sample]) -> bool {
    let positive = samples.iter().filter(|s| s.positive).count();
    positive == 0 || positive == samples.len()
}

/// Mean log-loss, probabilities clamped to [1e-6, 1 − 1e-6]; NaN probabilities (samples of a
/// fold that could not be fitted) are left out.
pub fn log_loss(probabilities: &[f64], positive: &[bool]) -> f64 {
    let kept: Vec<(f64, bool)> =
        probabilities.iter().zip(positive).filter(|(p, _)| !p.is_nan()).map(|(&p, &y)| (p, y)).collect();
    let total: f64 = kept
        .iter()
        .map(|&(p, y)| {
            let p = p.clamp(1e-6, 1.0 - 1e-6);
            -(if y { p.ln() } else { (1.0 - p).ln() })
        })
        .sum();
    total / kept.len().max(1) as f64
}

/// What the verdict bands promise on sources the fit never saw.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BandTargets {
    /// Largest share of real photos scored ≥ 60.
    pub fpr_60: f64,
    /// Largest share of real photos scored ≥ 85.
    pub fpr_85: f64,
    /// The thresholds are set for `margin` × the targets on the held-out probabilities they
    /// are fitted on, because a new source is never exactly like the old ones.
    pub margin: f64,
}

/// The product's promise: at most 5 % of real photos "Likely AI" and 1 % "AI generated".
pub const BAND_TARGETS: BandTargets = BandTargets { fpr_60: 0.05, fpr_85: 0.01, margin: 0.6 };

/// The probability above which at most `share` of `values` lie: midway between the last value
/// allowed above and the first that is not (just above the largest when none is allowed).
pub fn threshold_for_share(values: &[f64], share: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(|a, b| b.total_cmp(a));
    let allowed = (share * sorted.len() as f64).floor() as usize;
    match (allowed.checked_sub(1).and_then(|i| sorted.get(i)), sorted.get(allowed)) {
        (_, None) => 0.0,
        (None, Some(&first_kept)) => (first_kept + 1e-6).min(1.0),
        (Some(&above), Some(&below)) if above > below => (above + below) / 2.0,
        // ties straddle the cut: the threshold must clear them all
        (Some(_), Some(&below)) => (below + 1e-6).min(1.0),
    }
}

/// The score scale from held-out probabilities: for each condition, the thresholds that keep
/// real samples under `margin` × the targets; the strictest condition wins.
pub fn fit_scale(samples: &[Sample], held_out: &[f64], targets: BandTargets) -> ScoreScale {
    let mut by_condition: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for (s, &p) in samples.iter().zip(held_out) {
        if !s.positive && !p.is_nan() {
            by_condition.entry(s.condition.as_str()).or_default().push(p);
        }
    }
    let (mut p60, mut p85) = (0.0_f64, 0.0_f64);
    for real in by_condition.values() {
        p60 = p60.max(threshold_for_share(real, targets.fpr_60 * targets.margin));
        p85 = p85.max(threshold_for_share(real, targets.fpr_85 * targets.margin));
    }
    ScoreScale::new(p60, p85)
}

/// The outcome of [`calibrate`].
#[derive(Debug, Clone, PartialEq)]
pub struct Calibration {
    /// The fit on every sample at the chosen penalty, with its [`FitInfo`] and score scale.
    pub weights: FusionWeights,
    /// The cross-validation at the chosen penalty.
    pub cv: CrossValidation,
    /// Held-out log-loss per penalty tried, in grid order.
    pub grid: Vec<(f64, f64)>,
    /// Per sample (input order): the score (0-1) from the whole procedure (penalty choice,
    /// fit, score scale) run without the sample's source: nested leave-one-source-out, so no
    /// threshold or weight was chosen on the images it is reported for.
    pub nested: Vec<f64>,
}

/// Leave-one-group-out at each penalty of `grid`; the one with the lowest held-out log-loss
/// and the log-loss of every penalty.
fn choose_penalty(samples: &[Sample], grid: &[f64]) -> anyhow::Result<(CrossValidation, Vec<(f64, f64)>)> {
    ensure!(!grid.is_empty(), "no L2 penalty to try");
    let mut best: Option<CrossValidation> = None;
    let mut tried = Vec::new();
    for &l2 in grid {
        let cv = cross_validate(samples, l2)?;
        tried.push((l2, cv.log_loss));
        if best.as_ref().is_none_or(|b| cv.log_loss < b.log_loss) {
            best = Some(cv);
        }
    }
    Ok((best.expect("the grid is not empty"), tried))
}

/// The whole procedure on `samples`: the penalty by leave-one-source-out, the fit at that
/// penalty, and the score scale from its held-out probabilities.
struct Procedure {
    /// The fit with its score scale.
    weights: FusionWeights,
    /// The cross-validation at the chosen penalty.
    cv: CrossValidation,
    /// Held-out log-loss per penalty tried.
    grid: Vec<(f64, f64)>,
}

fn fit_with_scale(samples: &[Sample], grid: &[f64], targets: BandTargets) -> anyhow::Result<Procedure> {
    let (cv, tried) = choose_penalty(samples, grid)?;
    let mut weights = fit(samples, cv.l2)?;
    weights.scale = Some(fit_scale(samples, &cv.calibrated, targets));
    Ok(Procedure { weights, cv, grid: tried })
}

/// Nested leave-one-group-out: for each source, the whole procedure on the other sources,
/// then the scores of the left-out source's samples.
pub fn nested_scores(samples: &[Sample], grid: &[f64], targets: BandTargets) -> anyhow::Result<Vec<f64>> {
    use rayon::prelude::*;
    let groups: Vec<&str> =
        samples.iter().map(|s| s.group.as_str()).collect::<BTreeSet<_>>().into_iter().collect();
    let per_group: Vec<(&str, FusionWeights)> = groups
        .par_iter()
        .map(|&group| {
            let inner: Vec<Sample> = samples.iter().filter(|s| s.group != group).cloned().collect();
            fit_with_scale(&inner, grid, targets)
                .map(|p| (group, p.weights))
                .map_err(|e| anyhow::anyhow!("nested fold without source {group:?}: {e}"))
        })
        .collect::<anyhow::Result<_>>()?;
    let mut scores = vec![f64::NAN; samples.len()];
    for (group, weights) in &per_group {
        for (i, s) in samples.iter().enumerate().filter(|(_, s)| s.group == *group) {
            scores[i] = s.score(weights);
        }
    }
    Ok(scores)
}

/// Choose the L2 penalty from `grid` by held-out log-loss, fit on every sample, set the score
/// scale from the held-out probabilities, and measure the whole procedure by nested
/// leave-one-source-out. `inputs` says what the samples are (recorded in the fit's [`FitInfo`]).
pub fn calibrate(
    samples: &[Sample],
    grid: &[f64],
    inputs: &str,
    targets: BandTargets,
) -> anyhow::Result<Calibration> {
    let Procedure { mut weights, cv, grid: tried } = fit_with_scale(samples, grid, targets)?;
    let nested = nested_scores(samples, grid, targets)?;
    let scale = weights.scale.as_mut().expect("fit_with_scale sets the scale");
    for (condition, (fpr_60, fpr_85)) in band_shares(samples, &nested) {
        scale.held_out_fpr_60.insert(condition.clone(), fpr_60);
        scale.held_out_fpr_85.insert(condition, fpr_85);
    }
    let [(ece_before, auc_before), (ece_after, auc_after)] = cv.figures(samples);
    let positive = samples.iter().filter(|s| s.positive).count();
    weights.fitted = Some(FitInfo {
        method: "logistic regression (Newton/IRLS) on each module's logit(score) when it votes and an \
                 indicator when it abstains, L2 penalty towards the v1 weights, each class weighing half and each \
                 source within it the square root of its size; \
                 leave-one-source-out cross-validation"
            .into(),
        inputs: inputs.into(),
        samples: samples.len(),
        positive,
        negative: samples.len() - positive,
        decisive: samples.iter().filter(|s| s.bound.is_some()).count(),
        folds: cv.folds,
        l2: cv.l2,
        cv_log_loss: cv.log_loss,
        cv_ece_uncalibrated: ece_before,
        cv_ece_calibrated: ece_after,
        cv_auc_uncalibrated: auc_before,
        cv_auc_calibrated: auc_after,
    });
    Ok(Calibration { weights, cv, grid: tried, nested })
}

/// Per condition: the shares of real samples with a score (0-1) ≥ 0.60 and ≥ 0.85.
pub fn band_shares(samples: &[Sample], scores: &[f64]) -> BTreeMap<String, (f64, f64)> {
    let mut real: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for (s, &score) in samples.iter().zip(scores) {
        if !s.positive {
            real.entry(s.condition.clone()).or_default().push(score);
        }
    }
    real.into_iter()
        .map(|(condition, scores)| {
            let share = |band_from| share_at_least(&scores, band_from).unwrap_or(0.0);
            (condition, (share(LIKELY_AI_FROM), share(AI_GENERATED_FROM)))
        })
        .collect()
}

/// The share of `scores` (0-1, unrounded) in the band that starts at `band_from` (0-100) or
/// above; `None` for no scores. A hair of tolerance, so that a score on the edge counts as
/// the report's verdict would.
pub fn share_at_least(scores: &[f64], band_from: f64) -> Option<f64> {
    let edge = band_from / 100.0 - 1e-9;
    (!scores.is_empty()).then(|| scores.iter().filter(|&&v| v >= edge).count() as f64 / scores.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(modules: &[(&str, f64, bool)], positive: bool, group: &str) -> Sample {
        Sample {
            modules: modules.iter().map(|&(n, s, a)| (n.to_string(), (s, a))).collect(),
            positive,
            group: group.into(),
            bound: None,
            condition: String::new(),
        }
    }

    #[test]
    fn the_score_scale_takes_the_strictest_condition_and_ignores_ai_and_unfitted_samples() {
        let targets = BandTargets { fpr_60: 0.1, fpr_85: 0.02, margin: 1.0 };
        let mut samples = Vec::new();
        let mut held_out = Vec::new();
        for i in 0..100 {
            // raw: real probabilities 0.00-0.99; web: 0.50-0.995, the stricter one
            samples.push(sample(&[], false, "g").in_condition("raw"));
            held_out.push(i as f64 / 100.0);
            samples.push(sample(&[], false, "g").in_condition("web"));
            held_out.push(0.5 + i as f64 / 200.0);
        }
        samples.push(sample(&[], true, "g").in_condition("web"));
        held_out.push(1.0); // AI samples do not move the thresholds
        samples.push(sample(&[], false, "h").in_condition("web"));
        held_out.push(f64::NAN); // nor do samples without a held-out probability
        let scale = fit_scale(&samples, &held_out, targets);
        // web: 10 of 100 allowed above 0.60 → between 0.945 and 0.95; 2 allowed above 0.85 → 0.9875
        assert!((scale.probability_at(0.6) - 0.9475).abs() < 1e-9, "{scale:?}");
        assert!((scale.probability_at(0.85) - 0.9875).abs() < 1e-9, "{scale:?}");
        let shares = band_shares(&samples[..200], &held_out[..200]);
        assert_eq!(shares["raw"], (0.4, 0.15));
    }

    #[test]
    fn cholesky_solves_a_small_system() {
        let a = vec![vec![4.0, 2.0, 0.6], vec![2.0, 5.0, 1.0], vec![0.6, 1.0, 3.0]];
        let x = [1.0, -2.0, 0.5];
        let b: Vec<f64> = a.iter().map(|row| dot(row, &x)).collect();
        let got = solve_spd(a, &b);
        for (g, want) in got.iter().zip(x) {
            assert!((g - want).abs() < 1e-12, "{got:?}");
        }
        // singular: still returns a finite answer thanks to the jitter
        let s = solve_spd(vec![vec![1.0, 1.0], vec![1.0, 1.0]], &[2.0, 2.0]);
        assert!(s.iter().all(|v| v.is_finite()));
    }

    #[test]
    fn features_are_logits_and_abstention_indicators() {
        let samples = vec![sample(&[("b", 0.5, true), ("a", 0.8, false)], true, "g")];
        let f = Features::of(&samples);
        assert_eq!(f.modules, vec!["a", "b"]);
        let row = f.row(&samples[0]);
        assert_eq!(row.len(), 5);
        assert_eq!(row[0], 1.0);
        assert!((row[1] - logit(0.8)).abs() < 1e-12);
        assert_eq!(&row[2..], &[0.0, 0.0, 1.0]);
        let missing = sample(&[], false, "g");
        assert_eq!(f.row(&missing), vec![1.0, 0.0, 0.0, 0.0, 0.0]);
    }

    #[test]
    fn recovers_a_known_logistic_model() {
        // the true log-odds: -0.5 + 2·logit(s_a) (a always votes), +1.5 when b abstains;
        // deterministic "labels": the expected share of positives at each point
        let mut samples = Vec::new();
        for i in 0..40 {
            let s = 0.05 + 0.9 * i as f64 / 39.0;
            for abstains in [false, true] {
                let z = -0.5 + 2.0 * logit(s) + if abstains { 1.5 } else { 0.0 };
                let p = sigmoid(z);
                // 20 copies, round(20·p) positive
                let k = (20.0 * p).round() as usize;
                for c in 0..20 {
                    samples.push(sample(
                        &[("a", s, false), ("b", 0.5, abstains)],
                        c < k,
                        &format!("g{}", c % 4),
                    ));
                }
            }
        }
        let w = fit(&samples, 0.01).unwrap();
        assert!((w.weights["a"] - 2.0).abs() < 0.15, "{w:?}");
        assert!((w.abstain["b"] - 1.5).abs() < 0.3, "{w:?}");
        // the classes weigh half each, which moves only the bias, by ln(real / generated)
        let positives = samples.iter().filter(|s| s.positive).count() as f64;
        let shift = ((samples.len() as f64 - positives) / positives).ln();
        assert!((w.bias - (-0.5 + shift)).abs() < 0.3, "{w:?}");
        assert_eq!(w.weights["b"], 1.0); // b never voted: it keeps its v1 weight
        assert_eq!(w.default_weight, 0.0);
        // the weights drive fusion directly
        let s = &samples[0];
        let want = sigmoid(w.bias + w.weights["a"] * logit(0.05));
        assert!((s.probability(&w) - want).abs() < 1e-12);
    }

    #[test]
    fn class_counts_do_not_move_the_fit() {
        // one generated source and one real one, overlapping; then the real source three times
        // over (as when a fold leaves out a source of generated images): the same weights
        // (without a penalty, whose strength is relative to the number of samples)
        let generated: Vec<Sample> =
            (0..30).map(|i| sample(&[("a", 0.3 + 0.5 * f64::from(i) / 29.0, false)], true, "ai")).collect();
        let real: Vec<Sample> = (0..30)
            .map(|i| sample(&[("a", 0.2 + 0.5 * f64::from(i) / 29.0, false)], false, "real"))
            .collect();
        let once: Vec<Sample> = generated.iter().chain(&real).cloned().collect();
        let thrice: Vec<Sample> = generated.iter().chain(&real).chain(&real).chain(&real).cloned().collect();
        let (a, b) = (fit(&once, 0.0).unwrap(), fit(&thrice, 0.0).unwrap());
        assert!((a.bias - b.bias).abs() < 1e-6, "{a:?} {b:?}");
        assert!((a.weights["a"] - b.weights["a"]).abs() < 1e-6, "{a:?} {b:?}");
    }

    #[test]
    fn each_class_weighs_half_and_a_source_the_root_of_its_size() {
        let mut samples = Vec::new();
        for (group, positive, n) in [("a", false, 16), ("b", false, 4), ("c", true, 5)] {
            samples.extend((0..n).map(|_| sample(&[("m", 0.5, false)], positive, group)));
        }
        let refs: Vec<&Sample> = samples.iter().collect();
        let weights = sample_weights(&refs);
        let total = |group: &str| -> f64 {
            refs.iter().zip(&weights).filter(|(s, _)| s.group == group).map(|(_, w)| w).sum()
        };
        let n = samples.len() as f64;
        assert!((total("c") - n / 2.0).abs() < 1e-9, "{weights:?}");
        assert!((total("a") + total("b") - n / 2.0).abs() < 1e-9, "{weights:?}");
        // 16 samples weigh as √16 = 4 against √4 = 2: twice as much, not four times
        let ratio = total("a") / total("b");
        assert!((ratio - (16f64 / 4.0).powf(1.0 - SOURCE_BALANCE)).abs() < 1e-9, "{ratio}");
        assert!((ratio - 2.0).abs() < 1e-9, "the shipped balance is the square root: {ratio}");
    }

    #[test]
    fn penalty_shrinks_and_separation_stays_finite() {
        // perfectly separated: without a penalty the weight would diverge
        let samples: Vec<Sample> = (0..20)
            .map(|i| {
                let positive = i % 2 == 0;
                sample(&[("a", if positive { 0.7 } else { 0.3 }, false)], positive, "g")
            })
            .collect();
        let loose = fit(&samples, 0.01).unwrap();
        let tight = fit(&samples, 10.0).unwrap();
        assert!(loose.weights["a"].is_finite() && loose.weights["a"] > tight.weights["a"]);
        assert!(tight.weights["a"] > 0.0);
        // a huge penalty leaves the v1 weight and fits only the bias
        let v1 = fit(&samples, 1e9).unwrap();
        assert!((v1.weights["a"] - 1.0).abs() < 1e-6, "{v1:?}");
    }

    #[test]
    fn cross_validation_holds_out_groups_and_beats_v1_on_a_miscalibrated_module() {
        // module "a" is overconfident: its logit is 4 × the true log-odds
        let mut samples = Vec::new();
        for g in 0..5 {
            for i in 0..30 {
                let z_true = -2.0 + 4.0 * i as f64 / 29.0;
                let k = (10.0 * sigmoid(z_true)).round() as usize;
                for c in 0..10 {
                    samples.push(sample(&[("a", sigmoid(4.0 * z_true), false)], c < k, &format!("g{g}")));
                }
            }
        }
        let cal = calibrate(&samples, &L2_GRID, "synthetic", BAND_TARGETS).unwrap();
        assert_eq!(cal.cv.folds, 5);
        assert_eq!(cal.grid.len(), L2_GRID.len());
        assert!(cal.cv.calibrated.iter().all(|p| p.is_finite()));
        let [(ece_v1, _), (ece_cal, _)] = cal.cv.figures(&samples);
        assert!(ece_cal < ece_v1, "{ece_cal} vs {ece_v1}");
        assert!((cal.weights.weights["a"] - 0.25).abs() < 0.05, "{:?}", cal.weights);
        let info = cal.weights.fitted.as_ref().unwrap();
        assert_eq!((info.samples, info.folds), (samples.len(), 5));
        assert!(info.cv_ece_calibrated < info.cv_ece_uncalibrated);
    }

    #[test]
    fn refuses_one_group_and_one_class() {
        let one_group =
            vec![sample(&[("a", 0.9, false)], true, "g"), sample(&[("a", 0.1, false)], false, "g")];
        assert!(cross_validate(&one_group, 1.0).unwrap_err().to_string().contains("two groups"));
        let one_class =
            vec![sample(&[("a", 0.9, false)], true, "g"), sample(&[("a", 0.8, false)], true, "h")];
        assert!(fit(&one_class, 1.0).unwrap_err().to_string().contains("both classes"));
    }

    #[test]
    fn decisive_samples_are_bounded_and_not_fitted() {
        let mut samples = vec![
            sample(&[("a", 0.8, false)], true, "g"),
            sample(&[("a", 0.2, false)], false, "g"),
            sample(&[("a", 0.7, false)], true, "h"),
            sample(&[("a", 0.3, false)], false, "h"),
        ];
        let mut decisive = sample(&[("a", 0.01, false)], true, "h");
        decisive.bound = Some(Bound::AiFloor);
        let without = fit(&samples, 1.0).unwrap();
        samples.push(decisive.clone());
        assert_eq!(fit(&samples, 1.0).unwrap(), without);
        assert!(decisive.probability(&without) >= 0.9);
    }
}
