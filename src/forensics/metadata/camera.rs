//! Camera EXIF coherence: does the EXIF describe a real capture, consistently with the image?

use exif::{Exif, In, Tag, Value};

use crate::forensics::report::FileMetadata;

/// Editors whose name in `Software` or `CreatorTool` means the file was edited after capture.
const EDITORS: &[&str] = &[
    "photoshop",
    "lightroom",
    "gimp",
    "affinity",
    "pixelmator",
    "snapseed",
    "capture one",
    "darktable",
    "rawtherapee",
    "paint.net",
    "luminar",
    "picsart",
    "canva",
    "facetune",
    "photopea",
];

/// What the EXIF block says about a capture.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CameraEvidence {
    /// Camera make and model, when both are present and look like a camera.
    pub camera: Option<String>,
    /// How many of exposure time, f-number, ISO, focal length and lens are present.
    pub exposure_fields: usize,
    /// Capture date (`DateTimeOriginal`).
    pub captured: Option<String>,
    /// Contradictions found, as sentences.
    pub inconsistencies: Vec<String>,
    /// An editor named in `Software`.
    pub editor: Option<String>,
}

impl CameraEvidence {
    /// A coherent capture: camera named, at least three exposure fields, a capture date,
    /// and nothing contradicting it.
    pub fn is_coherent_capture(&self) -> bool {
        self.camera.is_some()
            && self.exposure_fields >= 3
            && self.captured.is_some()
            && self.inconsistencies.is_empty()
    }
}

/// The text of an ASCII field, trimmed; `None` when absent, empty or not ASCII.
pub fn ascii_field(exif: &Exif, tag: Tag) -> Option<String> {
    let field = exif.get_field(tag, In::PRIMARY)?;
    let Value::Ascii(parts) = &field.value else { return None };
    let text: String =
        parts.iter().map(|p| String::from_utf8_lossy(p).into_owned()).collect::<Vec<_>>().join(" ");
    let text = text.trim_matches(|c: char| c == '\0' || c.is_whitespace()).to_string();
    (!text.is_empty()).then_some(text)
}

fn uint_field(exif: &Exif, tag: Tag) -> Option<u32> {
    exif.get_field(tag, In::PRIMARY)?.value.get_uint(0)
}

/// Name of an editing application in a software string, if any.
pub fn editor_in(software: &str) -> Option<String> {
    let lower = software.to_ascii_lowercase();
    EDITORS.iter().any(|e| lower.contains(e)).then(|| software.to_string())
}

/// Examine the EXIF of an image of `width`×`height` pixels.
pub fn examine(exif: &Exif, width: u32, height: u32) -> CameraEvidence {
    let mut ev = CameraEvidence::default();
    let make = ascii_field(exif, Tag::Make);
    let model = ascii_field(exif, Tag::Model);
    // ComfyUI's WebP writer stores its JSON graph in Make/Model: that is not a camera
    let looks_like_camera = |s: &String| {
        s.len() <= 64 && !s.contains('{') && !s.starts_with("workflow:") && !s.starts_with("prompt:")
    };
    ev.camera = match (make.filter(looks_like_camera), model.filter(looks_like_camera)) {
        (Some(make), Some(model)) if model.starts_with(&make) => Some(model),
        (Some(make), Some(model)) => Some(format!("{make} {model}")),
        _ => None,
    };
    ev.exposure_fields =
        [Tag::ExposureTime, Tag::FNumber, Tag::PhotographicSensitivity, Tag::FocalLength, Tag::LensModel]
            .iter()
            .filter(|&&t| exif.get_field(t, In::PRIMARY).is_some())
            .count();
    ev.captured = ascii_field(exif, Tag::DateTimeOriginal);
    if let (Some(original), Some(modified)) = (&ev.captured, ascii_field(exif, Tag::DateTime)) {
        // EXIF dates are "YYYY:MM:DD HH:MM:SS", so they compare as text
        if modified.len() == 19 && original.len() == 19 && modified < *original {
            ev.inconsistencies
                .push(format!("EXIF modification date {modified} precedes the capture date {original}"));
        }
    }
    if let (Some(w), Some(h)) =
        (uint_field(exif, Tag::PixelXDimension), uint_field(exif, Tag::PixelYDimension))
    {
        let matches = (w, h) == (width, height) || (h, w) == (width, height);
        // many cameras write 0 or the sensor size in thumbnails-only files; only a
        // clear mismatch of aspect ratio counts
        if !matches && w > 0 && h > 0 && aspect_differs((w, h), (width, height)) {
            ev.inconsistencies.push(format!(
                "EXIF says {w}x{h} pixels but the image is {width}x{height} with another aspect ratio"
            ));
        }
    }
    if let Some((tw, th)) = thumbnail_size(exif) {
        if aspect_differs((tw, th), (width, height)) {
            ev.inconsistencies.push(format!(
                "the EXIF thumbnail ({tw}x{th}) has another aspect ratio than the image ({width}x{height})"
            ));
        }
    }
    ev.editor = ascii_field(exif, Tag::Software).and_then(|s| editor_in(&s));
    ev
}

/// Aspect ratios differ by more than 3 %, in either orientation.
fn aspect_differs(a: (u32, u32), b: (u32, u32)) -> bool {
    let ratio = |(w, h): (u32, u32)| w as f64 / h.max(1) as f64;
    let (ra, rb) = (ratio(a), ratio(b));
    let close = |x: f64, y: f64| (x / y - 1.0).abs() < 0.03;
    !close(ra, rb) && !close(ra, 1.0 / rb)
}

/// Dimensions of the JPEG thumbnail in IFD1, from its SOF segment.
fn thumbnail_size(exif: &Exif) -> Option<(u32, u32)> {
    let offset = exif.get_field(Tag::JPEGInterchangeFormat, In::THUMBNAIL)?.value.get_uint(0)? as usize;
    let len = exif.get_field(Tag::JPEGInterchangeFormatLength, In::THUMBNAIL)?.value.get_uint(0)? as usize;
    let thumb = exif.buf().get(offset..offset.checked_add(len)?)?;
    if !thumb.starts_with(&[0xFF, 0xD8]) {
        return None;
    }
    let info = crate::forensics::decode::blocks::read_jpeg(thumb).jpeg?;
    info.frame_size
}

/// Descriptive metadata for display, from EXIF, the camera found in it and the XMP creator tool.
pub fn file_metadata(
    exif: Option<&Exif>,
    camera: Option<String>,
    creator_tool: Option<&str>,
    width: u32,
    height: u32,
) -> FileMetadata {
    let field = |tag| exif.and_then(|e| ascii_field(e, tag));
    FileMetadata {
        creator: field(Tag::Artist).or_else(|| creator_tool.map(str::to_string)),
        created: field(Tag::DateTimeOriginal).or_else(|| field(Tag::DateTimeDigitized)),
        modified: field(Tag::DateTime),
        camera,
        software: field(Tag::Software).or_else(|| creator_tool.map(str::to_string)),
        width,
        height,
    }
}
