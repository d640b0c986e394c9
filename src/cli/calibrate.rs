//! `tellscan calibrate --labels LABELS.csv --out weights/fusion.json`: fit the fusion combiner
//! on a labelled corpus by leave-one-source-out cross-validation and write its weights.
//!
//! Every `ai` and `real` row is analysed (`partial` rows are left out: an edited photo is
//! neither class's typical evidence); by default twice, normalised as `eval --normalize` does
//! (metadata stripped, centre 512×512, JPEG q90) and as the file is, so the fit sees both
//! the pixel-only condition and the one where metadata and provenance speak. Both samples of
//! an image share its source, which is the cross-validation group.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, ensure, Context};
use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;
use serde::Deserialize;

use crate::eval::metrics::{expected_calibration_error, roc_auc};
use crate::eval::{self, transform, EvalOptions, Label, LabelRow, Outcome};
use crate::forensics::calibration::{self, Calibration, Sample, ECE_BINS, L2_GRID};
use crate::forensics::{DecodeLimits, Detector};

/// How `calibrate` builds its samples.
#[derive(Debug, Clone)]
pub struct CalibrateOptions {
    /// Analyse each image normalised (metadata stripped, centre 512×512, JPEG q90).
    pub normalized: bool,
    /// Analyse each file as it is.
    pub raw: bool,
    /// A CSV `path,score` of out-of-fold ML scores (0-1): for a listed image the `ml`
    /// module's score is replaced by it, since the model has seen the corpus. Paths are
    /// absolute, or relative to the labels file's folder or to this file's folder.
    pub ml_oof: Option<PathBuf>,
    /// L2 penalties to choose from.
    pub l2_grid: Vec<f64>,
    /// Decode limits for normalisation.
    pub limits: DecodeLimits,
}

impl Default for CalibrateOptions {
    fn default() -> Self {
        Self {
            normalized: true,
            raw: true,
            ml_oof: None,
            l2_grid: L2_GRID.to_vec(),
            limits: DecodeLimits::default(),
        }
    }
}

impl CalibrateOptions {
    /// The conditions, in words (recorded in the weights file).
    fn inputs(&self) -> String {
        let normalized = format!(
            "normalised (metadata stripped, centre {0}x{0}, JPEG q{1})",
            transform::NORMALIZED_SIDE,
            transform::NORMALIZED_QUALITY
        );
        match (self.normalized, self.raw) {
            (true, true) => format!("{normalized} and raw files"),
            (true, false) => normalized,
            _ => "raw files".into(),
        }
    }
}

/// The module whose scores `--ml-oof` replaces.
const ML_MODULE: &str = "ml";

/// Fit, print the report and write the weights to `out`.
pub fn run(
    detector: &Detector,
    labels: &Path,
    out: &Path,
    options: CalibrateOptions,
) -> anyhow::Result<ExitCode> {
    ensure!(options.normalized || options.raw, "nothing to analyse: both conditions are turned off");
    let rows = eval::read_labels(labels)?;
    let oof = match &options.ml_oof {
        Some(path) => Some(read_oof(path, labels)?),
        None => None,
    };
    let bar = ProgressBar::new(rows.len() as u64)
        .with_style(ProgressStyle::with_template("{bar:40} {pos}/{len} {elapsed_precise} eta {eta}")?);
    let collected = collect(detector, &rows, &options, oof.as_ref(), &|| bar.inc(1));
    bar.finish_and_clear();
    if let (Some(path), Some(oof)) = (&options.ml_oof, &oof) {
        if collected.ml_replaced == 0 {
            bail!(
                "none of the {} paths in {} matches a row of {}; paths are absolute or relative to \
                 either file's folder",
                oof.len(),
                path.display(),
                labels.display()
            );
        }
    }
    let calibration = calibration::calibrate(&collected.samples, &options.l2_grid, &options.inputs())?;
    calibration.weights.save(out)?;
    let mut stdout = std::io::stdout().lock();
    write_report(&mut stdout, &collected, &calibration, &options)?;
    writeln!(stdout, "wrote {}", out.display())?;
    Ok(ExitCode::SUCCESS)
}

