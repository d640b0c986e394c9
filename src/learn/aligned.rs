//! Aligned training pairs: a region of a real photo, at native resolution, and the same region
//! after a round trip through a latent autoencoder ([`crate::learn::taesd`]).
//!
//! The round trips are slow on a CPU (about a teraflop per megapixel), so at most
//! [`PAIRS_PER_SOURCE`] photos of each source contribute, each one square region of at most
//! [`REGION`] px, placed from a hash of its path, and
//! the decoded regions are cached as PNG files outside the repository, named by a hash of the
//! photo's key, the region and the decoder file: a cache that is missing or stale is rebuilt.

use std::path::{Path, PathBuf};

use anyhow::Context;
use image::{imageops, RgbImage};
use rand::Rng;
use rayon::prelude::*;
use sha2::{Digest, Sha256};

use super::taesd::{psnr, Autoencoder, DECODER_FILE, ENCODER_FILE, SCALE};
use super::web::rng_for;

/// Side of a region (smaller photos give a region as large as they allow, on the 8×8 grid).
pub const REGION: u32 = 256;
/// Smallest region worth a round trip (one network patch and a margin).
const MIN_REGION: u32 = 96;
/// Real photos of one source given a pair at most (a round trip costs seconds on a CPU, and one
/// source of the corpora holds 260 photos, more than half of all).
pub const PAIRS_PER_SOURCE: usize = 48;
/// Part of every cache name: bumped when the round trip changes (v2: squares of 64-512 px lose
/// a column of latents instead of meeting candle's layout bug).
const CACHE_VERSION: &str = "v2";
/// Seed of the region placement (with the photo's key).
const REGION_SEED: u64 = 0xA11C;

/// A real region and its reconstruction, of equal size.
#[derive(Debug, Clone)]
pub struct Pair {
    /// The photo's pixels in the region.
    pub real: RgbImage,
    /// The same region after the encoder and decoder.
    pub decoded: RgbImage,
}

/// Where reconstructions are cached unless told otherwise: `~/tellscan-data/taesd-cache`.
pub fn default_cache() -> PathBuf {
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
    home.join("tellscan-data").join("taesd-cache")
}

/// The region of a `width`×`height` image used for `key`: `(x, y, side)`, on the 8×8 grid, or
/// `None` when the image is too small.
pub fn region(key: &str, width: u32, height: u32) -> Option<(u32, u32, u32)> {
    let side = REGION.min(width).min(height) / 8 * 8;
    if side < MIN_REGION {
        return None;
    }
    let mut rng = rng_for(REGION_SEED, key);
    let x = rng.random_range(0..=(width - side) / 8) * 8;
    let y = rng.random_range(0..=(height - side) / 8) * 8;
    Some((x, y, side))
}

/// Builds and reads the cache of reconstructions.
pub struct Reconstructor {
    autoencoder: Autoencoder,
    decoder_digest: String,
    cache: PathBuf,
}

/// What [`Reconstructor::pairs`] did.
#[derive(Debug, Clone, Default)]
pub struct CacheReport {
    /// Regions read from the cache.
    pub cached: usize,
    /// Regions computed (and written) now.
    pub computed: usize,
    /// Mean PSNR (dB) of the reconstructions against their regions.
    pub mean_psnr: f64,
}

impl Reconstructor {
    /// Load the autoencoder from `taesd_dir` and use `cache` (created when missing).
    pub fn new(taesd_dir: &Path, cache: &Path) -> anyhow::Result<Reconstructor> {
        let autoencoder = Autoencoder::load_dir(taesd_dir)?;
        let decoder = taesd_dir.join(DECODER_FILE);
        let encoder = taesd_dir.join(ENCODER_FILE);
        let mut hasher = Sha256::new();
        for file in [&encoder, &decoder] {
            hasher.update(std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?);
        }
        std::fs::create_dir_all(cache).with_context(|| format!("cannot create {}", cache.display()))?;
        Ok(Reconstructor {
            autoencoder,
            decoder_digest: hex::encode(hasher.finalize()),
            cache: cache.to_path_buf(),
        })
    }

    fn cache_path(&self, key: &str, region: (u32, u32, u32)) -> PathBuf {
        let digest = Sha256::new()
            .chain_update(CACHE_VERSION.as_bytes())
            .chain_update(self.decoder_digest.as_bytes())
            .chain_update(key.as_bytes())
            .chain_update(format!("{region:?}").as_bytes())
            .finalize();
        self.cache.join(format!("{}.png", &hex::encode(digest)[..24]))
    }

