//! `tellscan calibrate --labels LABELS.csv [--labels MORE.csv] --out weights/fusion.json`: fit
//! the fusion combiner and its score scale on labelled corpora by leave-one-source-out
//! cross-validation, measure the whole procedure by nested leave-one-source-out, and write
//! the weights.
//!
//! Every `ai` and `real` row is analysed (`partial` rows are left out: an edited photo is
//! neither class's typical evidence); by default twice, as the file is (metadata and
//! provenance speak) and through a web chain drawn from `--seed` (what platforms do to both
//! classes alike: see [`crate::learn::web`]); `--normalized` adds the pixel-only native crop of
//! `eval --normalize`. Every sample of an image shares its source, the cross-validation
//! group. With `--ml-folds DIR` (from `tellscan train --validate K --fold-weights DIR`) each
//! image's `ml` score comes from the fold model that never saw its source.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, ensure, Context};
use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;
use serde::Deserialize;

use crate::eval::metrics::{expected_calibration_error, roc_auc};
use crate::eval::{self, transform, EvalOptions, Label, LabelRow, Outcome};
use crate::forensics::report::{AI_GENERATED_FROM, LIKELY_AI_FROM, UNCERTAIN_FROM};
use crate::forensics::weights::WeightsSource;
use crate::forensics::{DecodeLimits, Detector, DetectorConfig};
use crate::learn::calibration::{self, BandTargets, Calibration, Sample, BAND_TARGETS, ECE_BINS, L2_GRID};

/// How `calibrate` builds its samples.
#[derive(Debug, Clone)]
pub struct CalibrateOptions {
    /// Analyse each image normalised (metadata stripped, centre 512×512, JPEG q90).
    pub normalized: bool,
    /// Analyse each file as it is.
    pub raw: bool,
    /// Analyse each image after a web chain drawn from this seed and its path.
    pub web: Option<u64>,
    /// A folder of fold models (`fold-K.safetensors` with `fold-K.sources.txt`, the sources
    /// it never saw): each image is analysed by the fold model that did not see its source.
    pub ml_folds: Option<PathBuf>,
    /// What the verdict bands must keep on held-out sources.
    pub targets: BandTargets,
    /// A CSV `path,score` of out-of-fold ML scores (0-1): for a listed image the `ml`
    /// module's score is replaced by it, since the model has seen the corpus. Paths are
    /// absolute, or relative to the labels file's folder or to this file's folder.
    pub ml_oof: Option<PathBuf>,
    /// L2 penalties to choose from.
    pub l2_grid: Vec<f64>,
    /// Write every sample's nested held-out score here (CSV).
    pub held_out_scores: Option<PathBuf>,
    /// Decode limits for normalisation.
    pub limits: DecodeLimits,
}

impl Default for CalibrateOptions {
    fn default() -> Self {
        Self {
            normalized: false,
            raw: true,
            web: Some(1),
            ml_folds: None,
            targets: BAND_TARGETS,
            ml_oof: None,
            l2_grid: L2_GRID.to_vec(),
            held_out_scores: None,
            limits: DecodeLimits::default(),
        }
    }
}

impl CalibrateOptions {
    /// The conditions, in words (recorded in the weights file).
    fn inputs(&self) -> String {
        let mut parts = Vec::new();
        if self.raw {
            parts.push("raw files".to_string());
        }
        if let Some(seed) = self.web {
            parts.push(format!("web chains (seed {seed})"));
        }
        if self.normalized {
            parts.push(format!(
                "normalised (metadata stripped, centre {0}x{0}, JPEG q{1})",
                transform::NORMALIZED_SIDE,
                transform::NORMALIZED_QUALITY
            ));
        }
        parts.join(" and ")
    }

    /// The conditions: name and how `eval` prepares the image.
    fn conditions(&self) -> Vec<(&'static str, EvalOptions)> {
        let base = EvalOptions { limits: self.limits, ..Default::default() };
        let mut conditions = Vec::new();
        if self.raw {
            conditions.push(("raw", base.clone()));
        }
        if let Some(seed) = self.web {
            conditions.push(("web", EvalOptions { web: Some(seed), ..base.clone() }));
        }
        if self.normalized {
            conditions.push(("normalised", EvalOptions { normalize: true, ..base }));
        }
        conditions
    }
}

/// The fold models of `--ml-folds`: each detector with the sources its model never saw.
pub struct FoldDetectors(Vec<(std::collections::HashSet<String>, Detector)>);

