//! Input transforms for evaluation: normalisation (pixel-only comparison) and degradations.

use std::str::FromStr;

use image::{imageops, RgbImage};

use crate::forensics::decode::{decode, DecodeError, DecodeLimits};

/// Side of the normalised centre crop.
pub const NORMALIZED_SIDE: u32 = 512;
/// JPEG quality of the normalised re-encode.
pub const NORMALIZED_QUALITY: u8 = 90;

/// One degradation applied before detection.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Perturbation {
    /// Re-encode as JPEG at this quality (1-100).
    Jpeg(u8),
    /// Resize both sides by this factor (0 < f ≤ 4), Catmull-Rom.
    Resize(f64),
}

/// A comma-separated list such as `jpeg:75,resize:0.5`, applied in order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Perturbations(pub Vec<Perturbation>);

impl FromStr for Perturbations {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.split(',')
            .filter(|p| !p.trim().is_empty())
            .map(|item| {
                let (kind, value) = item
                    .trim()
                    .split_once(':')
                    .ok_or_else(|| format!("'{item}' is not KIND:VALUE (e.g. jpeg:75, resize:0.5)"))?;
                match kind {
                    "jpeg" => match value.parse::<u8>() {
                        Ok(q) if (1..=100).contains(&q) => Ok(Perturbation::Jpeg(q)),
                        _ => Err(format!("jpeg quality '{value}' is not 1-100")),
                    },
                    "resize" => match value.parse::<f64>() {
                        Ok(f) if f > 0.0 && f <= 4.0 => Ok(Perturbation::Resize(f)),
                        _ => Err(format!("resize factor '{value}' is not in (0, 4]")),
                    },
                    other => Err(format!("unknown perturbation '{other}' (known: jpeg, resize)")),
                }
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Perturbations)
    }
}

/// Encode RGB pixels as a baseline JPEG with no metadata.
pub fn encode_jpeg(rgb: &RgbImage, quality: u8) -> Vec<u8> {
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, quality)
        .encode_image(rgb)
        .expect("encoding an in-memory RGB image into a Vec cannot fail");
    out
}

/// Centre crop of `side`×`side` at native resolution; `None` when the image is smaller.
pub fn centre_crop(rgb: &RgbImage, side: u32) -> Option<RgbImage> {
    if rgb.width() < side || rgb.height() < side {
        return None;
    }
    let (x, y) = ((rgb.width() - side) / 2, (rgb.height() - side) / 2);
    Some(imageops::crop_imm(rgb, x, y, side, side).to_image())
}

/// Strip metadata, take the centre 512×512 crop without resampling, re-encode as JPEG q90.
/// `Ok(None)` when the image is smaller than 512 px on a side.
pub fn normalize(bytes: &[u8], limits: &DecodeLimits) -> Result<Option<Vec<u8>>, DecodeError> {
    let image = decode(bytes, limits)?;
    Ok(centre_crop(&image.rgb, NORMALIZED_SIDE).map(|crop| encode_jpeg(&crop, NORMALIZED_QUALITY)))
}

/// Decode, apply the degradations in order, and re-encode (JPEG q95 unless the last step is
/// a JPEG re-encode). Metadata does not survive.
pub fn perturb(bytes: &[u8], steps: &Perturbations, limits: &DecodeLimits) -> Result<Vec<u8>, DecodeError> {
    if steps.0.is_empty() {
        return Ok(bytes.to_vec());
    }
    let mut rgb = decode(bytes, limits)?.rgb;
    let mut encoded = None;
    for step in &steps.0 {
        match *step {
            Perturbation::Jpeg(q) => {
                let jpeg = encode_jpeg(&rgb, q);
                rgb = decode(&jpeg, limits)?.rgb;
                encoded = Some(jpeg);
            }
            Perturbation::Resize(f) => {
                let w = ((rgb.width() as f64 * f).round() as u32).max(1);
                let h = ((rgb.height() as f64 * f).round() as u32).max(1);
                rgb = imageops::resize(&rgb, w, h, imageops::FilterType::CatmullRom);
                encoded = None;
            }
        }
    }
    Ok(encoded.unwrap_or_else(|| encode_jpeg(&rgb, 95)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_perturbation_lists() {
        let p: Perturbations = "jpeg:75,resize:0.5".parse().unwrap();
        assert_eq!(p.0, vec![Perturbation::Jpeg(75), Perturbation::Resize(0.5)]);
        assert!("jpeg:0".parse::<Perturbations>().is_err());
        assert!("blur:2".parse::<Perturbations>().is_err());
        assert!("resize".parse::<Perturbations>().is_err());
    }

    #[test]
    fn normalize_crops_without_resampling_and_skips_small_images() {
        let big = RgbImage::from_fn(800, 600, |x, y| image::Rgb([(x % 256) as u8, (y % 256) as u8, 7]));
        let png = {
            let mut v = Vec::new();
            image::DynamicImage::ImageRgb8(big)
                .write_to(&mut std::io::Cursor::new(&mut v), image::ImageFormat::Png)
                .unwrap();
            v
        };
        let out = normalize(&png, &DecodeLimits::default()).unwrap().unwrap();
        let img = decode(&out, &DecodeLimits::default()).unwrap();
        assert_eq!((img.width, img.height), (512, 512));
        assert!(img.blocks.exif.is_none());
        let small = encode_jpeg(&RgbImage::new(300, 300), 90);
        assert_eq!(normalize(&small, &DecodeLimits::default()).unwrap(), None);
    }

    #[test]
    fn perturb_resizes() {
        let jpeg = encode_jpeg(&RgbImage::new(200, 100), 90);
        let steps: Perturbations = "jpeg:75,resize:0.5".parse().unwrap();
        let out = perturb(&jpeg, &steps, &DecodeLimits::default()).unwrap();
        let img = decode(&out, &DecodeLimits::default()).unwrap();
        assert_eq!((img.width, img.height), (100, 50));
    }
}