/// The samples and what happened on the way.
#[derive(Debug, Default)]
pub struct Collected {
    /// The samples, with the condition each was analysed in (`normalised` or `raw`).
    pub samples: Vec<Sample>,
    /// Condition per sample.
    pub conditions: Vec<&'static str>,
    /// Images used (at least one sample).
    pub images: usize,
    /// `partial` rows left out.
    pub partial: usize,
    /// Images too small for the normalised crop.
    pub too_small: usize,
    /// `path: reason` per failed analysis.
    pub errors: Vec<String>,
    /// Images whose `ml` score was replaced by its out-of-fold score.
    pub ml_replaced: usize,
}

/// Analyse every `ai` and `real` row in parallel; `on_done` is called after each row.
pub fn collect(
    detector: &Detector,
    rows: &[LabelRow],
    options: &CalibrateOptions,
    oof: Option<&HashMap<PathBuf, f64>>,
    on_done: &(dyn Fn() + Sync),
) -> Collected {
    let conditions: Vec<(&'static str, EvalOptions)> =
        [(options.normalized, "normalised", true), (options.raw, "raw", false)]
            .into_iter()
            .filter(|(on, _, _)| *on)
            .map(|(_, name, normalize)| {
                (name, EvalOptions { normalize, limits: options.limits, ..Default::default() })
            })
            .collect();
    let outcomes: Vec<Vec<(&'static str, Outcome)>> = rows
        .par_iter()
        .map(|row| {
            let outcomes = if row.label == Label::Partial {
                vec![]
            } else {
                conditions.iter().map(|(name, o)| (*name, eval::evaluate_one(detector, row, o))).collect()
            };
            on_done();
            outcomes
        })
        .collect();
    let mut collected = Collected::default();
    for (row, outcomes) in rows.iter().zip(outcomes) {
        if row.label == Label::Partial {
            collected.partial += 1;
            continue;
        }
        let ml = oof.and_then(|oof| oof.get(&canonical(&row.path))).copied();
        let group = if row.source.is_empty() { "(no source)" } else { row.source.as_str() };
        let before = collected.samples.len();
        for (condition, outcome) in outcomes {
            match outcome {
                Outcome::Scored(report, _, _) => {
                    let mut sample = Sample::from_report(&report, row.label.is_ai(), group);
                    if let Some(score) = ml {
                        sample.modules.insert(ML_MODULE.to_string(), (score, false));
                    }
                    collected.samples.push(sample);
                    collected.conditions.push(condition);
                }
                Outcome::Skipped => collected.too_small += 1,
                Outcome::Failed(why) => {
                    collected.errors.push(format!("{} ({condition}): {why}", row.path.display()))
                }
            }
        }
        if collected.samples.len() > before {
            collected.images += 1;
            collected.ml_replaced += ml.is_some() as usize;
        }
    }
    collected
}

/// One row of the out-of-fold file.
#[derive(Debug, Deserialize)]
struct OofRow {
    path: PathBuf,
    score: f64,
}

/// Read `path,score` rows, keyed by canonical image path.
pub fn read_oof(path: &Path, labels: &Path) -> anyhow::Result<HashMap<PathBuf, f64>> {
    let bases: Vec<&Path> = [labels.parent(), path.parent()].into_iter().flatten().collect();
    let mut reader = csv::Reader::from_path(path)
        .with_context(|| format!("cannot read out-of-fold ML scores {}", path.display()))?;
    let mut scores = HashMap::new();
    for (i, row) in reader.deserialize::<OofRow>().enumerate() {
        let row = row.with_context(|| format!("{}: row {} is malformed", path.display(), i + 2))?;
        ensure!(
            (0.0..=1.0).contains(&row.score),
            "{}: row {}: score {} is not in 0-1",
            path.display(),
            i + 2,
            row.score
        );
        let file = if row.path.is_absolute() {
            row.path.clone()
        } else {
            bases.iter().map(|b| b.join(&row.path)).find(|p| p.exists()).unwrap_or(row.path.clone())
        };
        scores.insert(canonical(&file), row.score);
    }
    ensure!(!scores.is_empty(), "{} has no rows", path.display());
    Ok(scores)
}

fn canonical(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

fn fmt(v: Option<f64>) -> String {
    v.map_or_else(|| "n/a".to_string(), |x| format!("{x:.3}"))
}

fn write_report(
    out: &mut impl Write,
    c: &Collected,
    cal: &Calibration,
    options: &CalibrateOptions,
) -> std::io::Result<()> {
    let info = cal.weights.fitted.as_ref().expect("calibrate fills in the fit's facts");
    writeln!(out, "calibration on {}", options.inputs())?;
    writeln!(
        out,
        "samples: {} (ai={} real={}) from {} images; {} partial left out, {} too small to normalise, \
         {} failed; {} decided by decisive evidence (scored, not fitted)",
        info.samples,
        info.positive,
        info.negative,
        c.images,
        c.partial,
        c.too_small,
        c.errors.len(),
        info.decisive
    )?;
    for e in c.errors.iter().take(5) {
        writeln!(out, "  failed: {e}")?;
    }
    let ml_votes =
        c.samples.iter().any(|s| s.modules.get(ML_MODULE).is_some_and(|&(_, abstained)| !abstained));
    match &options.ml_oof {
        Some(path) => {
            writeln!(out, "ml: out-of-fold scores for {} images from {}", c.ml_replaced, path.display())?
        }
        None if ml_votes => writeln!(
            out,
            "warning: the ml module's scores are in-sample (it was trained on this corpus), so the fit \
             over-trusts them; pass --ml-oof with the held-out scores of `tellscan train --validate --held-out`"
        )?,
        None => {}
    }
    let grid: Vec<String> = cal.grid.iter().map(|(l2, loss)| format!("{l2}: {loss:.4}")).collect();
    writeln!(out, "held-out log-loss by L2 penalty: {}; chosen {}", grid.join(", "), info.l2)?;
    writeln!(out, "held-out figures, {} folds (one source left out each):", info.folds)?;
    writeln!(out, "  {:<24} {:>12} {:>12} {:>12} {:>12}", "", "ECE v1", "ECE calib", "AUC v1", "AUC calib")?;
    let mut subsets: Vec<(&str, Vec<usize>)> = vec![("all", (0..c.samples.len()).collect())];
    if options.normalized && options.raw {
        for condition in ["normalised", "raw"] {
            subsets
                .push((condition, (0..c.samples.len()).filter(|&i| c.conditions[i] == condition).collect()));
        }
    }
    for (name, idx) in subsets {
        let truth: Vec<bool> = idx.iter().map(|&i| c.samples[i].positive).collect();
        let pick = |p: &[f64]| idx.iter().map(|&i| p[i]).collect::<Vec<f64>>();
        let (before, after) = (pick(&cal.cv.uncalibrated), pick(&cal.cv.calibrated));
        writeln!(
            out,
            "  {:<24} {:>12} {:>12} {:>12} {:>12}",
            format!("{name} (n={})", idx.len()),
            fmt(expected_calibration_error(&before, &truth, ECE_BINS)),
            fmt(expected_calibration_error(&after, &truth, ECE_BINS)),
            fmt(roc_auc(&before, &truth)),
            fmt(roc_auc(&after, &truth)),
        )?;
    }
    writeln!(out, "coefficients (log-odds): bias {:+.3}", cal.weights.bias)?;
    writeln!(out, "  {:<12} {:>16} {:>16}", "module", "× logit(score)", "if abstained")?;
    for (name, w) in &cal.weights.weights {
        // `+ 0.0` prints a negative zero as +0.000
        let a = cal.weights.abstain.get(name).copied().unwrap_or(0.0) + 0.0;
        writeln!(out, "  {name:<12} {:>+16.3} {a:>+16.3}", w + 0.0)?;
    }
    if info.cv_ece_calibrated >= info.cv_ece_uncalibrated {
        writeln!(out, "warning: the calibrated fusion is not better calibrated than v1 on held-out sources")?;
    }
    Ok(())
}
