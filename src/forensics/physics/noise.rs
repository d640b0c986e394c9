//! The sensor noise-level function: how the noise variance grows with intensity.
//!
//! A sensor counts photons: its noise is Poisson–Gaussian, variance `a·I + b` with `a > 0`
//! (shot noise plus read noise). The variance of the median residual is measured in 8×8
//! blocks (aligned on the JPEG grid), the blocks are binned by mean intensity, and each bin's
//! lower quantile is taken: the flattest blocks of a bin, where texture does not add to the
//! noise. A line is fitted through the bins.

use crate::forensics::views::{Crop, Views};

/// Block side for the local variance.
const BLOCK: usize = 8;
/// Width of an intensity bin in grey levels.
const BIN_WIDTH: f64 = 16.0;
/// Quantile of the block variances taken in each bin (the lower envelope: flat blocks).
const QUANTILE: f64 = 0.2;
/// Blocks a bin needs before its quantile is trusted.
const MIN_BIN_BLOCKS: usize = 12;
/// Bins used (centres within these limits: near 0 and 255 clipping removes the noise).
const LOW: f64 = 16.0;
const HIGH: f64 = 240.0;
/// Pixels this close to 0 or 255 mark a block as clipped.
const CLIP_MARGIN: f32 = 3.0;

/// One intensity bin of the noise-level function.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NoiseBin {
    /// Mean luminance of the bin's blocks, 0-255.
    pub intensity: f64,
    /// The bin's lower-quantile residual variance, grey levels².
    pub variance: f64,
    /// Blocks in the bin.
    pub blocks: usize,
}

/// What the noise-level analysis measured.
#[derive(Debug, Clone, PartialEq)]
pub struct NoiseStats {
    /// The bins used, darkest first.
    pub bins: Vec<NoiseBin>,
    /// Fitted `a` of `variance = a·I + b`.
    pub slope: f64,
    /// Fitted `b`.
    pub intercept: f64,
    /// `a × (intensity span of the bins) / mean variance`: how much the variance rises,
    /// relative to its level, across the measured range (0 for constant noise).
    pub rise: f64,
    /// The largest fall of the curve from a darker bin to a brighter one, relative to the
    /// mean variance (0 for a non-decreasing curve).
    pub drop: f64,
    /// Weighted R² of the linear fit.
    pub r2: f64,
    /// Weighted mean of the bin variances.
    pub mean_variance: f64,
}

/// Measure the noise-level function over the crops (8×8 blocks on the JPEG grid). `None`
/// when fewer than four usable intensity bins spanning at least 64 grey levels exist.
pub fn measure(views: &Views, crops: &[Crop]) -> Option<NoiseStats> {
    let w = views.width;
    let nbins = (256.0 / BIN_WIDTH) as usize;
    let mut per_bin: Vec<Vec<(f32, f32)>> = vec![Vec::new(); nbins];
    for crop in crops {
        for by in (crop.y..crop.y + crop.side - BLOCK + 1).step_by(BLOCK) {
            for bx in (crop.x..crop.x + crop.side - BLOCK + 1).step_by(BLOCK) {
                let (mut sum, mut sq, mut lo, mut hi) =
                    ([0f32; BLOCK], [0f32; BLOCK], [f32::MAX; BLOCK], [f32::MIN; BLOCK]);
                for y in by..by + BLOCK {
                    let i = y * w + bx;
                    let luma = &views.luma.data[i..i + BLOCK];
                    let res = &views.residual.data[i..i + BLOCK];
                    for k in 0..BLOCK {
                        sum[k] += luma[k];
                        sq[k] += res[k] * res[k];
                        lo[k] = lo[k].min(luma[k]);
                        hi[k] = hi[k].max(luma[k]);
                    }
                }
                let lo = lo.iter().copied().fold(f32::MAX, f32::min);
                let hi = hi.iter().copied().fold(f32::MIN, f32::max);
                if lo < CLIP_MARGIN || hi > 255.0 - CLIP_MARGIN {
                    continue;
                }
                let n = (BLOCK * BLOCK) as f32;
                let mean = sum.iter().sum::<f32>() / n;
                let bin = ((f64::from(mean) / BIN_WIDTH) as usize).min(nbins - 1);
                per_bin[bin].push((mean, sq.iter().sum::<f32>() / n));
            }
        }
    }
    let mut bins = Vec::new();
    for blocks in per_bin.iter_mut() {
        if blocks.len() < MIN_BIN_BLOCKS {
            continue;
        }
        let intensity = blocks.iter().map(|b| f64::from(b.0)).sum::<f64>() / blocks.len() as f64;
        if !(LOW..=HIGH).contains(&intensity) {
            continue;
        }
        blocks.sort_by(|a, b| a.1.total_cmp(&b.1));
        let k = ((blocks.len() as f64 * QUANTILE) as usize).min(blocks.len() - 1);
        bins.push(NoiseBin { intensity, variance: f64::from(blocks[k].1), blocks: blocks.len() });
    }
    fit(bins)
}

/// Fit `variance = a·I + b` by weighted least squares (weights `n / v²`: relative errors).
fn fit(bins: Vec<NoiseBin>) -> Option<NoiseStats> {
    if bins.len() < 4 {
        return None;
    }
    let span = bins.last()?.intensity - bins.first()?.intensity;
    if span < 64.0 {
        return None;
    }
    let weight = |b: &NoiseBin| b.blocks as f64 / (b.variance.max(1e-3)).powi(2);
    let (mut sw, mut sx, mut sy, mut sxx, mut sxy) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for b in &bins {
        let wt = weight(b);
        sw += wt;
        sx += wt * b.intensity;
        sy += wt * b.variance;
        sxx += wt * b.intensity * b.intensity;
        sxy += wt * b.intensity * b.variance;
    }
    let det = sw * sxx - sx * sx;
    if det <= 0.0 {
        return None;
    }
    let slope = (sw * sxy - sx * sy) / det;
    let intercept = (sy - slope * sx) / sw;
    let mean_variance = sy / sw;
    let (mut ss_res, mut ss_tot) = (0.0, 0.0);
    for b in &bins {
        let wt = weight(b);
        ss_res += wt * (b.variance - slope * b.intensity - intercept).powi(2);
        ss_tot += wt * (b.variance - mean_variance).powi(2);
    }
    let r2 = if ss_tot > 0.0 { 1.0 - ss_res / ss_tot } else { 0.0 };
    let mut drop: f64 = 0.0;
    let mut running_max = f64::MIN;
    for b in &bins {
        running_max = running_max.max(b.variance);
        drop = drop.max(running_max - b.variance);
    }
    let scale = mean_variance.max(1e-3);
    Some(NoiseStats {
        slope,
        intercept,
        rise: slope * span / scale,
        drop: drop / scale,
        r2,
        mean_variance,
        bins,
    })
}
