//! Colour statistics of the window (saturation and hue distributions, colourfulness) and the
//! texture of skin-tone regions.

use super::blocks::Cells;
use crate::forensics::views::Views;

/// Global colour statistics.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ColourStats {
    /// Mean HSV saturation (0-1) of pixels that are not near-black.
    pub mean_saturation: f32,
    /// 90th percentile of HSV saturation.
    pub p90_saturation: f32,
    /// Share of pixels with saturation ≥ 0.7 and value ≥ 0.25 (vivid colour).
    pub vivid: f32,
    /// Hasler-Süsstrunk colourfulness (about 0-150; camera photos mostly 15-60).
    pub colourfulness: f32,
    /// Normalised entropy (0-1) of the saturation-weighted hue histogram (36 bins).
    pub hue_entropy: f32,
    /// Mean saturation of dark pixels (value 0.08-0.3), where camera noise desaturates.
    pub dark_saturation: f32,
}

/// Sampling step of the colour statistics in both directions (a 16th of the pixels).
const COLOUR_STEP: usize = 4;

/// Measure the colour statistics on every fourth pixel of every fourth row.
pub fn colour_stats(views: &Views) -> ColourStats {
    let raw = views.image.as_raw();
    let mut sat_hist = [0u32; 101];
    let mut hue = [0f64; 36];
    let (mut n, mut sat_sum, mut vivid) = (0u32, 0f64, 0u32);
    let (mut dark_n, mut dark_sat) = (0u32, 0f64);
    let (mut rg_s, mut rg_ss, mut yb_s, mut yb_ss, mut m) = (0f64, 0f64, 0f64, 0f64, 0f64);
    for y in (0..views.height).step_by(COLOUR_STEP) {
        for x in (0..views.width).step_by(COLOUR_STEP) {
            let o = 3 * (y * views.width + x);
            let p = &raw[o..o + 3];
            let (r, g, b) = (f32::from(p[0]), f32::from(p[1]), f32::from(p[2]));
            let rg = (r - g) as f64;
            let yb = (0.5 * (r + g) - b) as f64;
            rg_s += rg;
            rg_ss += rg * rg;
            yb_s += yb;
            yb_ss += yb * yb;
            m += 1.0;
            let max = r.max(g).max(b);
            let min = r.min(g).min(b);
            let v = max / 255.0;
            if v < 0.08 {
                continue;
            }
            let s = (max - min) / max;
            n += 1;
            sat_sum += f64::from(s);
            sat_hist[(s * 100.0) as usize] += 1;
            if s >= 0.7 && v >= 0.25 {
                vivid += 1;
            }
            if v < 0.3 {
                dark_n += 1;
                dark_sat += f64::from(s);
            }
            if s >= 0.2 && v >= 0.2 {
                let d = max - min;
                let h = if max == r {
                    ((g - b) / d).rem_euclid(6.0)
                } else if max == g {
                    (b - r) / d + 2.0
                } else {
                    (r - g) / d + 4.0
                };
                hue[((h * 6.0) as usize).min(35)] += f64::from(s);
            }
        }
    }
    let colourfulness = if m > 0.0 {
        let var = |s: f64, ss: f64| (ss / m - (s / m).powi(2)).max(0.0);
        let sd = (var(rg_s, rg_ss) + var(yb_s, yb_ss)).sqrt();
        let mean = ((rg_s / m).powi(2) + (yb_s / m).powi(2)).sqrt();
        (sd + 0.3 * mean) as f32
    } else {
        0.0
    };
    let hue_total: f64 = hue.iter().sum();
    let hue_entropy = if hue_total > 0.0 {
        let h: f64 = hue.iter().filter(|&&c| c > 0.0).map(|&c| -(c / hue_total) * (c / hue_total).ln()).sum();
        (h / 36f64.ln()).max(0.0) as f32
    } else {
        0.0
    };
    let p90 = {
        let target = (0.9 * f64::from(n)) as u32;
        let mut acc = 0;
        let mut at = 100;
        for (i, &c) in sat_hist.iter().enumerate() {
            acc += c;
            if acc > target {
                at = i;
                break;
            }
        }
        at as f32 / 100.0
    };
    ColourStats {
        mean_saturation: if n > 0 { (sat_sum / f64::from(n)) as f32 } else { 0.0 },
        p90_saturation: p90,
        vivid: if n > 0 { vivid as f32 / n as f32 } else { 0.0 },
        colourfulness,
        hue_entropy,
        dark_saturation: if dark_n > 0 { (dark_sat / f64::from(dark_n)) as f32 } else { 0.0 },
    }
}

