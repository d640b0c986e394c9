//! Visual forensics: error levels, noise levels, colour, skin texture and edge profiles, with
//! a per-block map of where the image departs from itself.
//!
//! # What is measured
//!
//! The window is cut into 8×8 cells on the JPEG grid ([`blocks`]); each cell gives its mean,
//! mean absolute noise residual (`views.residual`), clipping, blocking steps, high-frequency
//! energy, and its luminance DCT re-quantised with the IJG tables at qualities 60-95. The
//! re-quantisation error is exactly the luminance error a JPEG re-save at that quality makes
//! (error-level analysis without encoding a file, so it costs one DCT per cell and no codec).
//! Cells are gathered into 32-px blocks ([`BLOCK`]), which give a robust noise level (median
//! over cells), a noise floor (second-lowest cell), texture (differences of cell means, less
//! what noise explains), error levels and blockiness.
//!
//! * **Noise and error-level consistency** ([`consistency`]). Each block statistic is
//!   regressed (Huber IRLS) on texture and brightness: blocks are compared with blocks of
//!   similar content, and signal-dependent noise is allowed for. The robust spread of the
//!   residuals says how much the noise floor (`noise_spread`) and the error level at quality
//!   80 (`ela_spread`; 70 when the file itself is near 80) vary beyond what content explains.
//!   One camera capture has one noise process; generators leave some regions clean and others
//!   detailed. These two spreads carry most of the module's evidence.
//! * **Localisation.** The residual z-scores of eight block statistics (noise, noise floor,
//!   high-frequency energy, error levels at 60/80/90/95, blockiness) are smoothed over 3×3
//!   blocks (a pasted area is coherent, sampling noise is not) and combined into a robust
//!   Mahalanobis distance from the image's own typical block. That distance is the heatmap
//!   ([`heatmap`]): `1 − exp(−(d − 3)⁺ / 6)`. A connected group of at least
//!   [`LOCAL_MIN_BLOCKS`] blocks above [`LOCAL_THRESHOLD`] is a localised anomaly (a splice
//!   or a regenerated area).
//! * **Colour** ([`colour`]): Hasler-Süsstrunk colourfulness and the entropy of the
//!   saturation-weighted hue histogram (also saturation percentiles, kept for analysts).
//! * **Skin** ([`colour::skin_stats`]): cells in the Chai-Ngan YCbCr skin box whose residual is
//!   much lower than that of non-skin cells with no more structure ("plastic" skin).
//! * **Edges** ([`edges`]): profiles across strong edges (halo, ringing, width, plateau
//!   roughness, continuity along the edge).
//!
//! # Weights and where they come from
//!
//! All figures are from `../shared/corpus` (123 ai/partial, 76 real), measured with this
//! module on the normalised set (centre 512² crop, JPEG q90) and on it after
//! `jpeg:75,resize:0.5`, `jpeg:75` and `jpeg:60`; the raw files were used only to check false
//! positives, because format alone separates them.
//!
//! * Noise and error-level spreads, colourfulness and hue entropy: a class-balanced logistic
//!   regression (L2 0.05 on standardised features) on the normalised and normalised+perturbed
//!   sets gave 1.33 and 1.32 log-odds per natural-log unit of spread, 0.0139 per colourfulness
//!   unit and 1.5 per unit of hue entropy. Colour is content rather than process, and adding
//!   it did not raise the AUC on held-out sources (leave one AI and one camera source out:
//!   0.850 without, 0.846 with), so its weights are halved. Each term is centred on the
//!   midpoint of the two classes' medians (which reproduces the fitted intercept within 0.1)
//!   and capped at ±[`TERM_CAP`]. Fits on the `jpeg:75` and `jpeg:60` sets moved the centres
//!   and lowered the noise weight (compression erases noise in flat areas of camera photos
//!   too): [`by_quality`] interpolates between anchors at 60, 75 and ≥ 90.
//! * Flags `noise_inconsistent` / `ela_inconsistent` fire at a spread [`SPREAD_FLAG`] above the
//!   centre, the 95th percentile of camera photos at every quality measured; `color_anomaly`
//!   at a colour term of 0.35 (≤ 2 % of camera photos).
//! * `skin_smoothing` (+1.2): flagged on 58 of 611 generated and 3 of 340 camera images over
//!   all variants (likelihood ratio ≈ 11, ln 2.4), halved for the small counts.
//! * Localised anomaly (`ela_inconsistent`, +2.0): on 234 constructed splices (a 256² square
//!   of a ComfyUI render pasted into camera photos ≥ 1024 px, saved as JPEG q90 or PNG) it
//!   fired on 67 % (JPEG) and 90 % (PNG), against 1 of 39 clean re-saves and 2 of 76 raw camera
//!   files (a trail camera's info strip, one HEIC): ratio ≈ 25 (ln 3.2), shrunk to 2.
//! * `melting_edges` is a weightless note: no edge statistic separated the classes (AUC
//!   0.47-0.55 for halo, ringing, roughness and continuity), so it moves no score.
//!
//! Measured (this module alone): ROC AUC 0.91 normalised, 0.91 normalised + `jpeg:75,
//! resize:0.5`, 0.88 at `jpeg:75`, 0.82 at `jpeg:60`, 0.75-0.76 on the raw files; the
//! splice's square is the heatmap's top block in 83 % of JPEG and 95 % of PNG composites.
//!
//! # Abstention
//!
//! Below [`MIN_SIDE`] px on the short side the block statistics have too few blocks to
//! compare; at JPEG quality ≤ [`MIN_QUALITY`] quantisation has flattened the noise and error
//! levels the module reads; with fewer than [`MIN_BLOCKS`] unclipped blocks, or with 90 % of
//! the blocks flat (no noise, no texture), there is nothing to compare. Each abstention says
//! which.
//!
//! # Cost
//!
//! One 8×8 DCT and five re-quantisations per cell, in parallel over rows of cells; the colour
//! statistics sample one pixel in 16, the edge profiles the centre 512² only. About 40 ms for
//! a 4 MP window on one core in release.

