//! `tellscan eval --by-source`: the figures of each source (the labels file's `source`
//! column) apart, and how well each generated source is told from each real one. A corpus
//! mixes sources whose files differ in more than their class (camera, size, format, what was
//! done to them); one AUC over all of them can hide a source the detector misses entirely, or
//! a pair of sources it tells apart only by such a difference.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{metrics, Label, LabelRow, Outcome, DECISION_THRESHOLD, STRONG_THRESHOLD};
use crate::forensics::Verdict;

/// The figures of one source.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SourceRow {
    /// The `source` column, as written.
    pub source: String,
    /// The labels its rows carry, in the order ai, partial, real.
    pub labels: Vec<Label>,
    /// Images scored.
    pub n: usize,
    /// Images skipped by normalisation.
    pub skipped: usize,
    /// Images that failed to load or decode.
    pub failed: usize,
    /// Mean fused score of the scored images; `null` when none was scored.
    pub mean_score: Option<f64>,
    /// Share scored ≥ 60 ("Likely AI" or above): the false-positive rate of a real source,
    /// the true-positive rate of a generated one.
    pub share_60: Option<f64>,
    /// Share scored ≥ 85 ("AI generated").
    pub share_85: Option<f64>,
    /// Share with the verdict "Uncertain".
    pub uncertain: Option<f64>,
}

/// How well the generated images of one source are told from the real images of another.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SourceAuc {
    /// The source of the positives (its `ai` and `partial` images).
    pub ai_source: String,
    /// The source of the negatives (its `real` images).
    pub real_source: String,
    /// Positives scored.
    pub n_ai: usize,
    /// Negatives scored.
    pub n_real: usize,
    /// ROC AUC of the fused score on these images alone.
    pub auc: f64,
}

/// The per-source figures of one evaluation.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BySource {
    /// One row per source: sources with only real images first, then by name (ignoring case).
    pub rows: Vec<SourceRow>,
    /// One entry per pair of a source with scored generated images and a source with scored
    /// real images (a source with both meets itself), in the order of `rows`.
    pub auc: Vec<SourceAuc>,
}

#[derive(Default)]
struct Acc {
    labels: Vec<Label>,
    skipped: usize,
    failed: usize,
    scores: Vec<f64>,
    uncertain: usize,
    ai_scores: Vec<f64>,
    real_scores: Vec<f64>,
}

/// Split the outcomes of an evaluation (one per row, in row order) by source.
pub fn compute(rows: &[LabelRow], outcomes: &[Outcome]) -> BySource {
    let mut by: BTreeMap<&str, Acc> = BTreeMap::new();
    for (row, outcome) in rows.iter().zip(outcomes) {
        let acc = by.entry(row.source.as_str()).or_default();
        if !acc.labels.contains(&row.label) {
            acc.labels.push(row.label);
        }
        match outcome {
            Outcome::Scored(report, _, _) => {
                acc.scores.push(report.score);
                acc.uncertain += usize::from(report.verdict == Verdict::Uncertain);
                if row.label.is_ai() {
                    acc.ai_scores.push(report.score);
                } else {
                    acc.real_scores.push(report.score);
                }
            }
            Outcome::Skipped => acc.skipped += 1,
            Outcome::Failed(_) => acc.failed += 1,
        }
    }
    let mut order: Vec<(&str, Acc)> = by.into_iter().collect();
    order.sort_by_key(|(source, acc)| (acc.labels.iter().any(|l| l.is_ai()), source.to_lowercase(), *source));
    let out_rows = order
        .iter_mut()
        .map(|(source, acc)| {
            acc.labels.sort();
            let n = acc.scores.len();
            let share = |count: usize| (n > 0).then(|| count as f64 / n as f64);
            let above = |t: f64| share(acc.scores.iter().filter(|&&s| s >= t).count());
            SourceRow {
                source: source.to_string(),
                labels: acc.labels.clone(),
                n,
                skipped: acc.skipped,
                failed: acc.failed,
                mean_score: share(0).map(|_| acc.scores.iter().sum::<f64>() / n as f64),
                share_60: above(DECISION_THRESHOLD),
                share_85: above(STRONG_THRESHOLD),
                uncertain: share(acc.uncertain),
            }
        })
        .collect();
    let mut auc = Vec::new();
    for (ai_source, ai) in order.iter().filter(|(_, a)| !a.ai_scores.is_empty()) {
        for (real_source, real) in order.iter().filter(|(_, a)| !a.real_scores.is_empty()) {
            let scores: Vec<f64> = ai.ai_scores.iter().chain(&real.real_scores).copied().collect();
            let truth: Vec<bool> = (0..scores.len()).map(|i| i < ai.ai_scores.len()).collect();
            if let Some(value) = metrics::roc_auc(&scores, &truth) {
                auc.push(SourceAuc {
                    ai_source: ai_source.to_string(),
                    real_source: real_source.to_string(),
                    n_ai: ai.ai_scores.len(),
                    n_real: real.real_scores.len(),
                    auc: value,
                });
            }
        }
    }
    BySource { rows: out_rows, auc }
}

