//! Helpers shared by the integration tests: paths to the shared data and image builders.
#![allow(dead_code)]

use std::path::PathBuf;

use tellscan::forensics::decode::{decode, DecodeLimits};
use tellscan::forensics::metadata::quant::estimate_quality;
use tellscan::forensics::views::Views;
use tellscan::forensics::{Detector, DetectorConfig};

/// `../shared/` beside the project root.
pub fn shared(rel: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/")).join(rel)
}

/// Read a file under `../shared/`.
pub fn read_shared(rel: &str) -> Vec<u8> {
    std::fs::read(shared(rel)).unwrap_or_else(|e| panic!("cannot read shared/{rel}: {e}"))
}

/// Read a file under `tests/fixtures/` (the fixtures kept in the repository).
pub fn read_fixture(rel: &str) -> Vec<u8> {
    let path = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/")).join(rel);
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read tests/fixtures/{rel}: {e}"))
}

/// A detector with default settings.
pub fn detector() -> Detector {
    Detector::new(&DetectorConfig::default()).expect("default detector builds")
}

/// A smooth synthetic RGB test picture.
pub fn picture(w: u32, h: u32) -> image::RgbImage {
    image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([(x * 7 % 256) as u8, (y * 5 % 256) as u8, ((x + y) % 256) as u8])
    })
}

/// Encode an RGB picture in one of the `image` crate's formats.
pub fn encode(img: &image::RgbImage, format: image::ImageFormat) -> Vec<u8> {
    let mut out = Vec::new();
    image::DynamicImage::ImageRgb8(img.clone())
        .write_to(&mut std::io::Cursor::new(&mut out), format)
        .expect("encoding succeeds");
    out
}

/// A PNG chunk with a correct CRC.
pub fn png_chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut crc = flate2::Crc::new();
    crc.update(kind);
    crc.update(data);
    let mut out = (data.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    out.extend_from_slice(&crc.sum().to_be_bytes());
    out
}

/// Insert a JPEG segment (marker + payload) right after SOI.
pub fn jpeg_with_segment(jpeg: &[u8], marker: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = jpeg[..2].to_vec();
    out.extend_from_slice(&[0xFF, marker]);
    out.extend_from_slice(&((payload.len() + 2) as u16).to_be_bytes());
    out.extend_from_slice(payload);
    out.extend_from_slice(&jpeg[2..]);
    out
}

/// Encode an RGB picture as PNG (lossless).
pub fn png(img: &image::RgbImage) -> Vec<u8> {
    encode(img, image::ImageFormat::Png)
}

/// Decode an encoded file and build its views as the detector does (JPEG quality estimated
/// from the quantisation tables).
pub fn views_of(bytes: &[u8]) -> Views {
    let img = decode(bytes, &DecodeLimits::default()).expect("test image decodes");
    let quality = img.blocks.jpeg.as_ref().and_then(estimate_quality);
    Views::new(&img, quality)
}

/// Decode a picture under `../shared/` to RGB.
pub fn shared_rgb(rel: &str) -> image::RgbImage {
    decode(&read_shared(rel), &DecodeLimits::default())
        .unwrap_or_else(|e| panic!("shared/{rel} does not decode: {e}"))
        .rgb
}

pub mod browser;
pub mod origin;
pub mod receiver;
pub mod redis;
pub mod server;

/// Options for a short training run in a test: `steps` steps of 16 patches, 4 per sample.
pub fn quick_training(steps: usize) -> tellscan::learn::train::TrainOptions {
    tellscan::learn::train::TrainOptions {
        epochs: 1000,
        max_steps: Some(steps),
        batch: 16,
        patches_per_sample: 4,
        ..Default::default()
    }
}

/// A short run took `steps` steps, every loss is finite, and the mean of the last ten is below
/// the mean of the first ten.
pub fn assert_the_loss_decreases(losses: &[f32], steps: usize) {
    assert_eq!(losses.len(), steps);
    assert!(losses.iter().all(|l| l.is_finite()), "{losses:?}");
    let (start, end) = tellscan::learn::train::loss_ends(losses, 10);
    assert!(end < start, "the loss decreases: {start} -> {end}");
}
