//! `tellscan detect FILE…`: one report per file; a bad file gets its error, never stops the run.

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Mutex;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;
use serde_json::{json, Value};

use super::OutputFormat;
use crate::forensics::decode::{decode, DecodeError, DecodeLimits, ImageFormat};
use crate::forensics::overlay;
use crate::forensics::provenance::ManifestState;
use crate::forensics::{DetectOptions, Detector, Report};

/// Files from which on a progress bar is drawn on stderr.
const PROGRESS_FROM: usize = 4;

/// How `detect` runs and prints.
#[derive(Debug, Clone)]
pub struct DetectArgs {
    /// JSON lines or a table.
    pub format: OutputFormat,
    /// Indented JSON.
    pub pretty: bool,
    /// Per-request options for the detector.
    pub options: DetectOptions,
    /// Where to write heatmap overlays, if wanted.
    pub heatmap_dir: Option<PathBuf>,
    /// Decode limits (for re-decoding the image behind an overlay).
    pub limits: DecodeLimits,
}

/// A successful detection and the overlay written for it.
struct Detected {
    report: Report,
    heatmap: Option<PathBuf>,
}

/// Reserves unique overlay file names within one run.
struct OverlayNames {
    dir: PathBuf,
    taken: Mutex<HashSet<PathBuf>>,
}

impl OverlayNames {
    fn reserve(&self, source: &Path) -> PathBuf {
        let stem = source.file_stem().map_or_else(|| "image".into(), |s| s.to_string_lossy().into_owned());
        let mut taken = self.taken.lock().unwrap_or_else(|e| e.into_inner());
        (0..)
            .map(|n| {
                let suffix = if n == 0 { String::new() } else { format!("-{n}") };
                self.dir.join(format!("{stem}{suffix}.heatmap.png"))
            })
            .find(|p| taken.insert(p.clone()))
            .expect("an unused name exists")
    }
}

/// The outcome for one file as the CLI prints it.
fn outcome(
    detector: &Detector,
    path: &Path,
    args: &DetectArgs,
    names: Option<&OverlayNames>,
) -> Result<Detected, Value> {
    let bytes = std::fs::read(path)
        .map_err(|e| json!({"error": "unreadable_file", "detail": format!("cannot read the file: {e}")}))?;
    let analysis = detector.analyse(&bytes, args.options).map_err(|e| {
        let mut err = json!({"error": e.code(), "detail": e.to_string()});
        // a file whose pixels do not decode may still carry a provenance manifest worth reporting
        if let (DecodeError::Corrupt(_), Some(format)) = (&e, ImageFormat::sniff(&bytes)) {
            let finding = detector.provenance().inspect(format.mime(), &bytes);
            if finding.state != ManifestState::None {
                err["provenance"] = serde_json::to_value(finding.to_module_report()).unwrap_or(Value::Null);
            }
        }
        err
    })?;
    let heatmap = match names {
        Some(names) => {
            let target = names.reserve(path);
            let write = || -> anyhow::Result<()> {
                let image = decode(&bytes, &args.limits)?;
                let maps: Vec<_> = analysis.heatmaps.iter().map(|(_, m)| m).collect();
                overlay::render(&image.rgb, &maps, analysis.origin).save(&target)?;
                Ok(())
            };
            write().map_err(|e| json!({"error": "heatmap_not_written", "detail": format!("{e:#}")}))?;
            Some(target)
        }
        None => None,
    };
    Ok(Detected { report: analysis.report, heatmap })
}

/// Run `detect` over the files; the exit code is 0 even when some files are bad.
pub fn run(detector: &Detector, files: &[PathBuf], args: &DetectArgs) -> anyhow::Result<ExitCode> {
    let names = match &args.heatmap_dir {
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
            Some(OverlayNames { dir: dir.clone(), taken: Mutex::new(HashSet::new()) })
        }
        None => None,
    };
    let bar = if files.len() >= PROGRESS_FROM {
        ProgressBar::new(files.len() as u64)
            .with_style(ProgressStyle::with_template("{bar:40} {pos}/{len} {elapsed_precise} eta {eta}")?)
    } else {
        ProgressBar::hidden()
    };
    let results: Vec<Result<Detected, Value>> = files
        .par_iter()
        .map(|path| {
            let r = outcome(detector, path, args, names.as_ref());
            bar.inc(1);
            r
        })
        .collect();
    bar.finish_and_clear();
    let mut out = std::io::stdout().lock();
    if args.format == OutputFormat::Table {
        writeln!(out, "{:<48} {:>6}  {:<20} {:<14} FLAGS", "FILE", "SCORE", "VERDICT", "GENERATOR")?;
    }
    for (path, result) in files.iter().zip(results) {
        let name = path.display().to_string();
        match args.format {
            OutputFormat::Json => {
                let value = match result {
                    Ok(d) => match d.heatmap {
                        Some(h) => {
                            json!({"file": name, "report": d.report, "heatmap": h.display().to_string()})
                        }
                        None => json!({"file": name, "report": d.report}),
                    },
                    Err(mut err) => {
                        err["file"] = Value::String(name);
                        err
                    }
                };
                let text = if args.pretty {
                    serde_json::to_string_pretty(&value)?
                } else {
                    serde_json::to_string(&value)?
                };
                writeln!(out, "{text}")?;
            }
            OutputFormat::Table => match result {
                Ok(Detected { report: r, .. }) => {
                    let mut flags: Vec<String> = r
                        .modules
                        .values()
                        .flat_map(|m| m.flags.iter())
                        .filter_map(|f| serde_json::to_value(f).ok()?.as_str().map(str::to_string))
                        .collect();
                    flags.dedup();
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
