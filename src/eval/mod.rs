//! `tellscan eval`: run the detector over a labelled set and measure it.

pub mod by_source;
pub mod plot;
pub mod scores;

// the labelled sets, the metrics and the preparation steps are shared with training and
// calibration, so they live in `learn/`; `eval::…` names them as before
pub use crate::learn::labels::{read_labels, Label, LabelRow};
pub use crate::learn::{metrics, transform};

use std::collections::BTreeMap;
use std::time::Instant;

use rayon::prelude::*;
use serde::Serialize;

use crate::forensics::report::{AI_GENERATED_FROM, LIKELY_AI_FROM};
use crate::forensics::{DecodeLimits, Detector, Report, Verdict};
use crate::learn::web::{self, WebChain};
use transform::Perturbations;

/// The "Likely AI" threshold used for accuracy and false-positive rate.
pub const DECISION_THRESHOLD: f64 = LIKELY_AI_FROM;

/// The "AI generated" threshold: the verdict a user is most likely to act on.
pub const STRONG_THRESHOLD: f64 = AI_GENERATED_FROM;

/// How `eval` prepares each image.
#[derive(Debug, Clone, Default)]
pub struct EvalOptions {
    /// Strip metadata, centre-crop 512×512 natively and re-encode JPEG q90.
    pub normalize: bool,
    /// Put each image through a web chain drawn from this seed and its path (after
    /// normalisation, before the degradations).
    pub web: Option<u64>,
    /// Degradations applied after normalisation.
    pub perturb: Perturbations,
    /// Decode limits for the preparation steps.
    pub limits: DecodeLimits,
}

/// What happened to one image.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Detected, with the detection time in ms and the web chain applied, if any.
    Scored(Box<Report>, f64, Option<WebChain>),
    /// Left out by normalisation (smaller than the crop).
    Skipped,
    /// The file could not be read or decoded.
    Failed(String),
}

/// One module's ranking quality.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModuleEval {
    /// ROC AUC of the module's score (0.5 where it abstained); `null` without both classes.
    pub auc: Option<f64>,
    /// Share of images on which the module abstained.
    pub abstain_rate: f64,
}

/// The figures `eval` prints.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EvalSummary {
    /// Images scored.
    pub n: usize,
    /// Scored images per label.
    pub counts: BTreeMap<Label, usize>,
    /// Images skipped by normalisation.
    pub skipped: usize,
    /// Images that failed to load or decode.
    pub failed: usize,
    /// ROC AUC of the fused score.
    pub auc: Option<f64>,
    /// Average precision of the fused score.
    pub ap: Option<f64>,
    /// Accuracy at the "Likely AI" threshold (60).
    pub accuracy: Option<f64>,
    /// Share of real images scored ≥ 60.
    pub fpr_real: Option<f64>,
    /// Share of AI images scored ≥ 60.
    pub tpr_ai: Option<f64>,
    /// Share of real images scored ≥ 85 (verdict "AI generated").
    pub fpr_real_85: Option<f64>,
    /// Share of scored images whose verdict is "Uncertain" (40 ≤ score < 60).
    pub uncertain: Option<f64>,
    /// Expected calibration error of score/100 (10 bins).
    pub ece: Option<f64>,
    /// Mean detection time per image.
    pub mean_ms: Option<f64>,
    /// 95th-percentile detection time per image.
    pub p95_ms: Option<f64>,
    /// Per-module ranking quality.
    pub modules: BTreeMap<String, ModuleEval>,
    /// The failures, `path: reason`.
    pub errors: Vec<String>,
    /// One row per source (`--by-source`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub by_source: Option<Vec<by_source::SourceRow>>,
    /// AUC of each generated source against each real source (`--by-source`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_auc: Option<Vec<by_source::SourceAuc>>,
}

/// Load, prepare and detect one labelled image.
pub fn evaluate_one(detector: &Detector, row: &LabelRow, options: &EvalOptions) -> Outcome {
    let bytes = match std::fs::read(&row.path) {
        Ok(b) => b,
        Err(e) => return Outcome::Failed(format!("cannot read: {e}")),
    };
    let prepared = if options.normalize {
        match transform::normalize(&bytes, &options.limits) {
            Ok(Some(b)) => b,
            Ok(None) => return Outcome::Skipped,
            Err(e) => return Outcome::Failed(e.to_string()),
        }
    } else {
        bytes
    };
    let (prepared, chain) = match options.web {
        Some(seed) => match web::process(&prepared, seed, &row.key, &options.limits) {
            Ok((processed, chain)) => (processed.bytes, Some(chain)),
            Err(e) => return Outcome::Failed(format!("web chain: {e}")),
        },
        None => (prepared, None),
    };
    let prepared = match transform::perturb(&prepared, &options.perturb, &options.limits) {
        Ok(b) => b,
        Err(e) => return Outcome::Failed(e.to_string()),
    };
    let started = Instant::now();
    match detector.detect(&prepared) {
        Ok(report) => Outcome::Scored(Box::new(report), started.elapsed().as_secs_f64() * 1e3, chain),
        Err(e) => Outcome::Failed(e.to_string()),
    }
}

/// Evaluate every row in parallel, returning one outcome per row in row order; `on_done` is
/// called after each image (for a progress bar).
pub fn run(
    detector: &Detector,
    rows: &[LabelRow],
    options: &EvalOptions,
    on_done: &(dyn Fn() + Sync),
) -> Vec<Outcome> {
    rows.par_iter()
        .map(|row| {
            let outcome = evaluate_one(detector, row, options);
            on_done();
            outcome
        })
        .collect()
}

