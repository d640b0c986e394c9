//! The detector: decode once, run the modules in parallel, fuse, and build the report.

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Instant;

use sha2::{Digest, Sha256};

use super::decode::{self, DecodeError, DecodeLimits, DecodedImage};
use super::fusion::{self, Degradation, FusionWeights};
use super::metadata::{self, MetadataFinding};
use super::provenance::{Provenance, ProvenanceConfig};
use super::report::{FileMetadata, Hashes, ImageInfo, ModuleReport, Report};

/// Everything the detector is configured with.
#[derive(Debug, Clone, Default)]
pub struct DetectorConfig {
    /// Size limits checked before decoding.
    pub limits: DecodeLimits,
    /// C2PA trust settings.
    pub provenance: ProvenanceConfig,
}

/// Per-request facts that change how the evidence is read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DetectOptions {
    /// The image came through a browser extension (usually re-encoded and resized).
    pub from_extension: bool,
}

/// The forensic detector, built once and shared by every request (it is `Send + Sync`).
pub struct Detector {
    limits: DecodeLimits,
    provenance: Provenance,
    fusion: FusionWeights,
}

impl Detector {
    /// Build a detector; fails when the provenance trust anchors cannot be loaded.
    pub fn new(config: &DetectorConfig) -> anyhow::Result<Self> {
        Ok(Self {
            limits: config.limits,
            provenance: Provenance::new(&config.provenance)?,
            fusion: FusionWeights::v1(),
        })
    }

    /// The provenance reader, for callers that need a C2PA verdict on a file whose pixels
    /// do not decode (a tampered PNG still carries its manifest).
    pub fn provenance(&self) -> &Provenance {
        &self.provenance
    }

    /// Analyse one file with default options.
    pub fn detect(&self, bytes: &[u8]) -> Result<Report, DecodeError> {
        self.detect_with(bytes, DetectOptions::default())
    }

    /// Analyse one file.
    pub fn detect_with(&self, bytes: &[u8], options: DetectOptions) -> Result<Report, DecodeError> {
        let started = Instant::now();
        let image = decode::decode(bytes, &self.limits)?;
        let (meta, provenance) = rayon::join(
            || guarded("metadata", || metadata::analyse(&image)),
            || guarded("provenance", || self.provenance.inspect(image.format.mime(), bytes)),
        );
        let (meta, meta_report) = match meta {
            Ok((finding, elapsed)) => {
                let mut report = finding.report.clone();
                report.elapsed_ms = elapsed;
                (Some(finding), report)
            }
            Err(report) => (None, report),
        };
        let provenance_report = match provenance {
            Ok((finding, elapsed)) => ModuleReport { elapsed_ms: elapsed, ..finding.to_module_report() },
            Err(report) => report,
        };
        let mut modules = BTreeMap::from([
            ("metadata".to_string(), meta_report),
            ("provenance".to_string(), provenance_report),
        ]);
        let degradation = Degradation {
            short_side: image.width.min(image.height),
            jpeg_quality: meta.as_ref().and_then(|m| m.quant.map(|q| q.quality)),
            from_extension: options.from_extension,
        };
        let fused = fusion::fuse(&self.fusion, &modules, degradation);
        modules.insert("fusion".to_string(), fused.report.clone());
        Ok(Report {
            score: fused.score,
            verdict: fused.verdict,
            presentation: fused.presentation,
            confidence: fused.confidence,
            uncertainty: fused.uncertainty,
            explanations: fused.explanations,
            hashes: Hashes { sha256: sha256_hex(bytes) },
            modules,
            generator: meta.as_ref().and_then(MetadataFinding::attribution),
            model: None,
            image: image_info(&image, bytes.len()),
            cached: false,
            elapsed_ms: millis(started),
            details: fused.details,
            file_metadata: meta.map(|m| m.file_metadata).unwrap_or_else(|| FileMetadata {
                width: image.width,
                height: image.height,
                ..Default::default()
            }),
        })
    }
}

/// Lower-case hex SHA-256 of a byte string.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn image_info(image: &DecodedImage, len: usize) -> ImageInfo {
    ImageInfo { format: image.format, width: image.width, height: image.height, bytes: len as u64 }
}

fn millis(since: Instant) -> f64 {
    (since.elapsed().as_secs_f64() * 1e5).round() / 100.0
}

/// Run one module, timing it; a panic becomes an abstention that names the module, so one
/// module can never fail the request.
fn guarded<T>(name: &str, run: impl FnOnce() -> T) -> Result<(T, f64), ModuleReport> {
    let started = Instant::now();
    match catch_unwind(AssertUnwindSafe(run)) {
        Ok(value) => Ok((value, millis(started))),
        Err(_) => {
            tracing::error!(module = name, "module panicked; reporting it as abstained");
            Err(ModuleReport::abstain(format!("the {name} module failed on this input")))
        }
    }
}
