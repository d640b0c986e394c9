//! The web chain: what platforms do to a picture before our users see it, drawn at random
//! from a seed and applied alike to both classes.
//!
//! Metadata is stripped (the pixels are decoded and re-encoded), the image is optionally
//! cropped, downscaled by a factor in [0.25, 1] or to a long side of 512-2048 px with one of
//! five resampling filters, and re-encoded as JPEG (q 60-95, 4:2:0 or 4:4:4), lossy WebP
//! (q 70-95) or PNG, sometimes twice. `tellscan eval --web` measures the detector on images
//! that went through it and `tellscan train` draws a new chain for every sample, so that
//! format, size, metadata and processing cannot carry the label.

use std::fmt;

use image::{imageops, RgbImage};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sha2::{Digest, Sha256};

use crate::forensics::decode::{decode, DecodeError, DecodeLimits};

/// The smallest short side a downscale may leave (platforms do not shrink thumbnails further).
const MIN_SHORT_SIDE: u32 = 64;

/// A resampling filter, as image libraries and platforms use them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    /// Nearest neighbour.
    Nearest,
    /// Bilinear (triangle).
    Bilinear,
    /// Bicubic (Catmull-Rom).
    Bicubic,
    /// Lanczos with 3 lobes.
    Lanczos,
    /// Area averaging (box), as in OpenCV's `INTER_AREA` and browser thumbnails.
    Area,
}

const FILTERS: [Filter; 5] =
    [Filter::Nearest, Filter::Bilinear, Filter::Bicubic, Filter::Lanczos, Filter::Area];

/// JPEG chroma subsampling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chroma {
    /// Chroma halved in both directions (what most platforms write).
    Sub420,
    /// Full-resolution chroma.
    Full444,
}

/// One re-encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// Baseline JPEG.
    Jpeg {
        /// 1-100.
        quality: u8,
        /// Chroma subsampling.
        chroma: Chroma,
    },
    /// Lossy WebP.
    Webp {
        /// 1-100.
        quality: u8,
    },
    /// Lossless PNG.
    Png,
}

/// One step of a chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Keep the rectangle at (`x`, `y`) of `width`×`height`.
    Crop {
        /// Left edge.
        x: u32,
        /// Top edge.
        y: u32,
        /// Width kept.
        width: u32,
        /// Height kept.
        height: u32,
    },
    /// Resample to `width`×`height`.
    Resize {
        /// New width.
        width: u32,
        /// New height.
        height: u32,
        /// The filter.
        filter: Filter,
    },
    /// Encode and decode again.
    Encode(Encoding),
}

/// A drawn chain: its steps in order, the last one always an encoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebChain {
    /// The steps, applied in order.
    pub steps: Vec<Step>,
}

/// An image after a chain: the bytes a platform would serve and their decoded pixels.
#[derive(Debug, Clone)]
pub struct Processed {
    /// The final encoding, without metadata.
    pub bytes: Vec<u8>,
    /// Its pixels, decoded.
    pub rgb: RgbImage,
}

/// The random generator for one image: the same `seed` and `key` (the image's path as
/// written in its labels file) always give the same chain, whatever the order of work.
pub fn rng_for(seed: u64, key: &str) -> StdRng {
    let digest = Sha256::new().chain_update(seed.to_le_bytes()).chain_update(key.as_bytes()).finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    StdRng::seed_from_u64(u64::from_le_bytes(first))
}

