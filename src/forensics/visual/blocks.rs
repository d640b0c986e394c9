//! Per-cell and per-block statistics of the analysis window: brightness, clipping, texture,
//! a robust noise level from the median residual, JPEG blocking, and error levels from
//! re-quantising the luminance DCT at several JPEG qualities (error-level analysis done in
//! the DCT domain: the same error a JPEG re-encode would make, without encoding a file).
//!
//! One pass computes everything per 8×8 cell (the JPEG grid; the window's origin is on it),
//! in parallel over rows of cells; blocks aggregate their cells.

use rayon::prelude::*;

use super::dct::{luma_table, Dct8};
use crate::forensics::views::Views;

/// Qualities at which the error level is measured.
pub const ELA_QUALITIES: [u8; 5] = [60, 70, 80, 90, 95];
const NQ: usize = ELA_QUALITIES.len();

/// Statistics of one 8×8 cell.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CellStats {
    /// Mean luminance.
    pub mean: f32,
    /// Mean absolute median-residual.
    pub residual: f32,
    /// Structure at the 4-px scale: |F(0,1)| + |F(1,0)| of the DCT, scaled so that a ramp of
    /// slope g per pixel gives 4g (pixel noise mostly averages out of it).
    pub structure: f32,
    /// Sum of squares of the high-frequency AC coefficients (u + v ≥ 6).
    pub high: f32,
    /// Sum of squared re-quantisation errors at each of [`ELA_QUALITIES`].
    pub ela: [f32; NQ],
    /// Pixels with luma ≤ 4 or ≥ 251.
    pub clipped: u8,
    /// Sum of absolute luma steps across the cell's right and bottom grid lines.
    pub across: f32,
    /// Number of those steps.
    pub across_n: u8,
    /// Sum of absolute luma steps inside the cell (7 per row and per column).
    pub inside: f32,
}

/// The window's 8×8 cells (right and bottom remainders left out), row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Cells {
    /// Cells per row.
    pub cols: usize,
    /// Cells per column.
    pub rows: usize,
    /// `cols * rows` statistics.
    pub stats: Vec<CellStats>,
}

/// Statistics of one block.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BlockStats {
    /// Mean luminance, 0-255.
    pub mean: f32,
    /// Share of pixels at or beyond the 8-bit range (luma ≤ 4 or ≥ 251).
    pub clipped: f32,
    /// Robust noise level: the median over cells of the mean absolute residual, scaled
    /// (× 1.2533) to read as 1.4826 × the median absolute residual for Gaussian noise.
    pub noise: f32,
    /// Noise floor: the second-lowest mean absolute residual of the block's 8×8 cells.
    pub noise_floor: f32,
    /// Texture: RMS difference between the means of adjacent 8×8 cells (structure at scales
    /// of 8 px and more), less the part that pixel noise explains.
    pub texture: f32,
    /// RMS of the high-frequency AC DCT coefficients (u + v ≥ 6) per pixel.
    pub high: f32,
    /// Mean squared re-quantisation error per pixel at each of [`ELA_QUALITIES`].
    pub ela: [f32; NQ],
    /// Mean absolute luma step across the 8×8 grid lines over that within cells (1 = none).
    pub blockiness: f32,
}

/// The window cut into square blocks (the right and bottom remainders are left out).
#[derive(Debug, Clone, PartialEq)]
pub struct BlockGrid {
    /// Block side in pixels (a multiple of 8, so blocks hold whole JPEG cells).
    pub block: usize,
    /// Blocks per row.
    pub cols: usize,
    /// Blocks per column.
    pub rows: usize,
    /// `cols * rows` statistics, row-major.
    pub stats: Vec<BlockStats>,
    /// The cells the blocks were built from.
    pub cells: Cells,
}

/// Round to the nearest integer (ties to even) for |v| < 2²², without a libm call.
#[inline(always)]
fn round_fast(v: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0; // 1.5 × 2²³
    (v + MAGIC) - MAGIC
}

/// 1 for the high-frequency DCT coefficients (u + v ≥ 6), 0 elsewhere.
const HIGH_MASK: [f32; 64] = {
    let mut m = [0f32; 64];
    let mut k = 0;
    while k < 64 {
        if k / 8 + k % 8 >= 6 {
            m[k] = 1.0;
        }
        k += 1;
    }
    m
};

/// `|F(0,1)| + |F(1,0)|` over this gives 4g for a ramp of slope g (see [`CellStats::structure`]).
const STRUCTURE_SCALE: f32 = 4.55;

/// Measure every 8×8 cell of the window.
pub fn measure_cells(views: &Views) -> Cells {
    let (cols, rows) = (views.width / 8, views.height / 8);
    let dct = Dct8::default();
    let tables: Vec<([f32; 64], [f32; 64])> = ELA_QUALITIES
        .iter()
        .map(|&q| {
            let t = luma_table(q);
            (t, t.map(|v| 1.0 / v))
        })
        .collect();
    let stats = (0..rows)
        .into_par_iter()
        .flat_map_iter(|cy| {
            let (dct, tables) = (&dct, &tables);
            (0..cols).map(move |cx| measure_cell(views, cx * 8, cy * 8, dct, tables))
        })
        .collect();
    Cells { cols, rows, stats }
}