pub mod blocks;
pub mod colour;
pub mod consistency;
pub mod dct;
pub mod edges;

use rayon::prelude::*;

use super::evidence::Evidence;
use super::report::Flag;
use super::views::{Heatmap, PixelFinding, Views, MIN_SIDE};
use blocks::{BlockGrid, BlockStats};
use colour::{ColourStats, SkinStats};
use edges::EdgeStats;

/// Block side of the statistics and of the heatmap, in pixels (four JPEG cells a side).
pub const BLOCK: usize = 32;
/// At or below this estimated JPEG quality the module abstains: quantisation has erased the
/// noise and error-level differences it reads.
pub const MIN_QUALITY: u8 = 50;
/// Fewest unclipped blocks the consistency statistics need.
pub const MIN_BLOCKS: usize = 16;
/// Distance (robust Mahalanobis, smoothed) above which a block is anomalous.
pub const LOCAL_THRESHOLD: f32 = 10.0;
/// Fewest connected anomalous blocks that make a localised anomaly (about 160×160 px).
pub const LOCAL_MIN_BLOCKS: usize = 24;

/// The per-block statistics compared across the window for localisation.
const LOCAL_FEATURES: [fn(&BlockStats) -> f32; 8] = [
    |s| s.noise.max(0.05).ln(),
    |s| (s.noise_floor + 0.05).ln(),
    |s| (s.high + 0.05).ln(),
    |s| (s.ela[0] + 0.01).ln(),
    |s| (s.ela[2] + 0.01).ln(),
    |s| (s.ela[3] + 0.01).ln(),
    |s| (s.ela[4] + 0.01).ln(),
    |s| s.blockiness.ln(),
];

/// Everything the module measures on one window.
#[derive(Debug, Clone, PartialEq)]
pub struct Measurements {
    /// The per-block statistics.
    pub grid: BlockGrid,
    /// Blocks that are not clipped (the ones compared).
    pub valid_blocks: usize,
    /// Spread (robust standard deviation, natural-log units) of the blocks' noise floor
    /// after regression on texture and brightness: how much the noise level varies.
    pub noise_spread: f32,
    /// The JPEG quality of the error-level analysis.
    pub ela_quality: u8,
    /// Spread (natural-log units) of the blocks' error level at `ela_quality` after the
    /// same regression.
    pub ela_spread: f32,
    /// Per-block distance from the image's own typical levels (smoothed robust Mahalanobis
    /// over noise, error-level and blocking statistics); NaN where a block is left out.
    pub distance: Vec<f32>,
    /// Size in blocks of the largest connected group above [`LOCAL_THRESHOLD`].
    pub anomaly_blocks: usize,
    /// Index of the block with the largest distance in that group, if any.
    pub anomaly_peak: Option<usize>,
    /// Global colour statistics.
    pub colour: ColourStats,
    /// Skin-tone texture statistics.
    pub skin: SkinStats,
    /// Strong-edge profile statistics.
    pub edges: EdgeStats,
}