impl WebChain {
    /// Draw a chain for an image of `width`×`height`.
    pub fn draw(rng: &mut impl Rng, width: u32, height: u32) -> Self {
        let mut steps = Vec::new();
        let (mut w, mut h) = (width.max(1), height.max(1));
        if rng.random_bool(0.3) {
            let cw = ((w as f64 * rng.random_range(0.5..=1.0)).round() as u32).clamp(1, w);
            let ch = ((h as f64 * rng.random_range(0.5..=1.0)).round() as u32).clamp(1, h);
            let x = rng.random_range(0..=w - cw);
            let y = rng.random_range(0..=h - ch);
            steps.push(Step::Crop { x, y, width: cw, height: ch });
            (w, h) = (cw, ch);
        }
        let factor = if rng.random_bool(0.5) {
            rng.random_range(0.25..=1.0)
        } else {
            let long_side = rng.random_range(512..=2048) as f64;
            (long_side / w.max(h) as f64).min(1.0)
        };
        let filter = FILTERS[rng.random_range(0..FILTERS.len())];
        steps.extend(downscale(w, h, factor, filter, MIN_SHORT_SIDE));
        steps.push(Step::Encode(draw_encoding(rng, true)));
        if rng.random_bool(0.3) {
            steps.push(Step::Encode(draw_encoding(rng, false)));
        }
        Self { steps }
    }

    /// Apply the chain to decoded pixels.
    pub fn apply(&self, rgb: &RgbImage, limits: &DecodeLimits) -> Result<Processed, DecodeError> {
        let mut pixels = rgb.clone();
        let mut bytes = None;
        for step in &self.steps {
            match *step {
                Step::Crop { x, y, width, height } => {
                    pixels = imageops::crop_imm(&pixels, x, y, width, height).to_image();
                }
                Step::Resize { width, height, filter } => pixels = resize(&pixels, width, height, filter),
                Step::Encode(encoding) => {
                    let encoded = encode(&pixels, encoding)?;
                    pixels = decode(&encoded, limits)?.rgb;
                    bytes = Some(encoded);
                }
            }
        }
        let bytes = match bytes {
            Some(b) => b,
            None => encode(&pixels, Encoding::Png)?,
        };
        Ok(Processed { bytes, rgb: pixels })
    }
}

/// The resize of a `width`×`height` image by `factor` with `filter`, the factor raised so that
/// the short side stays at `floor` px or more (unless it already was smaller); `None` when that
/// leaves the size as it is.
pub fn downscale(width: u32, height: u32, factor: f64, filter: Filter, floor: u32) -> Option<Step> {
    let short = width.min(height).max(1);
    let factor = factor.max(f64::from(floor.min(short)) / f64::from(short));
    (factor < 0.999).then(|| Step::Resize {
        width: ((f64::from(width) * factor).round() as u32).max(1),
        height: ((f64::from(height) * factor).round() as u32).max(1),
        filter,
    })
}

/// Decode `bytes`, draw a chain from `seed` and `key` and apply it.
pub fn process(
    bytes: &[u8],
    seed: u64,
    key: &str,
    limits: &DecodeLimits,
) -> Result<(Processed, WebChain), DecodeError> {
    let rgb = decode(bytes, limits)?.rgb;
    let chain = WebChain::draw(&mut rng_for(seed, key), rgb.width(), rgb.height());
    let processed = chain.apply(&rgb, limits)?;
    Ok((processed, chain))
}

/// JPEG (60%), WebP (20%) or PNG (20%) for the first encoding; JPEG or WebP for a second.
fn draw_encoding(rng: &mut impl Rng, first: bool) -> Encoding {
    let roll = rng.random_range(0.0..1.0);
    if roll < 0.6 || (!first && roll < 0.8) {
        let chroma = if rng.random_bool(0.7) { Chroma::Sub420 } else { Chroma::Full444 };
        Encoding::Jpeg { quality: rng.random_range(60..=95), chroma }
    } else if roll < 0.8 || !first {
        Encoding::Webp { quality: rng.random_range(70..=95) }
    } else {
        Encoding::Png
    }
}