/// A source name for a terminal: `owner/repo@<40-hex commit>` loses its commit.
pub fn short_name(source: &str) -> &str {
    match source.rsplit_once('@') {
        Some((repo, commit)) if commit.len() == 40 && commit.bytes().all(|b| b.is_ascii_hexdigit()) => repo,
        _ => source,
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::eval::test_support;

    fn row(source: &str, label: Label) -> LabelRow {
        LabelRow {
            path: PathBuf::from("x.png"),
            label,
            generator: String::new(),
            source: source.into(),
            key: "x.png".into(),
        }
    }

    fn scored(score: f64) -> Outcome {
        Outcome::Scored(Box::new(test_support::report(score)), 1.0, None)
    }

    #[test]
    fn rows_add_up_and_shares_are_shares() {
        let rows = [
            row("cam/a", Label::Real),
            row("cam/a", Label::Real),
            row("cam/a", Label::Real),
            row("cam/b", Label::Real),
            row("gen/x", Label::Ai),
            row("gen/x", Label::Partial),
            row("gen/x", Label::Ai),
            row("gen/y", Label::Ai),
            row("gen/y", Label::Ai),
        ];
        let outcomes = [
            scored(10.0),
            scored(90.0),
            Outcome::Skipped,
            scored(45.0),
            scored(95.0),
            scored(70.0),
            Outcome::Failed("bad".into()),
            scored(20.0),
            scored(50.0),
        ];
        let by = compute(&rows, &outcomes);
        let names: Vec<&str> = by.rows.iter().map(|r| r.source.as_str()).collect();
        assert_eq!(names, ["cam/a", "cam/b", "gen/x", "gen/y"]);
        let scored_total = outcomes.iter().filter(|o| matches!(o, Outcome::Scored(..))).count();
        assert_eq!(by.rows.iter().map(|r| r.n).sum::<usize>(), scored_total);
        assert_eq!(by.rows.iter().map(|r| r.n + r.skipped + r.failed).sum::<usize>(), rows.len());
        for r in &by.rows {
            for share in [r.share_60, r.share_85, r.uncertain] {
                assert!(share.is_some_and(|s| (0.0..=1.0).contains(&s)), "{r:?}");
            }
        }
        let a = &by.rows[0];
        assert_eq!(
            (a.n, a.skipped, a.mean_score, a.share_60, a.share_85),
            (2, 1, Some(50.0), Some(0.5), Some(0.5))
        );
        assert_eq!(by.rows[1].uncertain, Some(1.0));
        assert_eq!(by.rows[2].labels, [Label::Ai, Label::Partial]);
        assert_eq!((by.rows[2].failed, by.rows[2].share_85), (1, Some(0.5)));
        // two generated sources × two real sources
        let pairs: Vec<(&str, &str, f64)> =
            by.auc.iter().map(|p| (p.ai_source.as_str(), p.real_source.as_str(), p.auc)).collect();
        assert_eq!(
            pairs,
            [
                ("gen/x", "cam/a", 0.75),
                ("gen/x", "cam/b", 1.0),
                ("gen/y", "cam/a", 0.5),
                ("gen/y", "cam/b", 0.5)
            ]
        );
    }

    #[test]
    fn a_source_with_both_classes_meets_itself_and_empty_sources_have_no_shares() {
        let rows = [row("mixed", Label::Ai), row("mixed", Label::Real), row("gone", Label::Real)];
        let outcomes = [scored(80.0), scored(30.0), Outcome::Failed("x".into())];
        let by = compute(&rows, &outcomes);
        assert_eq!(by.auc.len(), 1);
        assert_eq!((by.auc[0].ai_source.as_str(), by.auc[0].real_source.as_str()), ("mixed", "mixed"));
        let gone = by.rows.iter().find(|r| r.source == "gone").unwrap();
        assert_eq!((gone.n, gone.failed, gone.mean_score, gone.share_60), (0, 1, None, None));
    }

    #[test]
    fn short_names_drop_a_commit_only() {
        assert_eq!(short_name("owner/repo@7ed86a9cc56763b6acb35e41cb35184e43a5d218"), "owner/repo");
        assert_eq!(short_name("mate-backgrounds@1.26.0-1 (deb)"), "mate-backgrounds@1.26.0-1 (deb)");
        assert_eq!(short_name("owner/repo"), "owner/repo");
    }
}