impl FoldDetectors {
    /// Read every `DIR/fold-K.safetensors` with its `DIR/fold-K.sources.txt` and build one
    /// detector per fold from `config` with that fold's weights.
    pub fn load(dir: &Path, config: &DetectorConfig) -> anyhow::Result<Self> {
        let entries = std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))?;
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.starts_with("fold-") && n.ends_with(".safetensors"))
            .collect();
        names.sort();
        let mut folds = Vec::new();
        for name in names {
            let weights = dir.join(&name);
            let sources = dir.join(name.replace(".safetensors", ".sources.txt"));
            let text = std::fs::read_to_string(&sources)
                .with_context(|| format!("cannot read the sources of {name}: {}", sources.display()))?;
            let held_out = text.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect();
            let config = DetectorConfig { ml_weights: Some(WeightsSource::File(weights)), ..config.clone() };
            let detector = Detector::new(&config)?;
            folds.push((held_out, detector));
        }
        ensure!(!folds.is_empty(), "{} holds no fold-K.safetensors", dir.display());
        Ok(Self(folds))
    }

    /// The detector whose model never saw `source`.
    fn for_source(&self, source: &str) -> Option<&Detector> {
        self.0.iter().find(|(sources, _)| sources.contains(source)).map(|(_, d)| d)
    }
}

/// The module whose scores `--ml-oof` replaces.
const ML_MODULE: &str = "ml";

/// Fit, print the report and write the weights to `out`.
/// `config` is the detector's (its fusion is ignored: the fit must not depend on an earlier
/// one); with `--ml-folds` each fold's detector is `config` with the fold's weights.
pub fn run(
    config: &DetectorConfig,
    labels: &[PathBuf],
    out: &Path,
    options: CalibrateOptions,
) -> anyhow::Result<ExitCode> {
    ensure!(!options.conditions().is_empty(), "nothing to analyse: every condition is turned off");
    ensure!(!labels.is_empty(), "no labels file given");
    let config = DetectorConfig { fusion: None, ..config.clone() };
    let detector = &Detector::new(&config)?;
    let mut rows = Vec::new();
    for file in labels {
        rows.extend(eval::read_labels(file)?);
    }
    let oof = match &options.ml_oof {
        Some(path) => Some(read_oof(path, labels)?),
        None => None,
    };
    let folds = match &options.ml_folds {
        Some(dir) => Some(FoldDetectors::load(dir, &config)?),
        None => None,
    };
    let bar = ProgressBar::new(rows.len() as u64)
        .with_style(ProgressStyle::with_template("{bar:40} {pos}/{len} {elapsed_precise} eta {eta}")?);
    let collected = collect(detector, folds.as_ref(), &rows, &options, oof.as_ref(), &|| bar.inc(1));
    bar.finish_and_clear();
    if let (Some(path), Some(oof)) = (&options.ml_oof, &oof) {
        if collected.ml_replaced == 0 {
            bail!(
                "none of the {} paths in {} matches a row of the labels files; paths are absolute or \
                 relative to its folder or to a labels file's folder",
                oof.len(),
                path.display(),
            );
        }
    }
    let calibration =
        calibration::calibrate(&collected.samples, &options.l2_grid, &options.inputs(), options.targets)?;
    calibration.weights.save(out)?;
    let mut stdout = std::io::stdout().lock();
    write_report(&mut stdout, &collected, &calibration, &options)?;
    if let Some(path) = &options.held_out_scores {
        write_held_out(path, &collected, &calibration)?;
        writeln!(stdout, "wrote the nested held-out scores to {}", path.display())?;
    }
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
    /// Images analysed by a fold model that never saw their source.
    pub ml_from_folds: usize,
    /// Per sample: the image's path as its labels file writes it.
    pub keys: Vec<String>,
}