/// Resample with one of the chain's filters.
pub fn resize(rgb: &RgbImage, width: u32, height: u32, filter: Filter) -> RgbImage {
    let kind = match filter {
        Filter::Nearest => imageops::FilterType::Nearest,
        Filter::Bilinear => imageops::FilterType::Triangle,
        Filter::Bicubic => imageops::FilterType::CatmullRom,
        Filter::Lanczos => imageops::FilterType::Lanczos3,
        // `thumbnail` averages the source pixels under each output pixel
        Filter::Area => return imageops::thumbnail(rgb, width, height),
    };
    imageops::resize(rgb, width, height, kind)
}

/// Encode pixels without metadata.
pub fn encode(rgb: &RgbImage, encoding: Encoding) -> Result<Vec<u8>, DecodeError> {
    let failed =
        |what: &str, e: &dyn fmt::Display| DecodeError::Corrupt(format!("{what} encoding failed: {e}"));
    match encoding {
        Encoding::Jpeg { quality, chroma } => {
            let (w, h) = match (u16::try_from(rgb.width()), u16::try_from(rgb.height())) {
                (Ok(w), Ok(h)) => (w, h),
                _ => {
                    return Err(DecodeError::TooLarge {
                        width: rgb.width(),
                        height: rgb.height(),
                        limit: "65,535 px a side (JPEG)".into(),
                    })
                }
            };
            let mut out = Vec::new();
            let mut encoder = jpeg_encoder::Encoder::new(&mut out, quality);
            encoder.set_sampling_factor(match chroma {
                Chroma::Sub420 => jpeg_encoder::SamplingFactor::F_2_2,
                Chroma::Full444 => jpeg_encoder::SamplingFactor::F_1_1,
            });
            encoder
                .encode(rgb.as_raw(), w, h, jpeg_encoder::ColorType::Rgb)
                .map_err(|e| failed("JPEG", &e))?;
            Ok(out)
        }
        Encoding::Webp { quality } => {
            let encoder = webp::Encoder::from_rgb(rgb.as_raw(), rgb.width(), rgb.height());
            let memory = encoder
                .encode_simple(false, quality as f32)
                .map_err(|e| failed("WebP", &format!("{e:?}")))?;
            Ok(memory.to_vec())
        }
        Encoding::Png => {
            let mut out = Vec::new();
            image::DynamicImage::ImageRgb8(rgb.clone())
                .write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
                .map_err(|e| failed("PNG", &e))?;
            Ok(out)
        }
    }
}

impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Filter::Nearest => "nearest",
            Filter::Bilinear => "bilinear",
            Filter::Bicubic => "bicubic",
            Filter::Lanczos => "lanczos",
            Filter::Area => "area",
        })
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Crop { x, y, width, height } => write!(f, "crop {width}x{height}+{x}+{y}"),
            Step::Resize { width, height, filter } => write!(f, "resize {width}x{height} {filter}"),
            Step::Encode(Encoding::Jpeg { quality, chroma }) => {
                let chroma = match chroma {
                    Chroma::Sub420 => "420",
                    Chroma::Full444 => "444",
                };
                write!(f, "jpeg q{quality} {chroma}")
            }
            Step::Encode(Encoding::Webp { quality }) => write!(f, "webp q{quality}"),
            Step::Encode(Encoding::Png) => f.write_str("png"),
        }
    }
}

