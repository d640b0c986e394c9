//! Metadata module: generator signatures, IPTC digital source type, camera EXIF coherence,
//! editing software and the JPEG quantisation-table fingerprint.
//!
//! Metadata can be forged or stripped, so presence is evidence and absence is neutral: with
//! nothing that bears on origin the module abstains.

pub mod camera;
pub mod generators;
pub mod quant;
pub mod xmp;

use exif::Exif;

use super::decode::DecodedImage;
use super::evidence::Evidence;
use super::report::{FileMetadata, Flag, GeneratorAttribution, ModuleReport};
use super::source_type::{DigitalSourceType, SourceKind};
pub use generators::GeneratorFinding;
pub use quant::QuantFingerprint;

/// Log-odds weights of the metadata findings (positive = towards AI). A generator signature
/// is near-decisive on its own; camera traces are weaker because EXIF is easy to copy.
mod weight {
    pub const GENERATOR: f64 = 3.5;
    pub const IPTC_TRAINED: f64 = 3.0;
    pub const IPTC_COMPOSITE: f64 = 2.0;
    pub const IPTC_SYNTHETIC: f64 = 1.2;
    pub const IPTC_CAPTURE: f64 = -0.8;
    pub const COHERENT_CAMERA: f64 = -1.1;
    pub const PARTIAL_CAMERA: f64 = -0.4;
    pub const INCONSISTENT: f64 = 0.3;
    /// Editing is not generation: a note (generative edits declare themselves in IPTC/C2PA).
    pub const EDITOR: f64 = 0.0;
    pub const CAMERA_QUANT: f64 = -0.5;
}

/// Everything the metadata module learned.
#[derive(Debug, Clone)]
pub struct MetadataFinding {
    /// The module's report.
    pub report: ModuleReport,
    /// The generator named by the metadata.
    pub generator: Option<GeneratorFinding>,
    /// IPTC digital source types declared in XMP.
    pub source_types: Vec<DigitalSourceType>,
    /// JPEG quantisation fingerprint (JPEG only).
    pub quant: Option<QuantFingerprint>,
    /// Descriptive metadata for display.
    pub file_metadata: FileMetadata,
}

impl MetadataFinding {
    /// The generator attribution for the report, when the metadata names one.
    pub fn attribution(&self) -> Option<GeneratorAttribution> {
        let g = self.generator.as_ref()?;
        Some(GeneratorAttribution {
            family: g.family.clone().unwrap_or_else(|| "unknown".into()),
            // the family is inferred from a file name, the tool is written by the tool itself
            confidence: if g.family.is_some() { 0.9 } else { 0.6 },
            tool: Some(g.tool.clone()),
            model: g.model.clone(),
        })
    }
}

/// Parse the raw EXIF block; malformed EXIF is treated as absent.
pub fn parse_exif(raw: Option<&[u8]>) -> Option<Exif> {
    exif::Reader::new().read_raw(raw?.to_vec()).ok()
}

/// Run the metadata module on a decoded image.
pub fn analyse(image: &DecodedImage) -> MetadataFinding {
    let blocks = &image.blocks;
    let exif = parse_exif(blocks.exif.as_deref());
    let mut ev = Evidence::default();

    let generator = generators::find_generator(blocks, exif.as_ref(), image.alpha.as_ref());
    if let Some(g) = &generator {
        ev.add(weight::GENERATOR, Some(g.flag), g.evidence.clone());
    }

    let source_types: Vec<DigitalSourceType> =
        blocks.xmp.iter().flat_map(|x| DigitalSourceType::find_all(x)).collect();
    for t in &source_types {
        let (w, flag) = match t.kind {
            SourceKind::TrainedAlgorithmic => (weight::IPTC_TRAINED, Flag::IptcTrainedAlgorithmicMedia),
            SourceKind::CompositeWithTrainedAlgorithmic => {
                (weight::IPTC_COMPOSITE, Flag::IptcCompositeWithTrainedAlgorithmicMedia)
            }
            SourceKind::Synthetic => (weight::IPTC_SYNTHETIC, Flag::IptcSyntheticMedia),
            SourceKind::Capture => (weight::IPTC_CAPTURE, Flag::IptcCapture),
            SourceKind::HumanMade => continue,
        };
        ev.add(w, Some(flag), format!("XMP declares the IPTC digital source type '{}'", t.term));
    }

    let camera = exif.as_ref().map(|e| camera::examine(e, image.width, image.height));
    if let Some(cam) = &camera {
        if let Some(name) = &cam.camera {
            let full_record = cam.exposure_fields >= 3 && cam.captured.is_some();
            if cam.is_coherent_capture() {
                ev.add(
                    weight::COHERENT_CAMERA,
                    Some(Flag::CameraExif),
                    format!(
                        "EXIF describes a capture by the camera {name} ({} exposure fields, taken {})",
                        cam.exposure_fields,
                        cam.captured.as_deref().unwrap_or("?")
                    ),
                );
            } else if full_record {
                ev.add(
                    weight::PARTIAL_CAMERA,
                    Some(Flag::CameraExif),
                    format!(
                        "EXIF records a capture by the camera {name}, but the record contradicts the image"
                    ),
                );
            } else {
                ev.add(
                    weight::PARTIAL_CAMERA,
                    None,
                    format!("EXIF names the camera {name} but lacks a full exposure record"),
                );
            }
        }
        for why in &cam.inconsistencies {
            ev.add(weight::INCONSISTENT, Some(Flag::ExifInconsistent), why.clone());
        }
    }

    let creator_tool = xmp::property(&blocks.xmp, "xmp:CreatorTool");
    let editor =
        camera.as_ref().and_then(|c| c.editor.clone()).or_else(|| creator_tool.and_then(camera::editor_in));
    if let Some(editor) = &editor {
        ev.add(weight::EDITOR, Some(Flag::EditingSoftware), format!("edited with {editor}"));
    }

    let quant = blocks.jpeg.as_ref().and_then(quant::fingerprint);
    if let Some(q) = quant {
        if q.standard {
            // standard tables say "software encoder", which real photos re-saved online share
            // with generated images: a flag for the analyst, no weight
            ev.add(
                0.0,
                Some(Flag::StandardQuantTables),
                format!("JPEG uses the standard IJG quantisation tables at quality {}", q.quality),
            );
        } else {
            ev.add(
                weight::CAMERA_QUANT,
                Some(Flag::CameraQuantTables),
                format!(
                    "JPEG uses custom quantisation tables (about quality {}), as camera firmware writes them",
                    q.quality
                ),
            );
        }
    }

    let file_metadata = camera::file_metadata(
        exif.as_ref(),
        camera.and_then(|c| c.camera),
        creator_tool.or(generator.as_ref().map(|g| g.tool.as_str())),
        image.width,
        image.height,
    );
    let report = ev.into_report("no metadata that bears on origin (absence of metadata is neutral)");
    MetadataFinding { report, generator, source_types, quant, file_metadata }
}
