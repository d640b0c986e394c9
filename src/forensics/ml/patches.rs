//! From pixels to network input: the picture the network reads, the noise residual of each
//! colour channel, and the choice of patches.
//!
//! Patches sit on the 8×8 grid of the pixels they are cut from and are chosen across the
//! range of local texture (evenly spaced ranks of residual energy), so a flat sky and a busy
//! texture both get a say; the same choice serves training and inference.
//!
//! At inference the network reads the picture at half resolution ([`network_view`]) when it
//! is large enough, because that ranks held-out sources better (`weights/MODEL_CARD.md`); the
//! likely reason is that averaging each 2×2 block suppresses the finest traces of the last
//! processing step (re-encoding noise, a resampling filter's ringing), which both classes
//! share. Training cuts its patches at native resolution: training on halved pictures too
//! was measured and ranked worse.

use std::borrow::Cow;

use image::RgbImage;

use super::net::{CHANNELS, PATCH};

/// Residuals are divided by this, so typical values are within ±1.
const RESIDUAL_SCALE: f32 = 8.0;
/// Residual values are clipped to ±this after scaling (edges would dominate otherwise).
const RESIDUAL_CLIP: f32 = 4.0;
/// Candidate patches considered at most (a grid thinned to this many).
const MAX_CANDIDATES: usize = 400;
/// Patches with less residual energy than this (per pixel, scaled units) are flat or
/// saturated and carry no trace; they are used only when nothing else is there.
const MIN_ENERGY: f32 = 1e-4;

/// The pixels the network reads: `image` halved by averaging each 2×2 block (rounding to
/// nearest) when the halved image still holds a patch, else `image` as it is.
///
/// Measured with the five-fold models on held-out sources (`weights/MODEL_CARD.md`): reading
/// the halved picture raised the `ml` AUC under web chains from 0.770 to 0.822 and as
/// delivered from 0.837 to 0.870, with the same weights and the same 16 patches.
pub fn network_view(image: &RgbImage) -> Cow<'_, RgbImage> {
    let (w, h) = (image.width() / 2, image.height() / 2);
    if (w as usize) < PATCH || (h as usize) < PATCH {
        return Cow::Borrowed(image);
    }
    let raw = image.as_raw();
    let stride = image.width() as usize * 3;
    let mut out = Vec::with_capacity(w as usize * h as usize * 3);
    for y in 0..h as usize {
        let (top, bottom) = (&raw[2 * y * stride..], &raw[(2 * y + 1) * stride..]);
        for x in 0..w as usize {
            for c in 0..3 {
                let at = |row: &[u8], dx: usize| u16::from(row[(2 * x + dx) * 3 + c]);
                let sum = at(top, 0) + at(top, 1) + at(bottom, 0) + at(bottom, 1);
                out.push(((sum + 2) / 4) as u8);
            }
        }
    }
    Cow::Owned(RgbImage::from_raw(w, h, out).expect("the buffer holds w × h pixels"))
}

/// The top-left corners of up to `n` patches of `image`, or none when it is smaller than a
/// patch.
pub fn select(image: &RgbImage, n: usize) -> Vec<(usize, usize)> {
    let (w, h) = (image.width() as usize, image.height() as usize);
    if w < PATCH || h < PATCH || n == 0 {
        return Vec::new();
    }
    // a grid of corners on multiples of 8, thinned so that at most MAX_CANDIDATES remain
    let cols = (w - PATCH) / 8 + 1;
    let rows = (h - PATCH) / 8 + 1;
    // at least half a patch apart, so candidates overlap by half at most
    let step = ((cols * rows) as f64 / MAX_CANDIDATES as f64).sqrt().ceil() as usize;
    let stride = step.max(PATCH / 16);
    let mut candidates = Vec::new();
    for r in (0..rows).step_by(stride) {
        for c in (0..cols).step_by(stride) {
            let (x, y) = (c * 8, r * 8);
            candidates.push((energy(image, x, y), x, y));
        }
    }
    candidates.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
    let textured: Vec<_> = candidates.iter().copied().filter(|c| c.0 >= MIN_ENERGY).collect();
    let pool = if textured.is_empty() { candidates } else { textured };
    let n = n.min(pool.len());
    if n == 1 {
        let (_, x, y) = pool[pool.len() / 2];
        return vec![(x, y)];
    }
    (0..n)
        .map(|i| {
            let (_, x, y) = pool[i * (pool.len() - 1) / (n - 1)];
            (x, y)
        })
        .collect()
}