impl fmt::Display for WebChain {
    /// Steps joined by `; `, e.g. `resize 640x480 lanczos; jpeg q78 420`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, step) in self.steps.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{step}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn photo(w: u32, h: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| {
            image::Rgb([(x * 7 % 256) as u8, (y * 3 % 256) as u8, ((x ^ y) % 256) as u8])
        })
    }

    #[test]
    fn the_chain_is_deterministic_for_a_seed_and_key() {
        let png = encode(&photo(900, 700), Encoding::Png).unwrap();
        let limits = DecodeLimits::default();
        let (a, chain_a) = process(&png, 42, "files/a.jpg", &limits).unwrap();
        let (b, chain_b) = process(&png, 42, "files/a.jpg", &limits).unwrap();
        assert_eq!(chain_a, chain_b);
        assert_eq!(a.bytes, b.bytes);
        let chains: std::collections::HashSet<String> = (0..20)
            .map(|seed| WebChain::draw(&mut rng_for(seed, "files/a.jpg"), 900, 700).to_string())
            .collect();
        assert!(chains.len() > 15, "seeds give different chains: {chains:?}");
    }

    #[test]
    fn drawn_chains_stay_in_their_ranges() {
        let mut rng = rng_for(1, "ranges");
        let (mut jpeg, mut webp, mut png, mut twice, mut resized) = (0, 0, 0, 0, 0);
        for _ in 0..2000 {
            let chain = WebChain::draw(&mut rng, 3000, 2000);
            assert!(matches!(chain.steps.last(), Some(Step::Encode(_))));
            let encodes = chain.steps.iter().filter(|s| matches!(s, Step::Encode(_))).count();
            twice += (encodes == 2) as usize;
            for step in &chain.steps {
                match *step {
                    Step::Resize { width, height, .. } => {
                        resized += 1;
                        assert!(width <= 3000 && height <= 2000 && width.min(height) >= 64);
                        // a factor of at least 0.25 of the (possibly cropped) image
                        assert!(width >= 3000 / 2 / 4 - 1, "{width}");
                    }
                    Step::Encode(Encoding::Jpeg { quality, .. }) => {
                        jpeg += 1;
                        assert!((60..=95).contains(&quality));
                    }
                    Step::Encode(Encoding::Webp { quality }) => {
                        webp += 1;
                        assert!((70..=95).contains(&quality));
                    }
                    Step::Encode(Encoding::Png) => png += 1,
                    Step::Crop { x, y, width, height } => {
                        assert!(x + width <= 3000 && y + height <= 2000 && width >= 1500 && height >= 1000)
                    }
                }
            }
        }
        assert!(
            jpeg > 1000 && webp > 300 && png > 200 && twice > 400 && resized > 1500,
            "{jpeg} {webp} {png} {twice} {resized}"
        );
    }

    #[test]
    fn every_encoding_decodes_to_the_drawn_size_without_metadata() {
        let rgb = photo(300, 200);
        let limits = DecodeLimits::default();
        for encoding in [
            Encoding::Jpeg { quality: 60, chroma: Chroma::Sub420 },
            Encoding::Jpeg { quality: 95, chroma: Chroma::Full444 },
            Encoding::Webp { quality: 80 },
            Encoding::Png,
        ] {
            let chain = WebChain {
                steps: vec![
                    Step::Crop { x: 10, y: 20, width: 250, height: 150 },
                    Step::Resize { width: 125, height: 75, filter: Filter::Area },
                    Step::Encode(encoding),
                ],
            };
            let out = chain.apply(&rgb, &limits).unwrap();
            let decoded = decode(&out.bytes, &limits).unwrap();
            assert_eq!((decoded.width, decoded.height), (125, 75), "{encoding:?}");
            assert!(decoded.blocks.exif.is_none());
            assert_eq!(out.rgb.dimensions(), (125, 75));
        }
        let described = WebChain {
            steps: vec![
                Step::Resize { width: 640, height: 480, filter: Filter::Lanczos },
                Step::Encode(Encoding::Jpeg { quality: 78, chroma: Chroma::Sub420 }),
                Step::Encode(Encoding::Webp { quality: 90 }),
            ],
        };
        assert_eq!(described.to_string(), "resize 640x480 lanczos; jpeg q78 420; webp q90");
    }

    #[test]
    fn small_images_are_not_shrunk_below_the_floor() {
        for seed in 0..200 {
            let chain = WebChain::draw(&mut rng_for(seed, "cell"), 128, 128);
            for step in chain.steps {
                if let Step::Resize { width, height, .. } = step {
                    assert!(width >= 64 && height >= 64, "{width}x{height}");
                }
            }
        }
    }
}
