//! Physics: traces of the camera pipeline (draft header; the method is documented below).

pub mod aberration;
pub mod cfa;
pub mod noise;
pub mod resampling;

use std::time::Instant;

use super::evidence::Evidence;
use super::report::Flag;
use super::views::{Crop, PixelFinding, Views, MIN_SIDE};

pub use aberration::AberrationStats;
pub use cfa::{BayerPhase, CfaStats, CfaTrace};
pub use noise::{NoiseBin, NoiseStats};

/// Log-odds of a full Bayer pattern (see the module documentation).
const W_CFA_BAYER: f64 = -2.5;
/// Log-odds of the green lattice alone.
const W_CFA_GREEN: f64 = -2.0;
/// Log-odds of no demosaicing trace.
const W_NO_CFA: f64 = 0.2;

/// Lower-envelope residual variance (grey levels²) below which flat regions count as
/// noise-free.
const QUIET_VARIANCE: f64 = 0.15;
/// Log-odds of noise-free flat regions.
const W_QUIET: f64 = 0.9;
/// |rise| (and fall) below which the noise-level function counts as flat.
const FLAT_RISE: f64 = 0.3;
/// Log-odds of measurable constant-variance noise.
const W_FLAT: f64 = 0.5;
/// Rise and R² from which the noise follows the linear sensor model.
const FIT_RISE: f64 = 0.5;
const FIT_R2: f64 = 0.7;
/// Log-odds of noise following the sensor model.
const W_SENSOR_NOISE: f64 = -0.7;
/// Log-odds of measurable noise of another shape.
const W_NOISY: f64 = -0.4;
/// Blocks per channel and radius (px) the aberration fit needs before it is weighed.
const CA_MIN_BLOCKS: usize = 12;
const CA_MIN_RADIUS: f64 = 100.0;
/// Significance below which aberration counts as absent, and from which as present.
const CA_ABSENT_T: f64 = 2.0;
const CA_PRESENT_T: f64 = 3.0;
/// Log-odds of absent aberration.
const W_NO_CA: f64 = 0.8;
/// Log-odds per σ of present aberration, and its cap.
const W_CA_PER_SIGMA: f64 = 0.5;
const W_CA_MAX: f64 = 2.0;

/// JPEG quality at or below which the module abstains.
pub const MIN_JPEG_QUALITY: u8 = 60;

/// Side of the crops the demosaicing and resampling analyses read.
const CROP_SIDE: usize = 512;
/// Crops read at most.
const MAX_CROPS: usize = 4;

/// Everything the module measured, before it is weighed.
#[derive(Debug, Clone, PartialEq)]
pub struct Measurements {
    /// Why the module abstains, when it does.
    pub abstain: Option<String>,
    /// Strongest resampling peak (ratio to the spectrum's median) outside the CFA and JPEG
    /// frequencies.
    pub resampling_peak: f64,
    /// The demosaicing analysis.
    pub cfa: Option<CfaStats>,
    /// The noise-level function.
    pub noise: Option<NoiseStats>,
    /// The chromatic-aberration analysis.
    pub aberration: Option<AberrationStats>,
}

/// The crops: up to four 512-px squares, or one square as large as the window allows
/// (a multiple of 8) on smaller images.
fn crops(views: &Views) -> Vec<Crop> {
    let crops = views.crops(CROP_SIDE, MAX_CROPS);
    if !crops.is_empty() {
        return crops;
    }
    let side = views.width.min(views.height) / 8 * 8;
    views.crops(side, 1)
}

/// Why the module must not judge this image, if it must not; otherwise the crops to read.
/// The resampling peak is stored in `m` either way.
fn gate(views: &Views, m: &mut Measurements) -> Result<Vec<Crop>, String> {
    let short = views.width.min(views.height);
    if short < MIN_SIDE {
        return Err(format!(
            "the image is too small ({}×{} px; below {MIN_SIDE} px the camera-pipeline statistics are noise)",
            views.width, views.height
        ));
    }
    if let Some(q) = views.jpeg_quality.filter(|&q| q <= MIN_JPEG_QUALITY) {
        return Err(format!(
            "JPEG quality {q} is too low for demosaicing, sensor-noise and aberration traces to survive \
             (the module judges quality {} and above)",
            MIN_JPEG_QUALITY + 1
        ));
    }
    let crops = crops(views);
    m.resampling_peak = resampling::peak(&views.luma, &crops);
    if m.resampling_peak >= resampling::RESAMPLED_PEAK {
        return Err(format!(
            "the image was resampled (a periodic interpolation pattern {:.0}× the spectrum's median): \
             camera-pipeline traces do not survive resizing",
            m.resampling_peak
        ));
    }
    Ok(crops)
}

