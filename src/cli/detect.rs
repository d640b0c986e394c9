//! `tellscan detect FILE…`: one report per file; a bad file gets its error, never stops the run.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;
use serde_json::{json, Value};

use super::OutputFormat;
use crate::forensics::decode::{DecodeError, ImageFormat};
use crate::forensics::provenance::ManifestState;
use crate::forensics::{DetectOptions, Detector, Report};

/// Files above which a progress bar is drawn on stderr.
const PROGRESS_FROM: usize = 4;

/// The outcome for one file as the CLI prints it.
fn outcome(detector: &Detector, path: &Path, options: DetectOptions) -> Result<Report, Value> {
    let bytes = std::fs::read(path)
        .map_err(|e| json!({"error": "unreadable_file", "detail": format!("cannot read the file: {e}")}))?;
    detector.detect_with(&bytes, options).map_err(|e| {
        let mut err = json!({"error": e.code(), "detail": e.to_string()});
        // a file whose pixels do not decode may still carry a provenance manifest worth reporting
        if let (DecodeError::Corrupt(_), Some(format)) = (&e, ImageFormat::sniff(&bytes)) {
            let finding = detector.provenance().inspect(format.mime(), &bytes);
            if finding.state != ManifestState::None {
                err["provenance"] = serde_json::to_value(finding.to_module_report()).unwrap_or(Value::Null);
            }
        }
        err
    })
}

/// Run `detect` over the files; the exit code is 0 even when some files are bad.
pub fn run(
    detector: &Detector,
    files: &[PathBuf],
    format: OutputFormat,
    pretty: bool,
    from_extension: bool,
) -> anyhow::Result<ExitCode> {
    let bar = if files.len() >= PROGRESS_FROM {
        ProgressBar::new(files.len() as u64)
            .with_style(ProgressStyle::with_template("{bar:40} {pos}/{len} {elapsed_precise} eta {eta}")?)
    } else {
        ProgressBar::hidden()
    };
    let options = DetectOptions { from_extension };
    let results: Vec<Result<Report, Value>> = files
        .par_iter()
        .map(|path| {
            let r = outcome(detector, path, options);
            bar.inc(1);
            r
        })
        .collect();
    bar.finish_and_clear();
    let mut out = std::io::stdout().lock();
    if format == OutputFormat::Table {
        writeln!(out, "{:<48} {:>6}  {:<20} {:<14} FLAGS", "FILE", "SCORE", "VERDICT", "GENERATOR")?;
    }
    for (path, result) in files.iter().zip(results) {
        let name = path.display().to_string();
        match format {
            OutputFormat::Json => {
                let value = match result {
                    Ok(report) => json!({"file": name, "report": report}),
                    Err(mut err) => {
                        err["file"] = Value::String(name);
                        err
                    }
                };
                let text = if pretty {
                    serde_json::to_string_pretty(&value)?
                } else {
                    serde_json::to_string(&value)?
                };
                writeln!(out, "{text}")?;
            }
            OutputFormat::Table => match result {
                Ok(r) => {
                    let flags: Vec<String> = r
                        .modules
                        .values()
                        .flat_map(|m| m.flags.iter())
                        .map(|f| {
                            serde_json::to_value(f)
                                .ok()
                                .and_then(|v| v.as_str().map(str::to_string))
                                .unwrap_or_default()
                        })
                        .collect();
                    let generator = r.generator.as_ref().map_or("-", |g| g.family.as_str());
                    writeln!(
                        out,
                        "{:<48} {:>6.1}  {:<20} {:<14} {}",
                        name,
                        r.score,
                        r.verdict.label(),
                        generator,
                        flags.join(",")
                    )?;
                }
                Err(err) => {
                    writeln!(out, "{:<48} {:>6}  error: {}", name, "-", err["detail"].as_str().unwrap_or(""))?
                }
            },
        }
    }
    Ok(ExitCode::SUCCESS)
}