fn measure_cell(
    views: &Views,
    x0: usize,
    y0: usize,
    dct: &Dct8,
    tables: &[([f32; 64], [f32; 64])],
) -> CellStats {
    let (w, h) = (views.width, views.height);
    let (luma, res) = (&views.luma.data, &views.residual.data);
    let mut px = [0f32; 64];
    // per-lane accumulators (vectorisable): sum, |residual|, clipped, steps inside
    let (mut sum, mut abs_res, mut clip, mut inside_v) = ([0f32; 8], [0f32; 8], [0f32; 8], [0f32; 8]);
    let mut inside_h = 0f32;
    for j in 0..8 {
        let o = (y0 + j) * w + x0;
        let row: &[f32; 8] = luma[o..o + 8].try_into().expect("8 samples");
        let rrow: &[f32; 8] = res[o..o + 8].try_into().expect("8 samples");
        for i in 0..8 {
            let l = row[i];
            px[j * 8 + i] = l - 128.0;
            sum[i] += l;
            clip[i] += f32::from(u8::from(!(4.5..250.5).contains(&l)));
            abs_res[i] += rrow[i].abs();
        }
        for i in 0..7 {
            inside_h += (row[i + 1] - row[i]).abs();
        }
        if j > 0 {
            for i in 0..8 {
                inside_v[i] += (px[j * 8 + i] - px[(j - 1) * 8 + i]).abs();
            }
        }
    }
    let total = |v: [f32; 8]| v.iter().sum::<f32>();
    let (sum, abs_res, clipped) = (total(sum), total(abs_res), total(clip) as u8);
    let inside = inside_h + total(inside_v);
    let (mut across, mut across_n) = (0f32, 0u8);
    if x0 + 8 < w {
        for j in 0..8 {
            let o = (y0 + j) * w + x0 + 7;
            across += (luma[o + 1] - luma[o]).abs();
        }
        across_n += 8;
    }
    if y0 + 8 < h {
        let (a, b) = ((y0 + 7) * w + x0, (y0 + 8) * w + x0);
        for i in 0..8 {
            across += (luma[b + i] - luma[a + i]).abs();
        }
        across_n += 8;
    }
    let f = dct.forward(&px);
    let mut high_acc = [0f32; 8];
    for (fc, mc) in f.chunks_exact(8).zip(HIGH_MASK.chunks_exact(8)) {
        for l in 0..8 {
            high_acc[l] += fc[l] * fc[l] * mc[l];
        }
    }
    let high: f32 = high_acc.iter().sum();
    // eight partial sums, one per lane, so that the loop vectorises
    let mut ela = [0f32; NQ];
    for (e, (t, inv)) in ela.iter_mut().zip(tables) {
        let mut acc = [0f32; 8];
        for ((fc, tc), ic) in f.chunks_exact(8).zip(t.chunks_exact(8)).zip(inv.chunks_exact(8)) {
            for l in 0..8 {
                let d = fc[l] - tc[l] * round_fast(fc[l] * ic[l]);
                acc[l] += d * d;
            }
        }
        *e = acc.iter().sum();
    }
    CellStats {
        mean: sum / 64.0,
        residual: abs_res / 64.0,
        structure: (f[1].abs() + f[8].abs()) / STRUCTURE_SCALE,
        high,
        ela,
        clipped,
        across,
        across_n,
        inside,
    }
}

/// Measure every `block`-pixel block of the window (`block` a multiple of 8, at least 16).
pub fn measure(views: &Views, block: usize) -> BlockGrid {
    assert!(block % 8 == 0 && block >= 16);
    let cells = measure_cells(views);
    let (cols, rows) = (views.width / block, views.height / block);
    let k = block / 8;
    let mut stats = Vec::with_capacity(cols * rows);
    for by in 0..rows {
        for bx in 0..cols {
            let members: Vec<&CellStats> =
                (0..k * k).map(|i| &cells.stats[(by * k + i / k) * cells.cols + bx * k + i % k]).collect();
            stats.push(aggregate(&members, k));
        }
    }
    BlockGrid { block, cols, rows, stats, cells }
}

/// Combine the `k × k` cells of a block (row-major).
fn aggregate(cells: &[&CellStats], k: usize) -> BlockStats {
    let n = (cells.len() * 64) as f32;
    let mean = cells.iter().map(|c| c.mean).sum::<f32>() / cells.len() as f32;
    let clipped = cells.iter().map(|c| f32::from(c.clipped)).sum::<f32>() / n;
    let mut res: Vec<f32> = cells.iter().map(|c| c.residual).collect();
    res.sort_by(f32::total_cmp);
    let m = res.len();
    let median = if m % 2 == 0 { 0.5 * (res[m / 2 - 1] + res[m / 2]) } else { res[m / 2] };
    // mean |r| = 0.798 σ and 1.4826 × median |r| = σ for Gaussian residuals
    let noise = median / 0.7979;
    let noise_floor = res[1.min(m - 1)];
    let (mut structure, mut pairs) = (0f32, 0f32);
    for j in 0..k {
        for i in 0..k {
            let c = cells[j * k + i].mean;
            if i + 1 < k {
                structure += (cells[j * k + i + 1].mean - c).powi(2);
                pairs += 1.0;
            }
            if j + 1 < k {
                structure += (cells[(j + 1) * k + i].mean - c).powi(2);
                pairs += 1.0;
            }
        }
    }
    // less what pixel noise adds to differences of 64-pixel means (2σ²/64)
    let texture = (structure / pairs - noise.powi(2) / 32.0).max(0.0).sqrt();
    let high = (cells.iter().map(|c| c.high).sum::<f32>() / n).sqrt();
    let mut ela = [0f32; NQ];
    for c in cells {
        for (e, v) in ela.iter_mut().zip(c.ela) {
            *e += v;
        }
    }
    let (across, across_n) =
        cells.iter().fold((0f32, 0f32), |(s, n), c| (s + c.across, n + f32::from(c.across_n)));
    let inside = cells.iter().map(|c| c.inside).sum::<f32>() / (cells.len() * 112) as f32;
    let blockiness = (across / across_n.max(1.0) + 0.1) / (inside + 0.1);
    BlockStats { mean, clipped, noise, noise_floor, texture, high, ela: ela.map(|e| e / n), blockiness }
}