/// Analyse every `ai` and `real` row in parallel; `on_done` is called after each row.
pub fn collect(
    detector: &Detector,
    folds: Option<&FoldDetectors>,
    rows: &[LabelRow],
    options: &CalibrateOptions,
    oof: Option<&HashMap<PathBuf, f64>>,
    on_done: &(dyn Fn() + Sync),
) -> Collected {
    let conditions = options.conditions();
    let outcomes: Vec<(bool, Vec<(&'static str, Outcome)>)> = rows
        .par_iter()
        .map(|row| {
            let fold = folds.and_then(|f| f.for_source(&row.source));
            let outcomes = if row.label == Label::Partial {
                vec![]
            } else {
                let detector = fold.unwrap_or(detector);
                conditions.iter().map(|(name, o)| (*name, eval::evaluate_one(detector, row, o))).collect()
            };
            on_done();
            (fold.is_some(), outcomes)
        })
        .collect();
    let mut collected = Collected::default();
    for (row, (from_fold, outcomes)) in rows.iter().zip(outcomes) {
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
                    let mut sample =
                        Sample::from_report(&report, row.label.is_ai(), group).in_condition(condition);
                    if let Some(score) = ml {
                        sample.modules.insert(ML_MODULE.to_string(), (score, false));
                    }
                    collected.samples.push(sample);
                    collected.conditions.push(condition);
                    collected.keys.push(row.key.clone());
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
            collected.ml_from_folds += from_fold as usize;
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

/// Read `path,score` rows, keyed by canonical image path: a relative path is looked up under
/// each labels file's folder, then under the file's own.
pub fn read_oof(path: &Path, labels: &[PathBuf]) -> anyhow::Result<HashMap<PathBuf, f64>> {
    // `tellscan train --held-out` writes each path as its own labels file does, relative to
    // that file's folder, and training takes several labels files
    let bases: Vec<&Path> = labels.iter().filter_map(|l| l.parent()).chain(path.parent()).collect();
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
    match (&options.ml_oof, &options.ml_folds) {
        (Some(path), _) => {
            writeln!(
                out,
                "ml: out-of-fold scores for {} of {} images from {}",
                c.ml_replaced,
                c.images,
                path.display()
            )?;
            if c.ml_replaced < c.images {
                writeln!(
                    out,
                    "warning: {} images have no row in {}: where ml votes on them, its score is in-sample \
                     (images too small for ml have no held-out score and are counted here too)",
                    c.images - c.ml_replaced,
                    path.display()
                )?;
            }
        }
        (None, Some(dir)) => writeln!(
            out,
            "ml: {} of {} images analysed by a fold model of {} that never saw their source",
            c.ml_from_folds,
            c.images,
            dir.display()
        )?,
        (None, None) if ml_votes => writeln!(
            out,
            "warning: the ml module's scores are in-sample (it was trained on this corpus), so the fit \
             over-trusts them; pass --ml-oof with the held-out scores of `tellscan train --validate --held-out`"
        )?,
        (None, None) => {}
    }
    let grid: Vec<String> = cal.grid.iter().map(|(l2, loss)| format!("{l2}: {loss:.4}")).collect();
    writeln!(out, "held-out log-loss by L2 penalty: {}; chosen {}", grid.join(", "), info.l2)?;
    writeln!(out, "held-out figures, {} folds (one source left out each):", info.folds)?;
    writeln!(out, "  {:<24} {:>12} {:>12} {:>12} {:>12}", "", "ECE v1", "ECE calib", "AUC v1", "AUC calib")?;
    let conditions: Vec<&str> = options.conditions().into_iter().map(|(name, _)| name).collect();
    let mut subsets: Vec<(&str, Vec<usize>)> = vec![("all", (0..c.samples.len()).collect())];
    if conditions.len() > 1 {
        for &condition in &conditions {
            subsets
                .push((condition, (0..c.samples.len()).filter(|&i| c.conditions[i] == condition).collect()));
        }
    }
    for (name, idx) in &subsets {
        // samples of a fold that could not be fitted (the only source of a class) have no
        // held-out probability
        let idx: Vec<usize> = idx.iter().copied().filter(|&i| !cal.cv.calibrated[i].is_nan()).collect();
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
    if let Some(scale) = &cal.weights.scale {
        let [_, [p60, _], [p85, _], _] = scale.knots[1..].try_into().unwrap_or([[0.0; 2]; 4]);
        writeln!(
            out,
            "score scale: probability {p60:.4} -> 60, {p85:.4} -> 85 (targets: real photos >= 60 at most {:.0}%,              >= 85 at most {:.0}%, fitted at {:.0}% of each)",
            100.0 * options.targets.fpr_60,
            100.0 * options.targets.fpr_85,
            100.0 * options.targets.margin
        )?;
    }
    writeln!(
        out,
        "nested leave-one-source-out (penalty, fit and score scale chosen without the source reported):"
    )?;
    writeln!(
        out,
        "  {:<24} {:>7} {:>9} {:>9} {:>9} {:>7} {:>9}",
        "", "AUC", "FPR@60", "FPR@85", "TPR@60", "ECE", "uncertain"
    )?;
    for (name, idx) in &subsets {
        let f = BandFigures::of(idx.iter().map(|&i| (cal.nested[i], c.samples[i].positive)));
        writeln!(
            out,
            "  {:<24} {:>7} {:>9} {:>9} {:>9} {:>7} {:>9}",
            format!("{name} (n={})", idx.len()),
            fmt(f.auc),
            fmt(f.fpr_60),
            fmt(f.fpr_85),
            fmt(f.tpr_60),
            fmt(f.ece),
            fmt(f.uncertain),
        )?;
    }
    writeln!(out, "per source (nested held-out scores):")?;
    writeln!(
        out,
        "  {:<44} {:>5} {:>10} {:>5} {:>6} {:>6} {:>6} {:>6}",
        "source", "label", "condition", "n", "mean", ">=60", ">=85", "uncert"
    )?;
    let mut by_source: BTreeMap<(&str, bool, &str), Vec<usize>> = BTreeMap::new();
    for (i, s) in c.samples.iter().enumerate() {
        by_source.entry((s.group.as_str(), s.positive, c.conditions[i])).or_default().push(i);
    }
    for ((source, positive, condition), idx) in by_source {
        let scores: Vec<f64> = idx.iter().map(|&i| cal.nested[i]).collect();
        let share = |band_from| calibration::share_at_least(&scores, band_from).unwrap_or(0.0);
        writeln!(
            out,
            "  {:<44} {:>5} {:>10} {:>5} {:>6.1} {:>6.3} {:>6.3} {:>6.3}",
            eval::by_source::short_name(source),
            if positive { "ai" } else { "real" },
            condition,
            scores.len(),
            100.0 * scores.iter().sum::<f64>() / scores.len() as f64,
            share(LIKELY_AI_FROM),
            share(AI_GENERATED_FROM),
            share(UNCERTAIN_FROM) - share(LIKELY_AI_FROM),
        )?;
    }
    Ok(())
}

/// The figures of a set of (score 0-1, is AI) pairs at the verdict bands.
struct BandFigures {
    auc: Option<f64>,
    fpr_60: Option<f64>,
    fpr_85: Option<f64>,
    tpr_60: Option<f64>,
    ece: Option<f64>,
    uncertain: Option<f64>,
}

impl BandFigures {
    fn of(pairs: impl Iterator<Item = (f64, bool)>) -> Self {
        let (scores, truth): (Vec<f64>, Vec<bool>) = pairs.unzip();
        let class = |positive: bool| -> Vec<f64> {
            scores.iter().zip(&truth).filter(|(_, &t)| t == positive).map(|(&s, _)| s).collect()
        };
        let (real, ai) = (class(false), class(true));
        let share = calibration::share_at_least;
        Self {
            auc: roc_auc(&scores, &truth),
            fpr_60: share(&real, LIKELY_AI_FROM),
            fpr_85: share(&real, AI_GENERATED_FROM),
            tpr_60: share(&ai, LIKELY_AI_FROM),
            ece: expected_calibration_error(&scores, &truth, ECE_BINS),
            uncertain: share(&scores, UNCERTAIN_FROM).zip(share(&scores, LIKELY_AI_FROM)).map(|(a, b)| a - b),
        }
    }
}

/// One row per sample: `path,label,source,condition,held_out_score` (0-100, nested),
/// `loso_probability` (0-1, the fit without the sample's source, before the score scale; empty
/// when that fold could not be fitted), then each module's score (0-1; empty when it abstained
/// or did not run), so that per-source and per-module figures can be computed from the file.
fn write_held_out(path: &Path, c: &Collected, cal: &Calibration) -> anyhow::Result<()> {
    let mut w = csv::Writer::from_path(path).with_context(|| format!("cannot write {}", path.display()))?;
    let modules: BTreeSet<&str> =
        c.samples.iter().flat_map(|s| s.modules.keys().map(String::as_str)).collect();
    let mut header = vec!["path", "label", "source", "condition", "held_out_score", "loso_probability"];
    header.extend(&modules);
    w.write_record(&header)?;
    for (i, s) in c.samples.iter().enumerate() {
        let loso = cal.cv.calibrated[i];
        let mut row = vec![
            c.keys[i].clone(),
            if s.positive { "ai" } else { "real" }.to_string(),
            s.group.clone(),
            c.conditions[i].to_string(),
            format!("{:.2}", 100.0 * cal.nested[i]),
            if loso.is_nan() { String::new() } else { format!("{loso:.6}") },
        ];
        row.extend(modules.iter().map(|m| match s.modules.get(*m) {
            Some(&(score, false)) => format!("{score:.6}"),
            _ => String::new(),
        }));
        w.write_record(&row)?;
    }
    w.flush()?;
    Ok(())
}
