//! Labelled image sets: the `path,label,generator,source,license` CSVs that training,
//! calibration and evaluation read.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

/// Ground truth of one image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Label {
    /// Fully generated.
    Ai,
    /// A real photo edited with a generator (in/out-painting); counted as AI.
    Partial,
    /// A real capture.
    Real,
}

impl Label {
    /// `true` for the positive class (ai and partial).
    pub fn is_ai(self) -> bool {
        !matches!(self, Label::Real)
    }
}

/// One row of a labels file (`path,label,generator,source,license`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct LabelRow {
    /// Path relative to the CSV's folder (made absolute by [`read_labels`]).
    pub path: PathBuf,
    /// Ground truth.
    pub label: Label,
    /// Generator family (`camera` for real photos).
    #[serde(default)]
    pub generator: String,
    /// Where the image comes from.
    #[serde(default)]
    pub source: String,
    /// The path as written in the labels file: the key of the image's web chain, the same on
    /// every machine.
    #[serde(skip)]
    pub key: String,
}

/// Read a labels CSV; paths are resolved against the CSV's folder.
pub fn read_labels(csv_path: &Path) -> anyhow::Result<Vec<LabelRow>> {
    let base = csv_path.parent().unwrap_or(Path::new("."));
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .from_path(csv_path)
        .with_context(|| format!("cannot read labels file {}", csv_path.display()))?;
    let mut rows = Vec::new();
    for (i, row) in reader.deserialize::<LabelRow>().enumerate() {
        let mut row = row.with_context(|| format!("{}: row {} is malformed", csv_path.display(), i + 2))?;
        row.key = row.path.to_string_lossy().into_owned();
        row.path = base.join(&row.path);
        rows.push(row);
    }
    if rows.is_empty() {
        bail!("{} has no rows", csv_path.display());
    }
    Ok(rows)
}
