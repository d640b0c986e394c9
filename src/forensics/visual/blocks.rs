//! Per-block statistics of the analysis window: brightness, clipping, texture, a robust noise
//! level from the median residual, and error levels from re-quantising the luminance DCT at
//! several JPEG qualities (error-level analysis in the DCT domain).

use super::dct::{luma_table, Dct8};
use crate::forensics::views::Views;

/// Qualities at which the error level is measured.
pub const ELA_QUALITIES: [u8; 5] = [60, 70, 80, 90, 95];

/// Statistics of one block.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BlockStats {
    /// Mean luminance, 0-255.
    pub mean: f32,
    /// Share of pixels at or beyond the 8-bit range (luma ≤ 4 or ≥ 251).
    pub clipped: f32,
    /// Robust noise level: 1.4826 × the median absolute median-residual.
    pub noise: f32,
    /// Noise floor: the second-lowest mean absolute residual of the block's 8×8 cells.
    pub noise_floor: f32,
    /// Texture: RMS difference between the means of adjacent 8×8 cells (structure at scales
    /// of 8 px and more), less the part that pixel noise explains.
    pub texture: f32,
    /// RMS of the low-frequency AC DCT coefficients (u + v ≤ 2) per pixel: detail at the
    /// 8-px scale, pixel noise included.
    pub detail: f32,
    /// RMS of the high-frequency AC DCT coefficients (u + v ≥ 6) per pixel.
    pub high: f32,
    /// Mean squared re-quantisation error per pixel at each of [`ELA_QUALITIES`].
    pub ela: [f32; ELA_QUALITIES.len()],
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
}

/// Measure every `block`-pixel block of the window (`block` a multiple of 8).
pub fn measure(views: &Views, block: usize) -> BlockGrid {
    assert!(block % 8 == 0 && block >= 16);
    let (cols, rows) = (views.width / block, views.height / block);
    let dct = Dct8::default();
    let tables: Vec<([f32; 64], [f32; 64])> = ELA_QUALITIES
        .iter()
        .map(|&q| {
            let t = luma_table(q);
            (t, t.map(|v| 1.0 / v))
        })
        .collect();
    let mut stats = Vec::with_capacity(cols * rows);
    for by in 0..rows {
        for bx in 0..cols {
            stats.push(measure_block(views, bx * block, by * block, block, &dct, &tables));
        }
    }
    BlockGrid { block, cols, rows, stats }
}

/// Round to the nearest integer (ties to even) for |v| < 2²², without a libm call.
#[inline(always)]
fn round_fast(v: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0; // 1.5 × 2²³
    (v + MAGIC) - MAGIC
}

fn measure_block(
    views: &Views,
    x0: usize,
    y0: usize,
    b: usize,
    dct: &Dct8,
    tables: &[([f32; 64], [f32; 64])],
) -> BlockStats {
    let w = views.width;
    let (luma, res) = (&views.luma.data, &views.residual.data);
    let n = (b * b) as f32;
    // brightness, clipping, residual histogram (0.25 steps up to 64)
    let mut hist = [0u32; 257];
    let (mut sum, mut clipped) = (0f32, 0u32);
    for y in y0..y0 + b {
        let row = &luma[y * w + x0..y * w + x0 + b];
        let rrow = &res[y * w + x0..y * w + x0 + b];
        for (&l, &r) in row.iter().zip(rrow) {
            sum += l;
            clipped += u32::from(!(4.5..250.5).contains(&l));
            hist[((r.abs() * 4.0) as usize).min(256)] += 1;
        }
    }
    let noise = 1.4826 * hist_median(&hist, (b * b) as u32) / 4.0;
    // DCT cells
    let mut cell_abs = Vec::with_capacity((b / 8) * (b / 8));
    let (mut low, mut high) = (0f32, 0f32);
    let cells = b / 8;
    let mut means = Vec::with_capacity(cells * cells);
    let mut ela = [0f32; ELA_QUALITIES.len()];
    let mut px = [0f32; 64];
    for cy in (y0..y0 + b).step_by(8) {
        for cx in (x0..x0 + b).step_by(8) {
            let mut a = 0f32;
            for j in 0..8 {
                let o = (cy + j) * w + cx;
                for i in 0..8 {
                    px[j * 8 + i] = luma[o + i] - 128.0;
                    a += res[o + i].abs();
                }
            }
            cell_abs.push(a / 64.0);
            let f = dct.forward(&px);
            means.push(f[0] / 8.0);
            for (k, &c) in f.iter().enumerate().skip(1) {
                let uv = k / 8 + k % 8;
                if uv <= 2 {
                    low += c * c;
                } else if uv >= 6 {
                    high += c * c;
                }
            }
            for (e, (t, inv)) in ela.iter_mut().zip(tables) {
                let mut s = 0f32;
                for k in 0..64 {
                    let d = f[k] - t[k] * round_fast(f[k] * inv[k]);
                    s += d * d;
                }
                *e += s;
            }
        }
    }
    let (mut structure, mut pairs) = (0f32, 0f32);
    for j in 0..cells {
        for i in 0..cells {
            let m = means[j * cells + i];
            if i + 1 < cells {
                structure += (means[j * cells + i + 1] - m).powi(2);
                pairs += 1.0;
            }
            if j + 1 < cells {
                structure += (means[(j + 1) * cells + i] - m).powi(2);
                pairs += 1.0;
            }
        }
    }
    cell_abs.sort_by(f32::total_cmp);
    let noise_floor = cell_abs[1.min(cell_abs.len() - 1)];
    // blockiness: steps across x ≡ 7 | 8 (and y) against steps inside cells
    let (mut across, mut inside, mut na, mut ni) = (0f32, 0f32, 0u32, 0u32);
    for y in y0..y0 + b {
        let row = &luma[y * w..(y + 1) * w];
        for x in x0..(x0 + b).min(w - 1) {
            let d = (row[x + 1] - row[x]).abs();
            if x % 8 == 7 {
                across += d;
                na += 1;
            } else {
                inside += d;
                ni += 1;
            }
        }
    }
    for y in y0..(y0 + b).min(views.height - 1) {
        for x in x0..x0 + b {
            let d = (luma[(y + 1) * w + x] - luma[y * w + x]).abs();
            if y % 8 == 7 {
                across += d;
                na += 1;
            } else {
                inside += d;
                ni += 1;
            }
        }
    }
    let blockiness = (across / na.max(1) as f32 + 0.1) / (inside / ni.max(1) as f32 + 0.1);
    BlockStats {
        mean: sum / n,
        clipped: clipped as f32 / n,
        noise,
        noise_floor,
        // less what pixel noise adds to differences of 64-pixel means (2σ²/64, with the
        // median residual's robust level about 0.85 σ)
        texture: (structure / pairs - (noise / 0.85).powi(2) / 32.0).max(0.0).sqrt(),
        detail: (low / n).sqrt(),
        high: (high / n).sqrt(),
        ela: ela.map(|e| e / n),
        blockiness,
    }
}

/// The median bin of a histogram (interpolated within the bin).
fn hist_median(hist: &[u32], total: u32) -> f32 {
    let half = total as f32 / 2.0;
    let mut acc = 0f32;
    for (i, &c) in hist.iter().enumerate() {
        let next = acc + c as f32;
        if next >= half && c > 0 {
            return i as f32 + (half - acc) / c as f32;
        }
        acc = next;
    }
    hist.len() as f32
}