/// The fused score of every scored image and whether it is AI (ai or partial), in row order.
pub fn fused_scores(rows: &[LabelRow], outcomes: &[Outcome]) -> (Vec<f64>, Vec<bool>) {
    rows.iter()
        .zip(outcomes)
        .filter_map(|(row, outcome)| match outcome {
            Outcome::Scored(report, _, _) => Some((report.score, row.label.is_ai())),
            _ => None,
        })
        .unzip()
}

/// Turn per-image outcomes into the summary figures.
pub fn summarise(rows: &[LabelRow], outcomes: &[Outcome]) -> EvalSummary {
    let mut scored: Vec<(&LabelRow, &Report, f64)> = Vec::new();
    let (mut skipped, mut errors) = (0, Vec::new());
    for (row, outcome) in rows.iter().zip(outcomes) {
        match outcome {
            Outcome::Scored(report, ms, _) => scored.push((row, report, *ms)),
            Outcome::Skipped => skipped += 1,
            Outcome::Failed(why) => errors.push(format!("{}: {why}", row.path.display())),
        }
    }
    let (scores, truth) = fused_scores(rows, outcomes);
    let times: Vec<f64> = scored.iter().map(|(_, _, ms)| *ms).collect();
    let mut counts = BTreeMap::new();
    for (row, _, _) in &scored {
        *counts.entry(row.label).or_insert(0) += 1;
    }
    let share = |pred: &dyn Fn(usize) -> bool, of: &dyn Fn(usize) -> bool| {
        let pool: Vec<usize> = (0..scored.len()).filter(|&i| of(i)).collect();
        (!pool.is_empty()).then(|| pool.iter().filter(|&&i| pred(i)).count() as f64 / pool.len() as f64)
    };
    let flagged = |i: usize| scores[i] >= DECISION_THRESHOLD;
    let module_names: std::collections::BTreeSet<&String> =
        scored.iter().flat_map(|(_, rep, _)| rep.modules.keys()).collect();
    let modules = module_names
        .into_iter()
        .map(|name| {
            let (module_scores, abstained): (Vec<f64>, Vec<bool>) = scored
                .iter()
                .map(|(_, rep, _)| match rep.modules.get(name) {
                    Some(m) if !m.abstained => (m.score, false),
                    _ => (0.5, true),
                })
                .unzip();
            let abstain_rate = abstained.iter().filter(|&&a| a).count() as f64 / scored.len() as f64;
            (name.clone(), ModuleEval { auc: metrics::roc_auc(&module_scores, &truth), abstain_rate })
        })
        .collect();
    let probabilities: Vec<f64> = scores.iter().map(|s| s / 100.0).collect();
    EvalSummary {
        n: scored.len(),
        counts,
        skipped,
        failed: errors.len(),
        auc: metrics::roc_auc(&scores, &truth),
        ap: metrics::average_precision(&scores, &truth),
        accuracy: share(&|i| flagged(i) == truth[i], &|_| true),
        fpr_real: share(&flagged, &|i| !truth[i]),
        tpr_ai: share(&flagged, &|i| truth[i]),
        fpr_real_85: share(&|i| scores[i] >= STRONG_THRESHOLD, &|i| !truth[i]),
        uncertain: share(&|i| scored[i].1.verdict == Verdict::Uncertain, &|_| true),
        ece: metrics::expected_calibration_error(&probabilities, &truth, 10),
        mean_ms: (!times.is_empty()).then(|| times.iter().sum::<f64>() / times.len() as f64),
        p95_ms: metrics::quantile(&times, 0.95),
        modules,
        errors,
        by_source: None,
        source_auc: None,
    }
}

/// Reports to build outcomes from in unit tests.
#[cfg(test)]
pub(crate) mod test_support {
    use crate::forensics::report::{FileMetadata, Hashes, ImageInfo};
    use crate::forensics::{ImageFormat, Report, Verdict};

    /// A report with this fused score (its verdict band) and nothing else.
    pub fn report(score: f64) -> Report {
        Report {
            score,
            verdict: Verdict::from_score(score),
            presentation: String::new(),
            confidence: 0.5,
            uncertainty: 0.5,
            explanations: vec![],
            hashes: Hashes { sha256: String::new() },
            modules: Default::default(),
            generator: None,
            model: None,
            image: ImageInfo { format: ImageFormat::Png, width: 8, height: 8, bytes: 0 },
            cached: false,
            elapsed_ms: 0.0,
            details: vec![],
            regions: vec![],
            file_metadata: FileMetadata::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn row(label: Label) -> LabelRow {
        LabelRow {
            path: PathBuf::from("x.png"),
            label,
            generator: String::new(),
            source: "s".into(),
            key: "x".into(),
        }
    }

    #[test]
    fn summary_counts_strong_false_positives_and_uncertain_verdicts() {
        let labels =
            [Label::Real, Label::Real, Label::Real, Label::Real, Label::Ai, Label::Partial, Label::Ai];
        let scores = [10.0, 45.0, 70.0, 90.0, 50.0, 88.0, 99.0];
        let rows: Vec<LabelRow> = labels.iter().map(|&l| row(l)).collect();
        let mut outcomes: Vec<Outcome> =
            scores.iter().map(|&s| Outcome::Scored(Box::new(test_support::report(s)), 1.0, None)).collect();
        outcomes[6] = Outcome::Failed("gone".into());
        let s = summarise(&rows, &outcomes);
        assert_eq!((s.n, s.failed), (6, 1));
        assert_eq!(s.fpr_real, Some(0.5));
        assert_eq!(s.fpr_real_85, Some(0.25));
        assert_eq!(s.uncertain, Some(2.0 / 6.0));
        assert_eq!(s.by_source, None);
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["fpr_real_85"], 0.25);
        assert!(json.get("by_source").is_none() && json.get("source_auc").is_none());
    }
}
