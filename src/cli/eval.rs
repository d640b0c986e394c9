//! `tellscan eval LABELS.csv`: print the detector's figures on a labelled set.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use indicatif::{ProgressBar, ProgressStyle};

use crate::eval::by_source::{self, SourceAuc, SourceRow};
use crate::eval::{self, EvalOptions, EvalSummary, Label};
use crate::forensics::Detector;

/// What `eval` writes besides the summary.
#[derive(Debug, Clone, Copy, Default)]
pub struct Outputs<'a> {
    /// Print one JSON object instead of text.
    pub json: bool,
    /// Write one CSV row per image here.
    pub scores: Option<&'a Path>,
    /// Add the per-source rows and the AUC of each generated source against each real one.
    pub by_source: bool,
    /// Draw the ROC curve, the score histograms and the reliability diagram into this folder.
    pub plot: Option<&'a Path>,
}

/// Run the evaluation and print it as text or JSON.
pub fn run(
    detector: &Detector,
    labels: &Path,
    outputs: Outputs<'_>,
    options: EvalOptions,
) -> anyhow::Result<ExitCode> {
    let rows = eval::read_labels(labels)?;
    let bar = ProgressBar::new(rows.len() as u64)
        .with_style(ProgressStyle::with_template("{bar:40} {pos}/{len} {elapsed_precise} eta {eta}")?);
    let outcomes = eval::run(detector, &rows, &options, &|| bar.inc(1));
    bar.finish_and_clear();
    if let Some(path) = outputs.scores {
        eval::scores::write(path, &rows, &outcomes)?;
    }
    if let Some(dir) = outputs.plot {
        let (scores, positive) = eval::fused_scores(&rows, &outcomes);
        eval::plot::write_all(dir, &scores, &positive)?;
    }
    let mut summary = eval::summarise(&rows, &outcomes);
    if outputs.by_source {
        let split = by_source::compute(&rows, &outcomes);
        summary.by_source = Some(split.rows);
        summary.source_auc = Some(split.auc);
    }
    let mut out = std::io::stdout().lock();
    if outputs.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&summary)?)?;
    } else {
        write_text(&mut out, &summary, &options)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn fmt(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "n/a".to_string(), |x| format!("{x:.digits$}"))
}

fn percent(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_string(), |x| format!("{:.1}%", 100.0 * x))
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
    if let (Some(rows), Some(auc)) = (&s.by_source, &s.source_auc) {
        write_by_source(out, rows, auc)?;
    }
    for e in &s.errors {
        writeln!(out, "failed: {e}")?;
    }
    Ok(())
}

/// Longest source name a table shows; longer ones keep their start and end.
const NAME_WIDTH: usize = 40;

fn display_name(source: &str) -> String {
    let short = by_source::short_name(source);
    let chars: Vec<char> = short.chars().collect();
    match chars.len() {
        0 => "(no source)".to_string(),
        n if n <= NAME_WIDTH => short.to_string(),
        n => {
            let head: String = chars[..NAME_WIDTH - 12].iter().collect();
            let tail: String = chars[n - 11..].iter().collect();
            format!("{head}…{tail}")
        }
    }
}

fn write_by_source(out: &mut impl Write, rows: &[SourceRow], auc: &[SourceAuc]) -> std::io::Result<()> {
    let width = rows.iter().map(|r| display_name(&r.source).chars().count()).max().unwrap_or(0).max(6);
    writeln!(out)?;
    writeln!(
        out,
        "{:<width$} {:<15} {:>5} {:>6} {:>7} {:>7} {:>7} {:>5} {:>5}",
        "source", "labels", "n", "mean", ">=60", ">=85", "uncert", "skip", "fail"
    )?;
    for r in rows {
        let labels: Vec<&str> = r
            .labels
            .iter()
            .map(|l| match l {
                Label::Ai => "ai",
                Label::Partial => "partial",
                Label::Real => "real",
            })
            .collect();
        writeln!(
            out,
            "{:<width$} {:<15} {:>5} {:>6} {:>7} {:>7} {:>7} {:>5} {:>5}",
            display_name(&r.source),
            labels.join("+"),
            r.n,
            fmt(r.mean_score, 1),
            percent(r.share_60),
            percent(r.share_85),
            percent(r.uncertain),
            r.skipped,
            r.failed
        )?;
    }
    // the real sources as numbered columns, the generated sources as rows
    let mut real: Vec<(&str, usize)> = Vec::new();
    let mut generated: Vec<(&str, usize)> = Vec::new();
    for pair in auc {
        if !real.iter().any(|(s, _)| *s == pair.real_source) {
            real.push((&pair.real_source, pair.n_real));
        }
        if !generated.iter().any(|(s, _)| *s == pair.ai_source) {
            generated.push((&pair.ai_source, pair.n_ai));
        }
    }
    if auc.is_empty() {
        writeln!(out, "\nAUC by source: needs scored generated and real images")?;
        return Ok(());
    }
    writeln!(out, "\nAUC of each generated source (rows) against each real source (columns):")?;
    for (i, (source, n)) in real.iter().enumerate() {
        writeln!(out, "  R{} = {} (real {n})", i + 1, display_name(source))?;
    }
    write!(out, "{:<width$} {:>5}", "generated source", "n")?;
    for i in 0..real.len() {
        write!(out, " {:>6}", format!("R{}", i + 1))?;
    }
    writeln!(out)?;
    for (source, n) in &generated {
        write!(out, "{:<width$} {:>5}", display_name(source), n)?;
        for (real_source, _) in &real {
            let cell = auc.iter().find(|p| p.ai_source == *source && p.real_source == *real_source);
            write!(out, " {:>6}", fmt(cell.map(|p| p.auc), 3))?;
        }
        writeln!(out)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_source_names_are_shortened_for_the_table() {
        assert_eq!(display_name("owner/repo@7ed86a9cc56763b6acb35e41cb35184e43a5d218"), "owner/repo");
        assert_eq!(display_name(""), "(no source)");
        let long = display_name("an-organisation-with-a-long-name/and-a-repository-name-as-long");
        assert_eq!(long.chars().count(), NAME_WIDTH);
        assert!(long.starts_with("an-organisation") && long.ends_with("as-long"), "{long}");
    }
}