/// Texture of skin-tone regions against the rest of the image.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SkinStats {
    /// Share of 8×8 cells that are skin-toned.
    pub coverage: f32,
    /// `true` when there are enough skin cells and comparable non-skin cells to compare.
    pub measured: bool,
    /// Median mean-absolute residual of the skin cells.
    pub skin_noise: f32,
    /// Median mean-absolute residual of the non-skin cells with no more structure.
    pub reference_noise: f32,
}

/// Minimum number of skin cells for the skin statistics to mean anything.
pub const MIN_SKIN_CELLS: usize = 48;

/// `true` for a skin-toned pixel: the Chai-Ngan YCbCr box (77 ≤ Cb ≤ 127, 135 ≤ Cr ≤ 173),
/// with 60 ≤ Y ≤ 235 (away from shadows and highlights) and red above green; computed in
/// fixed point (BT.601 coefficients × 10⁶).
#[inline]
pub fn is_skin(r: u8, g: u8, b: u8) -> bool {
    if r <= g {
        return false;
    }
    let (r, g, b) = (i64::from(r), i64::from(g), i64::from(b));
    let y = 299_000 * r + 587_000 * g + 114_000 * b;
    let cb = -168_736 * r - 331_264 * g + 500_000 * b; // (Cb − 128) × 10⁶
    let cr = 500_000 * r - 418_688 * g - 81_312 * b; // (Cr − 128) × 10⁶
    (60_000_000..=235_000_000).contains(&y)
        && (-51_000_000..=-1_000_000).contains(&cb)
        && (7_000_000..=45_000_000).contains(&cr)
}

/// Structure below which a cell counts as smooth whatever the skin cells show.
pub const SMOOTH_STRUCTURE: f32 = 2.0;

/// Skin statistics over the window's 8×8 cells: a cell is skin when at least 15 of 16 sampled
/// pixels (every second pixel of every second row) are; the reference is non-skin cells with
/// no more structure than three quarters of the skin cells (or [`SMOOTH_STRUCTURE`]).
pub fn skin_stats(views: &Views, cells: &Cells) -> SkinStats {
    let raw = views.image.as_raw();
    let w = views.width;
    let mut skin = Vec::new();
    let mut other = Vec::new();
    let mut structure_skin = Vec::new();
    for cy in 0..cells.rows {
        for cx in 0..cells.cols {
            let mut count = 0u32;
            for j in [1, 3, 5, 7] {
                let row = (cy * 8 + j) * w + cx * 8;
                for i in [0, 2, 4, 6] {
                    let p = &raw[3 * (row + i)..3 * (row + i) + 3];
                    count += u32::from(is_skin(p[0], p[1], p[2]));
                }
            }
            let c = &cells.stats[cy * cells.cols + cx];
            if count >= 15 {
                skin.push(c.residual);
                structure_skin.push(c.structure);
            } else if count == 0 {
                other.push((c.structure, c.residual));
            }
        }
    }
    let coverage = skin.len() as f32 / (cells.cols * cells.rows).max(1) as f32;
    if skin.len() < MIN_SKIN_CELLS {
        return SkinStats { coverage, ..Default::default() };
    }
    let skin_noise = median_f32(&mut skin);
    structure_skin.sort_by(f32::total_cmp);
    let limit = structure_skin[structure_skin.len() * 3 / 4].max(SMOOTH_STRUCTURE);
    let mut reference: Vec<f32> = other.iter().filter(|(g, _)| *g <= limit).map(|(_, r)| *r).collect();
    if reference.len() < MIN_SKIN_CELLS {
        return SkinStats { coverage, skin_noise, ..Default::default() };
    }
    SkinStats { coverage, measured: true, skin_noise, reference_noise: median_f32(&mut reference) }
}

fn median_f32(v: &mut [f32]) -> f32 {
    let mid = v.len() / 2;
    *v.select_nth_unstable_by(mid, f32::total_cmp).1
}
