//! `tellscan eval LABELS.csv`: print the detector's figures on a labelled set.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use indicatif::{ProgressBar, ProgressStyle};

use crate::eval::{self, EvalOptions, EvalSummary};
use crate::forensics::Detector;

/// Run the evaluation and print it as text or JSON.
pub fn run(
    detector: &Detector,
    labels: &Path,
    json: bool,
    scores: Option<&Path>,
    options: EvalOptions,
) -> anyhow::Result<ExitCode> {
    let rows = eval::read_labels(labels)?;
    let bar = ProgressBar::new(rows.len() as u64)
        .with_style(ProgressStyle::with_template("{bar:40} {pos}/{len} {elapsed_precise} eta {eta}")?);
    let outcomes = eval::run(detector, &rows, &options, &|| bar.inc(1));
    bar.finish_and_clear();
    if let Some(path) = scores {
        eval::scores::write(path, &rows, &outcomes)?;
    }
    let summary = eval::summarise(&rows, &outcomes);
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&summary)?)?;
    } else {
        write_text(&mut out, &summary, &options)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn fmt(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "n/a".to_string(), |x| format!("{x:.digits$}"))
}

fn write_text(out: &mut impl Write, s: &EvalSummary, options: &EvalOptions) -> std::io::Result<()> {
    let mut steps = Vec::new();
    if options.normalize {
        steps.push("normalised (metadata stripped, centre 512x512, JPEG q90)".to_string());
    }
    if let Some(seed) = options.web {
        steps.push(format!("web chains (seed {seed})"));
    }
    if !options.perturb.0.is_empty() {
        steps.push(format!("perturbed {:?}", options.perturb.0));
    }
    let mode = if steps.is_empty() { "raw files".to_string() } else { steps.join(", then ") };
    writeln!(out, "evaluation on {mode}")?;
    let counts: Vec<String> = s.counts.iter().map(|(l, n)| format!("{l:?}={n}").to_lowercase()).collect();
    writeln!(
        out,
        "images: {} scored ({}), {} skipped, {} failed",
        s.n,
        counts.join(" "),
        s.skipped,
        s.failed
    )?;
    writeln!(out, "fused score: AUC {}  AP {}  ECE {}", fmt(s.auc, 3), fmt(s.ap, 3), fmt(s.ece, 3))?;
    writeln!(
        out,
        "at threshold {}: accuracy {}  FPR(real) {}  TPR(ai) {}",
        eval::DECISION_THRESHOLD,
        fmt(s.accuracy, 3),
        fmt(s.fpr_real, 3),
        fmt(s.tpr_ai, 3)
    )?;
    writeln!(
        out,
        "at threshold {}: FPR(real) {}    verdict Uncertain: {} of all",
        eval::STRONG_THRESHOLD,
        fmt(s.fpr_real_85, 3),
        fmt(s.uncertain, 3)
    )?;
    writeln!(out, "time per image: mean {} ms  p95 {} ms", fmt(s.mean_ms, 1), fmt(s.p95_ms, 1))?;
    writeln!(out, "{:<12} {:>6} {:>9}", "module", "AUC", "abstain")?;
    for (name, m) in &s.modules {
        writeln!(out, "{:<12} {:>6} {:>8.1}%", name, fmt(m.auc, 3), 100.0 * m.abstain_rate)?;
    }
    for e in &s.errors {
        writeln!(out, "failed: {e}")?;
    }
    Ok(())
}