/// Why the module cannot judge this window, if it cannot.
pub fn abstain_reason(views: &Views) -> Option<String> {
    let short = views.width.min(views.height);
    if short < MIN_SIDE {
        return Some(format!(
            "too small for visual forensics: {}×{} px (needs at least {MIN_SIDE} px on the short side)",
            views.width, views.height
        ));
    }
    if let Some(q) = views.jpeg_quality.filter(|&q| q <= MIN_QUALITY) {
        return Some(format!(
            "compressed too hard for visual forensics: JPEG quality about {q} (needs above {MIN_QUALITY})"
        ));
    }
    None
}

/// The JPEG quality at which error levels are compared: 80, or 70 when the file itself was
/// saved near 80 (re-saving at the file's own quality changes almost nothing).
pub fn ela_quality(jpeg_quality: Option<u8>) -> u8 {
    match jpeg_quality {
        Some(q) if (76..=84).contains(&q) => 70,
        _ => 80,
    }
}

/// Measure every statistic of the window (no abstention check).
pub fn measure(views: &Views) -> Measurements {
    let grid = blocks::measure(views, BLOCK);
    let valid_blocks = grid.stats.iter().filter(|s| s.clipped <= consistency::MAX_CLIPPED).count();
    let noise_spread = consistency::regress(&grid, |s| (s.noise_floor + 0.05).ln()).scale;
    let ela_quality = ela_quality(views.jpeg_quality);
    let qi = blocks::ELA_QUALITIES.iter().position(|&q| q == ela_quality).unwrap_or(2);
    let ela_spread = consistency::regress(&grid, |s| (s.ela[qi] + 0.01).ln()).scale;
    let smoothed: Vec<Vec<f32>> = LOCAL_FEATURES
        .par_iter()
        .map(|f| consistency::smooth3(&consistency::regress_z(&grid, f), grid.cols, grid.rows))
        .collect();
    let distance = consistency::mahalanobis(&smoothed);
    let (anomaly_blocks, anomaly_peak) = largest_anomaly(&distance, grid.cols, grid.rows);
    Measurements {
        valid_blocks,
        noise_spread,
        ela_quality,
        ela_spread,
        distance,
        anomaly_blocks,
        anomaly_peak,
        colour: colour::colour_stats(views),
        skin: colour::skin_stats(views, &grid.cells),
        edges: edges::edge_stats(views),
        grid,
    }
}

/// The largest 4-connected group of blocks above [`LOCAL_THRESHOLD`]: its size and its peak.
fn largest_anomaly(distance: &[f32], cols: usize, rows: usize) -> (usize, Option<usize>) {
    let hot = |i: usize| distance[i].is_finite() && distance[i] > LOCAL_THRESHOLD;
    let mut seen = vec![false; distance.len()];
    let (mut best, mut peak) = (0, None);
    for start in 0..distance.len() {
        if seen[start] || !hot(start) {
            continue;
        }
        seen[start] = true;
        let (mut stack, mut size, mut top) = (vec![start], 0, start);
        while let Some(i) = stack.pop() {
            size += 1;
            if distance[i] > distance[top] {
                top = i;
            }
            let (x, y) = (i % cols, i / cols);
            let neighbours = [
                (x > 0).then(|| i - 1),
                (x + 1 < cols).then(|| i + 1),
                (y > 0).then(|| i - cols),
                (y + 1 < rows).then(|| i + cols),
            ];
            for j in neighbours.into_iter().flatten() {
                if !seen[j] && hot(j) {
                    seen[j] = true;
                    stack.push(j);
                }
            }
        }
        if size > best {
            (best, peak) = (size, Some(top));
        }
    }
    (best, peak)
}

