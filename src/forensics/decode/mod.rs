//! Decoding: sniff the format, enforce the size limits before any pixel buffer is allocated,
//! decode inside `catch_unwind`, and collect the metadata blocks once.

pub mod blocks;
pub mod format;
mod heif;

use std::io::Cursor;
use std::panic::{catch_unwind, AssertUnwindSafe};

use image::{DynamicImage, GrayImage, RgbImage};
use serde::{Deserialize, Serialize};

pub use blocks::{JpegInfo, MetadataBlocks, QuantTable, TextChunk};
pub use format::ImageFormat;

/// Size limits checked against the dimensions a file declares, before decoding it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecodeLimits {
    /// Largest accepted width × height.
    pub max_pixels: u64,
    /// Largest accepted width or height.
    pub max_side: u32,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        Self { max_pixels: 64_000_000, max_side: 16_384 }
    }
}

/// Why a file could not be turned into pixels.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The bytes are not JPEG, PNG, WebP, HEIC/HEIF or AVIF.
    #[error("unsupported media: the file is not JPEG, PNG, WebP, HEIC/HEIF or AVIF")]
    UnsupportedMedia,
    /// The declared dimensions exceed the configured limits.
    #[error("image too large: {width}x{height} exceeds the limit of {limit}")]
    TooLarge {
        /// Declared width.
        width: u32,
        /// Declared height.
        height: u32,
        /// The limit that was exceeded, in words.
        limit: String,
    },
    /// The file claims a supported format but cannot be decoded.
    #[error("corrupt image: {0}")]
    Corrupt(String),
}

impl DecodeError {
    /// The stable machine-readable code of the error, as the API and CLI print it.
    pub fn code(&self) -> &'static str {
        match self {
            Self::UnsupportedMedia => "unsupported_media",
            Self::TooLarge { .. } => "image_too_large",
            Self::Corrupt(_) => "undecodable_image",
        }
    }
}

/// A decoded image with its metadata, shared read-only by every module.
#[derive(Debug, Clone)]
pub struct DecodedImage {
    /// The sniffed format.
    pub format: ImageFormat,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// 8-bit RGB pixels (alpha removed, no orientation applied: forensics wants the stored grid).
    pub rgb: RgbImage,
    /// The alpha channel, for images that have one.
    pub alpha: Option<GrayImage>,
    /// Metadata blocks collected from the container.
    pub blocks: MetadataBlocks,
}

/// Sniff, check limits, and decode `bytes`.
pub fn decode(bytes: &[u8], limits: &DecodeLimits) -> Result<DecodedImage, DecodeError> {
    let format = ImageFormat::sniff(bytes).ok_or(DecodeError::UnsupportedMedia)?;
    let blocks = read_blocks(format, bytes);
    let (width, height, dynamic) =
        match catch_unwind(AssertUnwindSafe(|| decode_pixels(format, bytes, limits))) {
            Ok(result) => result?,
            Err(panic) => {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".into());
                return Err(DecodeError::Corrupt(format!("the decoder failed: {what}")));
            }
        };
    let alpha =
        dynamic.color().has_alpha().then(|| dynamic.to_luma_alpha8()).map(|la| {
            GrayImage::from_fn(la.width(), la.height(), |x, y| image::Luma([la.get_pixel(x, y)[1]]))
        });
    let rgb = dynamic.into_rgb8();
    Ok(DecodedImage { format, width, height, rgb, alpha, blocks })
}

/// Collect the metadata blocks of a file whose format is known, without decoding pixels.
pub fn read_blocks(format: ImageFormat, bytes: &[u8]) -> MetadataBlocks {
    match format {
        ImageFormat::Jpeg => blocks::read_jpeg(bytes),
        ImageFormat::Png => blocks::read_png(bytes),
        ImageFormat::Webp => blocks::read_webp(bytes),
        ImageFormat::Heif | ImageFormat::Avif => heif::read_blocks(format, bytes),
    }
}

/// Reject declared dimensions beyond the limits.
pub fn check_dimensions(width: u32, height: u32, limits: &DecodeLimits) -> Result<(), DecodeError> {
    let too_large = |limit: String| Err(DecodeError::TooLarge { width, height, limit });
    if width == 0 || height == 0 {
        return Err(DecodeError::Corrupt(format!("declared size {width}x{height} is empty")));
    }
    if width > limits.max_side || height > limits.max_side {
        return too_large(format!("{} px a side", limits.max_side));
    }
    if width as u64 * height as u64 > limits.max_pixels {
        return too_large(format!("{} pixels", limits.max_pixels));
    }
    Ok(())
}

fn decode_pixels(
    format: ImageFormat,
    bytes: &[u8],
    limits: &DecodeLimits,
) -> Result<(u32, u32, DynamicImage), DecodeError> {
    let image_format = match format {
        ImageFormat::Jpeg => image::ImageFormat::Jpeg,
        ImageFormat::Png => image::ImageFormat::Png,
        ImageFormat::Webp => image::ImageFormat::WebP,
        ImageFormat::Heif | ImageFormat::Avif => return heif::decode(format, bytes, limits),
    };
    let corrupt = |e: image::ImageError| DecodeError::Corrupt(e.to_string());
    let header = image::ImageReader::with_format(Cursor::new(bytes), image_format);
    let (width, height) = header.into_dimensions().map_err(corrupt)?;
    check_dimensions(width, height, limits)?;
    let mut reader = image::ImageReader::with_format(Cursor::new(bytes), image_format);
    let mut decoder_limits = image::Limits::default();
    decoder_limits.max_image_width = Some(limits.max_side);
    decoder_limits.max_image_height = Some(limits.max_side);
    // 16-bit RGBA is the widest buffer a decoder may need, plus working room
    decoder_limits.max_alloc = Some(limits.max_pixels * 8 + 64 * 1024 * 1024);
    reader.limits(decoder_limits);
    let image = reader.decode().map_err(corrupt)?;
    Ok((width, height, image))
}
