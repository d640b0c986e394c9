//! `tellscan eval --scores FILE.csv`: one row per image, for looking into single cases and for
//! analyses the summary does not make.

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::Context;

use super::{LabelRow, Outcome};

/// Write one row per labelled image: `path,label,source,generator,status,score,verdict,
/// uncertainty,chain`, then `<module>_score` and `<module>_abstained` for every module any
/// report has (in name order), then `flags` (`module:flag` separated by spaces). Images that
/// were skipped or failed keep their row with `status` saying so and the rest empty.
pub fn write(path: &Path, rows: &[LabelRow], outcomes: &[Outcome]) -> anyhow::Result<()> {
    let modules: BTreeSet<&String> = outcomes
        .iter()
        .filter_map(|o| match o {
            Outcome::Scored(report, _, _) => Some(report.modules.keys().filter(|m| *m != "fusion")),
            _ => None,
        })
        .flatten()
        .collect();
    let mut out = csv::Writer::from_path(path).with_context(|| format!("cannot write {}", path.display()))?;
    let mut header: Vec<String> =
        ["path", "label", "source", "generator", "status", "score", "verdict", "uncertainty", "chain"]
            .map(String::from)
            .to_vec();
    for m in &modules {
        header.push(format!("{m}_score"));
        header.push(format!("{m}_abstained"));
    }
    header.push("flags".into());
    out.write_record(&header)?;
    for (row, outcome) in rows.iter().zip(outcomes) {
        let label = serde_json::to_value(row.label)?.as_str().unwrap_or_default().to_string();
        let mut record = vec![row.key.clone(), label, row.source.clone(), row.generator.clone()];
        match outcome {
            Outcome::Scored(report, _, chain) => {
                let verdict = serde_json::to_value(report.verdict)?.as_str().unwrap_or_default().to_string();
                record.extend([
                    "scored".to_string(),
                    format!("{}", report.score),
                    verdict,
                    format!("{}", report.uncertainty),
                    chain.as_ref().map(|c| c.to_string()).unwrap_or_default(),
                ]);
                let mut flags = Vec::new();
                for m in &modules {
                    match report.modules.get(*m) {
                        Some(r) => {
                            record.push(format!("{:.6}", r.score));
                            record.push(r.abstained.to_string());
                            for flag in &r.flags {
                                let name = serde_json::to_value(flag)?;
                                flags.push(format!("{m}:{}", name.as_str().unwrap_or_default()));
                            }
                        }
                        None => record.extend([String::new(), String::new()]),
                    }
                }
                record.push(flags.join(" "));
            }
            Outcome::Skipped | Outcome::Failed(_) => {
                let status = if matches!(outcome, Outcome::Skipped) { "skipped" } else { "failed" };
                record.push(status.to_string());
                record.extend(std::iter::repeat_n(String::new(), 4 + 2 * modules.len() + 1));
            }
        }
        out.write_record(&record)?;
    }
    out.flush()?;
    Ok(())
}
