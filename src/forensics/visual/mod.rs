//! Visual forensics: error levels, noise levels, colour, skin texture and edge profiles.
//!
//! (The method is documented in full once the weights are final.)

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

// ---- weights (log-odds) ----

/// A value interpolated over the JPEG quality between anchors at 60, 75 and ≥ 90 (lossless
/// input counts as ≥ 90): the spreads' typical levels move as compression erases noise.
fn by_quality(quality: Option<u8>, at60: f64, at75: f64, at90: f64) -> f64 {
    let q = quality.map_or(90.0, f64::from).clamp(60.0, 90.0);
    if q >= 75.0 {
        at75 + (at90 - at75) * (q - 75.0) / 15.0
    } else {
        at60 + (at75 - at60) * (q - 60.0) / 15.0
    }
}

/// Noise-spread term: log-odds per natural-log unit of spread at qualities 60, 75, ≥ 90.
const NOISE_WEIGHT: [f64; 3] = [0.55, 0.6, 1.33];
/// The log spread midway between the camera and generated classes at qualities 60, 75, ≥ 90.
const NOISE_CENTRE: [f64; 3] = [-0.37, -0.455, -0.585];
/// Error-level-spread term: log-odds per natural-log unit (stable across qualities).
const ELA_WEIGHT: f64 = 1.32;
/// The log error-level spread midway between the classes at qualities 60, 75, ≥ 90.
const ELA_CENTRE: [f64; 3] = [-1.367, -0.891, -0.68];
/// Log spread above its centre at which `noise_inconsistent` / `ela_inconsistent` is raised:
/// the 95th percentile of camera photos at every quality measured.
const SPREAD_FLAG: f64 = 0.4;
/// Cap on any continuous term, so that one statistic cannot decide alone.
const TERM_CAP: f64 = 2.5;
/// Colour terms (per colourfulness unit and per unit of hue entropy, half the fitted weights)
/// and their centres.
const COLOURFUL_WEIGHT: f64 = 0.007;
const COLOURFUL_CENTRE: f64 = 48.0;
const HUE_WEIGHT: f64 = 0.75;
const HUE_CENTRE: f64 = 0.47;
/// Colour term at which `color_anomaly` is raised (≤ 2 % of camera photos).
const COLOUR_FLAG: f64 = 0.35;
/// Skin smoother than comparable non-skin texture by this log ratio raises `skin_smoothing`.
const SKIN_RATIO_FLAG: f32 = -0.5;
/// Smallest share of skin-toned cells for the skin finding.
const SKIN_MIN_COVERAGE: f32 = 0.01;
const SKIN_WEIGHT: f64 = 1.2;
/// Added to both residual levels before their ratio, so that two clean renders compare sanely.
const SKIN_NOISE_FLOOR: f32 = 0.05;
/// A localised anomaly (splice-like) in the error and noise levels.
const LOCAL_WEIGHT: f64 = 2.0;
/// Edge profiles: ringing and plateau roughness both beyond camera photos; a weightless note.
const MELT_RINGING: f32 = 1.2;
const MELT_ROUGHNESS: f32 = 0.25;

/// Turn the measurements into log-odds findings; `quality` is the file's JPEG quality.
pub fn weigh(m: &Measurements, quality: Option<u8>) -> Evidence {
    let mut ev = Evidence::default();
    if m.valid_blocks >= MIN_BLOCKS && m.noise_spread.is_finite() && m.noise_spread > 0.0 {
        let [w60, w75, w90] = NOISE_WEIGHT;
        let [c60, c75, c90] = NOISE_CENTRE;
        let excess = f64::from(m.noise_spread).ln() - by_quality(quality, c60, c75, c90);
        let w = (by_quality(quality, w60, w75, w90) * excess).clamp(-TERM_CAP, TERM_CAP);
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
        let w = (ELA_WEIGHT * excess).clamp(-TERM_CAP, TERM_CAP);
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
    let heatmap = heatmap(&m);
    PixelFinding { report: weigh(&m, views.jpeg_quality).into_report("no visual evidence"), heatmap }
}
