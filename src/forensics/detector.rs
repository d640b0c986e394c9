//! The detector: decode once, run the modules in parallel, fuse, and build the report.

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Instant;

use sha2::{Digest, Sha256};

use super::decode::{self, DecodeError, DecodeLimits, DecodedImage};
use super::fusion::{self, Degradation, FusionWeights};
use super::metadata::{self, quant, MetadataFinding};
use super::ml::MlModel;
use super::provenance::{Provenance, ProvenanceConfig};
use super::report::{FileMetadata, Hashes, ImageInfo, ModuleReport, Region, Report};
use super::views::{Heatmap, Views};
use super::weights::{WeightsInUse, WeightsSource, BUILT_IN_FUSION, BUILT_IN_MODEL};
use super::{frequency, physics, visual};

/// Where `tellscan calibrate` writes the calibrated fusion unless told otherwise (relative to
/// the working directory); the detector uses the copy compiled in from this file.
pub const DEFAULT_FUSION: &str = "weights/fusion.json";

/// Everything the detector is configured with.
#[derive(Debug, Clone)]
pub struct DetectorConfig {
    /// Size limits checked before decoding.
    pub limits: DecodeLimits,
    /// C2PA trust settings.
    pub provenance: ProvenanceConfig,
    /// The `ml` module's weights; `None` runs without the module (only training and
    /// calibration do: they build the model or read the other modules).
    pub ml_weights: Option<WeightsSource>,
    /// The calibrated fusion (`tellscan calibrate`); `None` uses the fusion v1 weights.
    pub fusion: Option<WeightsSource>,
}

impl Default for DetectorConfig {
    /// Default limits, no trust anchors, and the weights built into the binary.
    fn default() -> Self {
        DetectorConfig {
            limits: DecodeLimits::default(),
            provenance: ProvenanceConfig::default(),
            ml_weights: Some(WeightsSource::BuiltIn),
            fusion: Some(WeightsSource::BuiltIn),
        }
    }
}

/// Per-request facts that change how the evidence is read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct DetectOptions {
    /// The image came through a browser extension (usually re-encoded and resized).
    pub from_extension: bool,
}

/// The forensic detector, built once and shared by every request (it is `Send + Sync`).
pub struct Detector {
    limits: DecodeLimits,
    provenance: Provenance,
    ml: Option<MlModel>,
    fusion: FusionWeights,
    weights: WeightsInUse,
}

impl Detector {
    /// Build a detector; fails with a message naming the file when the trust anchors, the ML
    /// weights or the fusion file cannot be loaded (or do not match).
    pub fn new(config: &DetectorConfig) -> anyhow::Result<Self> {
        let (ml, model) = match &config.ml_weights {
            Some(source) => {
                let (bytes, print) = source.bytes(BUILT_IN_MODEL, MlModel::read)?;
                let origin = source.origin(super::ml::DEFAULT_WEIGHTS);
                (Some(MlModel::from_bytes(&bytes, &origin)?), Some(print))
            }
            None => (None, None),
        };
        let (fusion, fused_by) = match &config.fusion {
            Some(source) => {
                let (bytes, print) = source.bytes(BUILT_IN_FUSION, FusionWeights::read)?;
                (FusionWeights::parse(&bytes, &source.origin(DEFAULT_FUSION))?, Some(print))
            }
            None => (FusionWeights::v1(), None),
        };
        Ok(Self {
            limits: config.limits,
            provenance: Provenance::new(&config.provenance)?,
            ml,
            fusion,
            weights: WeightsInUse { model, fusion: fused_by },
        })
    }

    /// The SHA-256 and source of the weights and fusion this detector loaded.
    pub fn weights(&self) -> &WeightsInUse {
        &self.weights
    }

    /// Whether the `ml` module is loaded.
    pub fn has_ml(&self) -> bool {
        self.ml.is_some()
    }