/// Measure everything (the gate first: an image the module abstains on is not measured
/// further).
pub fn measure(views: &Views) -> Measurements {
    let mut m =
        Measurements { abstain: None, resampling_peak: 0.0, cfa: None, noise: None, aberration: None };
    match gate(views, &mut m) {
        Err(reason) => m.abstain = Some(reason),
        Ok(crops) => {
            m.cfa = cfa::measure(views, &crops);
            m.noise = noise::measure(views, &crops);
            m.aberration = aberration::measure(views);
        }
    }
    m
}

/// The Bayer phase the demosaicing pattern shows and the strength of that pattern (the
/// contrast in nepers, see [`CfaStats::score`]), when the module finds a full Bayer pattern.
/// `None` when it abstains, finds none, or finds only the green lattice (see
/// [`CfaTrace::GreenLattice`]).
pub fn cfa_phase(views: &Views) -> Option<(BayerPhase, f64)> {
    let mut m =
        Measurements { abstain: None, resampling_peak: 0.0, cfa: None, noise: None, aberration: None };
    let crops = gate(views, &mut m).ok()?;
    let c = cfa::measure(views, &crops)?;
    match c.trace()? {
        CfaTrace::Bayer(phase) => Some((phase, c.score)),
        CfaTrace::GreenLattice(_) => None,
    }
}

/// Run the physics module.
pub fn analyse(views: &Views) -> PixelFinding {
    let started = Instant::now();
    let m = measure(views);
    let mut heatmap = None;
    let mut report = match m.abstain {
        Some(reason) => super::report::ModuleReport::abstain(reason),
        None => {
            let mut ev = Evidence::default();
            if let Some(c) = &m.cfa {
                if weigh_cfa(c, &mut ev) {
                    heatmap = cfa::heatmap(views, c);
                }
            }
            if let Some(n) = &m.noise {
                weigh_noise(n, &mut ev);
            }
            if let Some(a) = &m.aberration {
                weigh_aberration(a, &mut ev);
            }
            ev.into_report("no camera-pipeline statistic could be measured on this image")
        }
    };
    report.elapsed_ms = (started.elapsed().as_secs_f64() * 1e5).round() / 100.0;
    PixelFinding { report, heatmap }
}

/// Weigh the demosaicing finding; `true` when a pattern was found.
fn weigh_cfa(c: &CfaStats, ev: &mut Evidence) -> bool {
    match c.trace() {
        Some(CfaTrace::Bayer(phase)) => {
            ev.add(
                W_CFA_BAYER,
                Some(Flag::CfaPresent),
                format!(
                    "demosaicing traces of a {phase} Bayer sensor in all three channels (contrast {:.2} nepers, \
                     {}/{} crops agree)",
                    c.score, c.agreeing_crops, c.crops
                ),
            );
            true
        }
        Some(CfaTrace::GreenLattice([a, b])) => {
            ev.add(
                W_CFA_GREEN,
                Some(Flag::CfaPresent),
                format!(
                    "demosaicing traces of a Bayer sensor: green interpolated on a quincunx lattice ({a} or {b}; \
                     contrast {:.2} nepers, {}/{} crops agree; the red/blue phase did not survive chroma subsampling)",
                    c.green.abs(),
                    c.green_agreeing_crops,
                    c.crops
                ),
            );
            true
        }
        None => {
            ev.add(
                W_NO_CFA,
                Some(Flag::NoCfaTraces),
                format!(
                    "no demosaicing traces (best Bayer contrast {:.2}, green lattice {:.2} nepers); weak evidence: \
                     JPEG compression, resizing and camera processing erase them too",
                    c.score,
                    c.green.abs()
                ),
            );
            false
        }
    }
}

