//! HEIC/HEIF and AVIF through the system libheif: dimensions from the handle before decoding,
//! EXIF and XMP from the item metadata. Both are HEIF containers; libheif picks the codec
//! (libde265 for HEVC, libdav1d or libaom for AV1) from the primary item's type.

use image::{DynamicImage, RgbImage, RgbaImage};
use libheif_rs::{ColorSpace, HeifContext, ItemId, LibHeif, RgbChroma};

use super::{check_dimensions, DecodeError, DecodeLimits, ImageFormat, MetadataBlocks};

/// Most metadata items read from one file.
const MAX_METADATA_ITEMS: usize = 32;

/// The container's name in messages: `HEIF` or `AVIF`.
fn label(format: ImageFormat) -> &'static str {
    match format {
        ImageFormat::Avif => "AVIF",
        ImageFormat::Heif | ImageFormat::Jpeg | ImageFormat::Png | ImageFormat::Webp => "HEIF",
    }
}

pub(super) fn read_blocks(format: ImageFormat, bytes: &[u8]) -> MetadataBlocks {
    let mut out = MetadataBlocks::default();
    let Ok(ctx) = HeifContext::read_from_bytes(bytes) else {
        out.warnings.push(format!("{} container could not be parsed", label(format)));
        return out;
    };
    let Ok(handle) = ctx.primary_image_handle() else {
        out.warnings.push(format!("{} has no primary image", label(format)));
        return out;
    };
    let mut ids: [ItemId; MAX_METADATA_ITEMS] = [0; MAX_METADATA_ITEMS];
    let count = handle.metadata_block_ids(&mut ids, 0u32);
    for &id in &ids[..count] {
        let kind = handle.metadata_type(id).unwrap_or("").to_string();
        let content_type = handle.metadata_content_type(id).unwrap_or("").to_string();
        let Ok(data) = handle.metadata(id) else { continue };
        if kind == "Exif" {
            // HEIF EXIF items start with a 4-byte offset to the TIFF header
            if data.len() >= 4 {
                let offset = u32::from_be_bytes([data[0], data[1], data[2], data[3]]) as usize;
                if let Some(tiff) = data.get(4 + offset..) {
                    out.exif = Some(tiff.to_vec());
                }
            }
        } else if kind == "mime" && content_type.contains("xmp") {
            out.xmp.push(String::from_utf8_lossy(&data).into_owned());
        }
    }
    if let Some(profile) = handle.color_profile_raw() {
        out.icc = Some(profile.data);
    }
    out
}

pub(super) fn decode(
    format: ImageFormat,
    bytes: &[u8],
    limits: &DecodeLimits,
) -> Result<(u32, u32, DynamicImage), DecodeError> {
    let name = label(format);
    let corrupt = |e: libheif_rs::HeifError| DecodeError::Corrupt(format!("{name}: {e}"));
    let ctx = HeifContext::read_from_bytes(bytes).map_err(corrupt)?;
    let handle = ctx.primary_image_handle().map_err(corrupt)?;
    let (width, height) = (handle.width(), handle.height());
    check_dimensions(width, height, limits)?;
    let alpha = handle.has_alpha_channel();
    let chroma = if alpha { RgbChroma::Rgba } else { RgbChroma::Rgb };
    let decoded = LibHeif::new().decode(&handle, ColorSpace::Rgb(chroma), None).map_err(corrupt)?;
    let plane = decoded
        .planes()
        .interleaved
        .ok_or_else(|| DecodeError::Corrupt(format!("{name} decoder returned no interleaved plane")))?;
    let channels = if alpha { 4 } else { 3 };
    let (w, h) = (plane.width as usize, plane.height as usize);
    let row = w * channels;
    if plane.stride < row || plane.data.len() < plane.stride * h.saturating_sub(1) + row {
        return Err(DecodeError::Corrupt(format!("{name} plane is smaller than its size")));
    }
    let mut pixels = Vec::with_capacity(row * h);
    for y in 0..h {
        pixels.extend_from_slice(&plane.data[y * plane.stride..y * plane.stride + row]);
    }
    let image = if alpha {
        RgbaImage::from_raw(w as u32, h as u32, pixels).map(DynamicImage::ImageRgba8)
    } else {
        RgbImage::from_raw(w as u32, h as u32, pixels).map(DynamicImage::ImageRgb8)
    }
    .ok_or_else(|| DecodeError::Corrupt(format!("{name} plane has the wrong length")))?;
    Ok((w as u32, h as u32, image))
}