/// The per-block suspicion map: the distance mapped to 0-1 (`1 − exp(−(d − 3)⁺ / 6)`, where 3
/// is about the typical distance of an unremarkable block); `None` without enough blocks.
pub fn heatmap(m: &Measurements) -> Option<Heatmap> {
    if !m.distance.iter().any(|d| d.is_finite()) {
        return None;
    }
    let values = m
        .distance
        .iter()
        .map(|&d| if d.is_finite() { 1.0 - (-(d - 3.0).max(0.0) / 6.0).exp() } else { f32::NAN })
        .collect();
    Some(Heatmap { block: m.grid.block, cols: m.grid.cols, rows: m.grid.rows, values })
}

// ---- weights (log-odds; see the module documentation for where each comes from) ----

/// A value interpolated over the JPEG quality between anchors at 60, 75 and ≥ 90 (lossless
/// input counts as ≥ 90): the spreads' typical levels move as compression erases noise.
pub fn by_quality(quality: Option<u8>, at60: f64, at75: f64, at90: f64) -> f64 {
    let q = quality.map_or(90.0, f64::from).clamp(60.0, 90.0);
    if q >= 75.0 {
        at75 + (at90 - at75) * (q - 75.0) / 15.0
    } else {
        at60 + (at75 - at60) * (q - 60.0) / 15.0
    }
}

/// Noise-spread term: log-odds per natural-log unit of spread at qualities 60, 75, ≥ 90.
pub const NOISE_WEIGHT: [f64; 3] = [0.55, 0.6, 1.33];
/// The log noise spread midway between the camera and generated classes at qualities 60, 75,
/// ≥ 90.
pub const NOISE_CENTRE: [f64; 3] = [-0.37, -0.455, -0.585];
/// Error-level-spread term: log-odds per natural-log unit (stable across qualities).
pub const ELA_WEIGHT: f64 = 1.32;
/// The log error-level spread midway between the classes at qualities 60, 75, ≥ 90.
pub const ELA_CENTRE: [f64; 3] = [-1.367, -0.891, -0.68];
/// Log spread above its centre at which `noise_inconsistent` / `ela_inconsistent` is raised:
/// the 95th percentile of camera photos at every quality measured.
pub const SPREAD_FLAG: f64 = 0.4;
/// Cap on any continuous term, so that one statistic cannot decide alone.
pub const TERM_CAP: f64 = 2.5;
/// Log-odds per unit of colourfulness (half the fitted weight).
pub const COLOURFUL_WEIGHT: f64 = 0.007;
/// Colourfulness midway between the classes' medians (camera 34, generated 62).
pub const COLOURFUL_CENTRE: f64 = 48.0;
/// Log-odds per unit of hue entropy (half the fitted weight).
pub const HUE_WEIGHT: f64 = 0.75;
/// Hue entropy midway between the classes' medians (camera 0.40, generated 0.54).
pub const HUE_CENTRE: f64 = 0.47;
/// Colour term at which `color_anomaly` is raised (≤ 2 % of camera photos).
pub const COLOUR_FLAG: f64 = 0.35;
/// Skin smoother than comparable non-skin texture by this log ratio raises `skin_smoothing`.
pub const SKIN_RATIO_FLAG: f32 = -0.5;
/// Smallest share of skin-toned cells for the skin finding.
pub const SKIN_MIN_COVERAGE: f32 = 0.01;
/// Log-odds of the `skin_smoothing` finding: none, a note. Beauty filters and down-scaling
/// smooth real skin as well (issue 11: 5-6 % of real photos of unseen sources, 3-5 % of
/// generated images).
pub const SKIN_WEIGHT: f64 = 0.0;
/// Added to both residual levels before their ratio, so that two clean renders compare sanely.
pub const SKIN_NOISE_FLOOR: f32 = 0.05;
/// Log-odds of a localised anomaly (splice-like) in the error and noise levels.
pub const LOCAL_WEIGHT: f64 = 2.0;
/// Median ringing (per edge contrast) beyond which edges may be "melting" (with roughness).
pub const MELT_RINGING: f32 = 1.2;
/// Median plateau roughness (per edge contrast) beyond which edges may be "melting".
pub const MELT_ROUGHNESS: f32 = 0.25;