/// Weigh the noise-level function.
fn weigh_noise(n: &NoiseStats, ev: &mut Evidence) {
    let range = format!(
        "{:.0}-{:.0}",
        n.bins.first().map_or(0.0, |b| b.intensity),
        n.bins.last().map_or(0.0, |b| b.intensity)
    );
    if n.mean_variance < QUIET_VARIANCE {
        ev.add(
            W_QUIET,
            Some(Flag::NoiseModelMismatch),
            format!(
                "no measurable noise in flat regions (residual variance {:.2} grey levels² over intensities {range}): \
                 the noise-level function is flat at the quantisation floor, which no sensor produces",
                n.mean_variance
            ),
        );
    } else if n.rise.abs() < FLAT_RISE && n.drop < FLAT_RISE {
        ev.add(
            W_FLAT,
            Some(Flag::NoiseModelMismatch),
            format!(
                "noise of constant variance ({:.2} grey levels², rising {:+.0}% over intensities {range}): additive, \
                 not the signal-dependent noise of a sensor",
                n.mean_variance,
                100.0 * n.rise
            ),
        );
    } else if n.rise >= FIT_RISE && n.r2 >= FIT_R2 && n.drop < FLAT_RISE {
        ev.add(
            W_SENSOR_NOISE,
            None,
            format!(
                "noise grows with intensity as a sensor's (variance ≈ {:.3}·I + {:.2}, R² {:.2})",
                n.slope, n.intercept, n.r2
            ),
        );
    } else {
        ev.add(
            W_NOISY,
            None,
            format!(
                "measurable noise in flat regions ({:.2} grey levels²) whose level-versus-intensity curve is not the \
                 linear sensor model (rise {:+.0}%, R² {:.2}), as tone curves and texture make it in camera JPEGs",
                n.mean_variance,
                100.0 * n.rise,
                n.r2
            ),
        );
    }
}

/// Weigh the chromatic-aberration fit.
fn weigh_aberration(a: &AberrationStats, ev: &mut Evidence) {
    if a.blocks.iter().any(|&b| b < CA_MIN_BLOCKS) || a.r_max < CA_MIN_RADIUS {
        return;
    }
    let t = a.significance();
    if t < CA_ABSENT_T {
        ev.add(
            W_NO_CA,
            Some(Flag::NoChromaticAberration),
            format!(
                "no lateral chromatic aberration: red and blue align with green across {} edge blocks \
                 (radial scaling {:.1}σ, at most {:.2} px at {:.0} px from the centre)",
                a.blocks[0].min(a.blocks[1]),
                t,
                a.bound_px(),
                a.r_max
            ),
        );
    } else if t >= CA_PRESENT_T {
        let weight = -(W_CA_PER_SIGMA * (t - CA_PRESENT_T + 1.0)).min(W_CA_MAX);
        ev.add(
            weight,
            None,
            format!(
                "lateral chromatic aberration of a lens: red/blue scaled against green about the centre \
                 ({:.1}σ, {:.2} px at {:.0} px from the centre)",
                t,
                a.shift_px(),
                a.r_max
            ),
        );
    }
}

/// Solve a 3×3 linear system by Cramer's rule; `None` when singular.
fn solve3(m: [[f64; 3]; 3], v: [f64; 3]) -> Option<[f64; 3]> {
    let det3 = |a: [[f64; 3]; 3]| {
        a[0][0] * (a[1][1] * a[2][2] - a[1][2] * a[2][1]) - a[0][1] * (a[1][0] * a[2][2] - a[1][2] * a[2][0])
            + a[0][2] * (a[1][0] * a[2][1] - a[1][1] * a[2][0])
    };
    let d = det3(m);
    let scale = m.iter().flatten().map(|x| x.abs()).fold(0.0, f64::max).powi(3);
    if d.abs() <= 1e-14 * scale || !d.is_finite() {
        return None;
    }
    let mut out = [0.0; 3];
    for (k, o) in out.iter_mut().enumerate() {
        let mut a = m;
        for r in 0..3 {
            a[r][k] = v[r];
        }
        *o = det3(a) / d;
    }
    Some(out)
}

/// Invert a 4×4 matrix by Gauss–Jordan elimination with partial pivoting; `None` when
/// singular.
fn invert4(m: [[f64; 4]; 4]) -> Option<[[f64; 4]; 4]> {
    let mut a = m;
    let mut inv = [[0.0; 4]; 4];
    for (i, row) in inv.iter_mut().enumerate() {
        row[i] = 1.0;
    }
    let scale = m.iter().flatten().map(|x| x.abs()).fold(0.0, f64::max);
    for col in 0..4 {
        let pivot = (col..4).max_by(|&x, &y| a[x][col].abs().total_cmp(&a[y][col].abs()))?;
        if a[pivot][col].abs() <= 1e-12 * scale || !a[pivot][col].is_finite() {
            return None;
        }
        a.swap(col, pivot);
        inv.swap(col, pivot);
        let p = a[col][col];
        for k in 0..4 {
            a[col][k] /= p;
            inv[col][k] /= p;
        }
        for r in 0..4 {
            if r != col {
                let f = a[r][col];
                for k in 0..4 {
                    a[r][k] -= f * a[col][k];
                    inv[r][k] -= f * inv[col][k];
                }
            }
        }
    }
    Some(inv)
}