    /// The pair of `pixels` (the photo known as `key`), from the cache or computed now.
    /// Returns whether it was computed. The real member is cut to the reconstruction's size
    /// (which may be 8 px narrower, see [`Autoencoder::round_trip`]).
    pub fn pair(&self, key: &str, pixels: &RgbImage) -> anyhow::Result<Option<(Pair, bool)>> {
        let Some(r @ (x, y, side)) = region(key, pixels.width(), pixels.height()) else {
            return Ok(None);
        };
        let path = self.cache_path(key, r);
        let fits = |(w, h): (u32, u32)| h == side && (side - SCALE..=side).contains(&w);
        let cached = image::open(&path).ok().map(|i| i.to_rgb8()).filter(|d| fits(d.dimensions()));
        let computed = cached.is_none();
        let decoded = match cached {
            Some(decoded) => decoded,
            None => {
                let decoded =
                    self.autoencoder.round_trip(&imageops::crop_imm(pixels, x, y, side, side).to_image())?;
                // write then rename, so an interrupted run never leaves a truncated entry
                let partial = path.with_extension("png.partial");
                decoded
                    .save_with_format(&partial, image::ImageFormat::Png)
                    .with_context(|| format!("cannot write {}", partial.display()))?;
                std::fs::rename(&partial, &path)
                    .with_context(|| format!("cannot write {}", path.display()))?;
                decoded
            }
        };
        let real = imageops::crop_imm(pixels, x, y, decoded.width(), decoded.height()).to_image();
        Ok(Some((Pair { real, decoded }, computed)))
    }

    /// The pairs of many photos (`(key, pixels)`), in parallel; a photo whose round trip fails
    /// is reported and gets none.
    pub fn pairs(&self, photos: &[(&str, &RgbImage)]) -> (Vec<Option<Pair>>, CacheReport) {
        let results: Vec<Option<(Pair, bool)>> = photos
            .par_iter()
            .map(|(key, pixels)| match self.pair(key, pixels) {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!("no aligned pair for {key}: {e:#}");
                    None
                }
            })
            .collect();
        let mut report = CacheReport::default();
        let mut psnr_sum = 0.0;
        let pairs = results
            .into_iter()
            .map(|r| {
                r.map(|(pair, computed)| {
                    if computed {
                        report.computed += 1;
                    } else {
                        report.cached += 1;
                    }
                    psnr_sum += psnr(&pair.real, &pair.decoded);
                    pair
                })
            })
            .collect();
        report.mean_psnr = psnr_sum / (report.cached + report.computed).max(1) as f64;
        (pairs, report)
    }
}

/// Which of the given photos (`(source, key)`) get a pair: in each source, at most
/// [`PAIRS_PER_SOURCE`], evenly spaced in the order of their keys. Returns their indices,
/// ascending.
pub fn chosen(photos: &[(&str, &str)]) -> Vec<usize> {
    use std::collections::BTreeMap;
    let mut by_source: BTreeMap<&str, Vec<(&str, usize)>> = BTreeMap::new();
    for (i, &(source, key)) in photos.iter().enumerate() {
        by_source.entry(source).or_default().push((key, i));
    }
    let mut picked = Vec::new();
    for mut members in by_source.into_values() {
        members.sort();
        let n = members.len();
        let take = n.min(PAIRS_PER_SOURCE);
        picked.extend((0..take).map(|j| members[j * n / take].1));
    }
    picked.sort_unstable();
    picked
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_fit_sit_on_the_grid_and_depend_only_on_the_key() {
        for (w, h) in [(4000, 3000), (500, 400), (384, 384), (100, 5000)] {
            let (x, y, side) = region("a/b.jpg", w, h).unwrap();
            assert!(x + side <= w && y + side <= h, "{w}x{h}");
            assert_eq!((x % 8, y % 8, side % 8), (0, 0, 0));
            assert_eq!(side, REGION.min(w).min(h) / 8 * 8);
            assert_eq!(region("a/b.jpg", w, h), Some((x, y, side)));
        }
        assert_eq!(region("tiny", 90, 400), None);
        assert_ne!(region("a/b.jpg", 4000, 3000), region("a/c.jpg", 4000, 3000));
    }

    #[test]
    fn large_sources_are_thinned_evenly_and_small_ones_kept() {
        let keys: Vec<String> = (0..200).map(|i| format!("big/{i:03}.jpg")).collect();
        let mut photos: Vec<(&str, &str)> = keys.iter().map(|k| ("big", k.as_str())).collect();
        photos.push(("small", "s/1.jpg"));
        photos.push(("small", "s/0.jpg"));
        let picked = chosen(&photos);
        assert_eq!(picked.len(), PAIRS_PER_SOURCE + 2);
        assert!(picked.contains(&200) && picked.contains(&201));
        let big: Vec<usize> = picked.iter().copied().filter(|&i| i < 200).collect();
        assert_eq!(big[0], 0);
        assert!(big.windows(2).all(|w| w[1] - w[0] >= 4), "spread out: {big:?}");
    }
}