/// Mean squared residual of the green channel over a patch (a cheap texture measure).
fn energy(image: &RgbImage, x0: usize, y0: usize) -> f32 {
    let mut sum = 0.0f32;
    // every other pixel is enough to rank patches
    for y in (y0 + 1..y0 + PATCH - 1).step_by(2) {
        for x in (x0 + 1..x0 + PATCH - 1).step_by(2) {
            let r = residual_at(image, x, y, 1);
            sum += r * r;
        }
    }
    let count = ((PATCH - 2) / 2).pow(2) as f32;
    sum / count
}

/// The scaled, clipped residual of channel `c` at an interior pixel: the pixel minus the
/// mean of its eight neighbours.
fn residual_at(image: &RgbImage, x: usize, y: usize, c: usize) -> f32 {
    let px = |dx: isize, dy: isize| {
        let (xx, yy) = ((x as isize + dx) as u32, (y as isize + dy) as u32);
        f32::from(image.get_pixel(xx, yy)[c])
    };
    let neighbours =
        px(-1, -1) + px(0, -1) + px(1, -1) + px(-1, 0) + px(1, 0) + px(-1, 1) + px(0, 1) + px(1, 1);
    ((px(0, 0) - neighbours / 8.0) / RESIDUAL_SCALE).clamp(-RESIDUAL_CLIP, RESIDUAL_CLIP)
}

/// The residual of the patch at `(x0, y0)`, channel-major (`CHANNELS × PATCH × PATCH`),
/// appended to `out`. Border pixels of the image (no full neighbourhood) get 0.
pub fn residual_patch(image: &RgbImage, x0: usize, y0: usize, out: &mut Vec<f32>) {
    let (w, h) = (image.width() as usize, image.height() as usize);
    for c in 0..CHANNELS {
        for y in y0..y0 + PATCH {
            for x in x0..x0 + PATCH {
                let interior = x > 0 && y > 0 && x + 1 < w && y + 1 < h;
                out.push(if interior { residual_at(image, x, y, c) } else { 0.0 });
            }
        }
    }
}

/// The residual patches of `image` at `corners`, flattened in batch order.
pub fn residual_patches(image: &RgbImage, corners: &[(usize, usize)]) -> Vec<f32> {
    let mut out = Vec::with_capacity(corners.len() * CHANNELS * PATCH * PATCH);
    for &(x, y) in corners {
        residual_patch(image, x, y, &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noisy(w: u32, h: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| {
            let v = (x.wrapping_mul(2_654_435_761u32.wrapping_mul(y + 1)) >> 24) as u8;
            image::Rgb([v, v / 2 + (x % 7) as u8, 255 - v])
        })
    }

    #[test]
    fn patches_fit_the_image_and_sit_on_the_jpeg_grid() {
        let img = noisy(700, 300);
        let corners = select(&img, 16);
        assert_eq!(corners.len(), 16);
        for &(x, y) in &corners {
            assert!(x + PATCH <= 700 && y + PATCH <= 300);
            assert_eq!((x % 8, y % 8), (0, 0));
        }
        let mut unique = corners.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), corners.len(), "no patch twice");
    }

    #[test]
    fn small_images_have_no_patches_and_selection_is_deterministic() {
        assert!(select(&noisy(63, 500), 8).is_empty());
        assert_eq!(select(&noisy(64, 64), 8), vec![(0, 0)]);
        let img = noisy(300, 200);
        assert_eq!(select(&img, 8), select(&img, 8));
    }

    #[test]
    fn the_network_view_averages_2x2_blocks_and_keeps_small_images() {
        let img =
            RgbImage::from_fn(131, 200, |x, y| image::Rgb([(x % 4 * 10) as u8, (y % 2 * 3) as u8, 255]));
        let half = network_view(&img);
        assert_eq!(half.dimensions(), (65, 100), "odd sides lose their last column or row");
        // x 0,1 → red 0 and 10, mean 5; rows 0,1 → green 0 and 3, (3+3+2)/4 rounds to 2
        assert_eq!(half.get_pixel(0, 0).0, [5, 2, 255]);
        assert_eq!(half.get_pixel(1, 7).0, [25, 2, 255]);
        let small = noisy(127, 400);
        assert!(matches!(network_view(&small), Cow::Borrowed(_)), "halving would leave no patch");
        assert_eq!(network_view(&noisy(128, 128)).dimensions(), (64, 64));
    }

    #[test]
    fn residual_is_zero_on_flat_images() {
        let flat = RgbImage::from_pixel(80, 80, image::Rgb([120, 30, 200]));
        let data = residual_patches(&flat, &[(8, 8)]);
        assert_eq!(data.len(), CHANNELS * PATCH * PATCH);
        assert!(data.iter().all(|&v| v == 0.0));
    }
}