/// Turn the measurements into log-odds findings; `quality` is the file's JPEG quality.
pub fn weigh(m: &Measurements, quality: Option<u8>) -> Evidence {
    let mut ev = Evidence::default();
    if m.valid_blocks >= MIN_BLOCKS && m.noise_spread.is_finite() && m.noise_spread > 0.0 {
        let [w60, w75, w90] = NOISE_WEIGHT;
        let [c60, c75, c90] = NOISE_CENTRE;
        let excess = f64::from(m.noise_spread).ln() - by_quality(quality, c60, c75, c90);
        // one-directional: uneven noise is what local sharpening, denoising and re-compression
        // leave on photos too (issue 11: flagged on 15 % of real photos and 13-15 % of generated
        // images of unseen sources)
        let w = (by_quality(quality, w60, w75, w90) * excess).clamp(-TERM_CAP, 0.0);
        if excess >= SPREAD_FLAG {
            ev.add(
                w,
                Some(Flag::NoiseInconsistent),
                format!(
                    "the noise level varies between regions more than one capture explains (spread {:.2} \
                     in log units after texture and brightness, beyond 95 % of camera photos)",
                    m.noise_spread
                ),
            );
        } else {
            ev.add(w, None, format!("noise level across regions: spread {:.2} in log units", m.noise_spread));
        }
    }
    if m.valid_blocks >= MIN_BLOCKS && m.ela_spread.is_finite() && m.ela_spread > 0.0 {
        let [c60, c75, c90] = ELA_CENTRE;
        let excess = f64::from(m.ela_spread).ln() - by_quality(quality, c60, c75, c90);
        // one-directional: real photos re-saved at several qualities spread their error levels
        // (flagged on 21-40 % of real photos of unseen sources, 16 % of generated images)
        let w = (ELA_WEIGHT * excess).clamp(-TERM_CAP, 0.0);
        let q = m.ela_quality;
        if excess >= SPREAD_FLAG {
            ev.add(
                w,
                Some(Flag::ElaInconsistent),
                format!(
                    "error levels at JPEG quality {q} vary between regions beyond camera photos \
                     (spread {:.2} in log units, beyond 95 % of camera photos)",
                    m.ela_spread
                ),
            );
        } else {
            ev.add(
                w,
                None,
                format!("error levels at JPEG quality {q}: spread {:.2} in log units", m.ela_spread),
            );
        }
    }
    if let (true, Some(peak)) = (m.anomaly_blocks >= LOCAL_MIN_BLOCKS, m.anomaly_peak) {
        let (x, y) = ((peak % m.grid.cols) * m.grid.block, (peak / m.grid.cols) * m.grid.block);
        ev.add(
            LOCAL_WEIGHT,
            Some(Flag::ElaInconsistent),
            format!(
                "a region of about {} px² around ({x}, {y}) in the analysed window has error and noise \
                 levels unlike the rest of the image (a spliced or regenerated area)",
                m.anomaly_blocks * m.grid.block * m.grid.block
            ),
        );
    }
    let c = &m.colour;
    let colour_w = COLOURFUL_WEIGHT * (f64::from(c.colourfulness) - COLOURFUL_CENTRE)
        + HUE_WEIGHT * (f64::from(c.hue_entropy) - HUE_CENTRE);
    let colour_w = colour_w.clamp(-TERM_CAP, TERM_CAP);
    if colour_w >= COLOUR_FLAG {
        ev.add(
            colour_w,
            Some(Flag::ColorAnomaly),
            format!(
                "colour statistics unlike camera photos: colourfulness {:.0} and hue entropy {:.2} \
                 (camera photos: median 35 and 0.42)",
                c.colourfulness, c.hue_entropy
            ),
        );
    } else {
        ev.add(
            colour_w,
            None,
            format!("colourfulness {:.0}, hue entropy {:.2}", c.colourfulness, c.hue_entropy),
        );
    }
    let s = &m.skin;
    if s.measured && s.coverage >= SKIN_MIN_COVERAGE {
        let ratio = ((s.skin_noise + SKIN_NOISE_FLOOR) / (s.reference_noise + SKIN_NOISE_FLOOR)).ln();
        if ratio <= SKIN_RATIO_FLAG {
            ev.add(
                SKIN_WEIGHT,
                Some(Flag::SkinSmoothing),
                format!(
                    "skin-tone regions ({:.0} % of the image) are smoother than comparable texture elsewhere \
                     (residual {:.2} against {:.2})",
                    100.0 * s.coverage,
                    s.skin_noise,
                    s.reference_noise
                ),
            );
        }
    }
    let e = &m.edges;
    if e.count >= 100 && e.ringing >= MELT_RINGING && e.roughness >= MELT_ROUGHNESS {
        ev.add(
            0.0,
            Some(Flag::MeltingEdges),
            format!(
                "strong edges ring and dissolve into texture (ringing {:.2}, plateau roughness {:.2} of the \
                 edge contrast); a note only: it does not separate generated images from photos in our corpus",
                e.ringing, e.roughness
            ),
        );
    }
    ev
}