    /// The names of the modules a report carries, `fusion` last.
    pub fn module_names(&self) -> Vec<&'static str> {
        let mut names = vec!["metadata", "provenance", "frequency", "visual", "physics"];
        if self.ml.is_some() {
            names.push("ml");
        }
        names.push("fusion");
        names
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
        self.analyse(bytes, options).map(|a| a.report)
    }

    /// Analyse one file and keep the pixel modules' heatmaps (for overlays).
    pub fn analyse(&self, bytes: &[u8], options: DetectOptions) -> Result<Analysis, DecodeError> {
        let started = Instant::now();
        let image = decode::decode(bytes, &self.limits)?;
        let jpeg_quality = image.blocks.jpeg.as_ref().and_then(quant::estimate_quality);
        let ((meta, provenance), pixels) = rayon::join(
            || {
                rayon::join(
                    || guarded("metadata", || metadata::analyse(&image)),
                    || guarded("provenance", || self.provenance.inspect(image.format.mime(), bytes)),
                )
            },
            || {
                let views = Views::new(&image, jpeg_quality);
                let ((frequency, visual), (physics, ml)) = rayon::join(
                    || {
                        rayon::join(
                            || guarded("frequency", || frequency::analyse(&views)),
                            || guarded("visual", || visual::analyse(&views)),
                        )
                    },
                    || {
                        rayon::join(
                            || guarded("physics", || physics::analyse(&views)),
                            || self.ml.as_ref().map(|model| guarded("ml", || model.analyse(&views))),
                        )
                    },
                );
                (views.origin, [("frequency", frequency), ("visual", visual), ("physics", physics)], ml)
            },
        );
        let (meta, meta_report) = match meta {
            Ok((finding, elapsed)) => {
                let report = ModuleReport { elapsed_ms: elapsed, ..finding.report.clone() };
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
        let (origin, pixel_findings, ml) = pixels;
        if let Some(ml) = ml {
            let report = match ml {
                Ok((report, elapsed)) => ModuleReport { elapsed_ms: elapsed, ..report },
                Err(report) => report,
            };
            modules.insert("ml".to_string(), report);
        }
        let mut heatmaps = Vec::new();
        for (name, finding) in pixel_findings {
            let report = match finding {
                Ok((finding, elapsed)) => {
                    if let Some(map) = finding.heatmap {
                        heatmaps.push((name, map));
                    }
                    ModuleReport { elapsed_ms: elapsed, ..finding.report }
                }
                Err(report) => report,
            };
            modules.insert(name.to_string(), report);
        }
        let degradation = Degradation {
            short_side: image.width.min(image.height),
            jpeg_quality,
            from_extension: options.from_extension,
            resized: modules
                .get("physics")
                .is_some_and(|m| m.flags.contains(&super::report::Flag::Resampled)),
        };
        let fused = fusion::fuse(&self.fusion, &modules, degradation);
        modules.insert("fusion".to_string(), fused.report.clone());
        // a module that abstained has no opinion about where to look
        heatmaps.retain(|(name, _)| modules.get(*name).is_some_and(|m| !m.abstained));
        let regions = heatmaps
            .iter()
            .flat_map(|(name, map)| map.top_regions(TOP_REGIONS, name))
            .map(|r| Region { x: r.x + origin.0 as u32, y: r.y + origin.1 as u32, ..r })
            .collect::<Vec<_>>();
        let report = Report {
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
            regions: top_regions(regions),
            file_metadata: meta.map(|m| m.file_metadata).unwrap_or_else(|| FileMetadata {
                width: image.width,
                height: image.height,
                ..Default::default()
            }),
        };
        Ok(Analysis { report, heatmaps, origin })
    }
}

/// A report together with the heatmaps behind its regions.
#[derive(Debug, Clone)]
pub struct Analysis {
    /// The report.
    pub report: Report,
    /// Heatmaps of the pixel modules that voted, by module name.
    pub heatmaps: Vec<(&'static str, Heatmap)>,
    /// Top-left corner of the analysis window the heatmaps cover.
    pub origin: (usize, usize),
}

/// Regions listed per module in the report.
const TOP_REGIONS: usize = 3;

/// The most suspicious regions across modules, strongest first.
fn top_regions(mut regions: Vec<Region>) -> Vec<Region> {
    regions.sort_by(|a, b| b.score.total_cmp(&a.score));
    regions.truncate(2 * TOP_REGIONS);
    regions
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