/// Run the visual module on the shared views.
pub fn analyse(views: &Views) -> PixelFinding {
    if let Some(reason) = abstain_reason(views) {
        return PixelFinding { report: super::report::ModuleReport::abstain(reason), heatmap: None };
    }
    let m = measure(views);
    if m.valid_blocks < MIN_BLOCKS {
        return PixelFinding {
            report: super::report::ModuleReport::abstain(format!(
                "too few unclipped {BLOCK}-px blocks for visual forensics ({} of {MIN_BLOCKS})",
                m.valid_blocks
            )),
            heatmap: None,
        };
    }
    let flat = m
        .grid
        .stats
        .iter()
        .filter(|s| s.clipped <= consistency::MAX_CLIPPED && s.noise_floor < 0.02 && s.texture < 0.05)
        .count();
    if flat * 10 >= m.valid_blocks * 9 {
        return PixelFinding {
            report: super::report::ModuleReport::abstain(
                "the image is flat: no noise or texture in at least 90 % of it for visual forensics to compare",
            ),
            heatmap: None,
        };
    }
    let heatmap = heatmap(&m);
    PixelFinding { report: weigh(&m, views.jpeg_quality).into_report("no visual evidence"), heatmap }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quality_anchors_interpolate_and_clamp() {
        assert_eq!(by_quality(None, 1.0, 2.0, 3.0), 3.0);
        assert_eq!(by_quality(Some(98), 1.0, 2.0, 3.0), 3.0);
        assert_eq!(by_quality(Some(75), 1.0, 2.0, 3.0), 2.0);
        assert!((by_quality(Some(67), 1.0, 2.0, 3.0) - (1.0 + 7.0 / 15.0)).abs() < 1e-12);
        assert_eq!(by_quality(Some(55), 1.0, 2.0, 3.0), 1.0);
    }

    #[test]
    fn error_levels_avoid_the_files_own_quality() {
        assert_eq!(ela_quality(None), 80);
        assert_eq!(ela_quality(Some(90)), 80);
        assert_eq!(ela_quality(Some(80)), 70);
        assert!(blocks::ELA_QUALITIES.contains(&ela_quality(Some(80))));
    }

    #[test]
    fn the_largest_hot_group_is_found_with_its_peak() {
        let (cols, rows) = (10, 8);
        let mut d = vec![1.0f32; cols * rows];
        for (x, y) in [(1, 1), (2, 1), (2, 2), (7, 5), (7, 6), (8, 6), (8, 5)] {
            d[y * cols + x] = 12.0;
        }
        d[6 * cols + 8] = 20.0;
        d[0] = f32::NAN;
        assert_eq!(largest_anomaly(&d, cols, rows), (4, Some(6 * cols + 8)));
        assert_eq!(largest_anomaly(&[1.0; 4], 2, 2), (0, None));
    }

    #[test]
    fn the_heatmap_is_monotonic_in_the_distance() {
        let m = |d: Vec<f32>| Measurements {
            grid: BlockGrid {
                block: BLOCK,
                cols: d.len(),
                rows: 1,
                stats: vec![],
                cells: blocks::Cells { cols: 0, rows: 0, stats: vec![] },
            },
            valid_blocks: 0,
            noise_spread: f32::NAN,
            ela_quality: 80,
            ela_spread: f32::NAN,
            distance: d,
            anomaly_blocks: 0,
            anomaly_peak: None,
            colour: ColourStats::default(),
            skin: SkinStats::default(),
            edges: EdgeStats::default(),
        };
        let map = heatmap(&m(vec![2.0, 5.0, 12.0, f32::NAN])).unwrap();
        assert_eq!(map.values[0], 0.0);
        assert!(map.values[1] < map.values[2] && map.values[2] < 1.0);
        assert!(map.values[3].is_nan());
        assert!(heatmap(&m(vec![f32::NAN; 3])).is_none());
    }
}
