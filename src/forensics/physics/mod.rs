//! Physics: traces the camera pipeline leaves and a generator has no reason to reproduce.
//!
//! # What is measured, and why
//!
//! 1. **Demosaicing (CFA)** ([`cfa`]). A Bayer sensor measures one colour per photosite and
//!    interpolates the other two. Per channel and per position of the 2×2 lattice, a linear
//!    predictor from the pixel's neighbours (horizontal pair, vertical pair, diagonals; weights
//!    fitted by least squares, summing to one) leaves a near-zero error where the channel was
//!    interpolated and the natural error where it was measured. Which lattice sites carry the
//!    large error, across the three channels, is the phase (RGGB, GRBG, GBRG, BGGR). Read on up
//!    to four 512-px crops at native resolution (the window and crops sit on even coordinates,
//!    so the phase is the full frame's). Two traces are accepted: the *full* pattern (all
//!    three channels consistent with one phase, most crops agreeing) and the *green lattice*
//!    alone (green's quincunx contrast ≥ 0.2 nepers, both sites of each diagonal alike, most
//!    crops agreeing in sign). JPEG's 4:2:0 chroma subsampling averages the red and blue
//!    lattices away but keeps luminance, mostly green, at full resolution: camera JPEGs show
//!    only the green lattice, and then the phase is known only up to a pair (RGGB/BGGR or
//!    GRBG/GBRG). The symmetry test keeps 2× up-sampling (one interpolation-free site in
//!    four) from passing for a mosaic. When a trace is found, the map ([`cfa::heatmap`]) is
//!    the per-64-px-block green contrast inverted: a block without the frame's lattice is
//!    suspicious (a pasted or regenerated region); flat blocks have no opinion.
//! 2. **Noise-level function** ([`noise`]). A sensor's noise is Poisson–Gaussian,
//!    `var = a·I + b` with `a > 0`. The median residual's variance is taken in 8×8 blocks,
//!    binned by intensity (16 levels), and each bin's 20th percentile (the flattest blocks) is
//!    fitted with a line. Findings: *noise-free* flat regions (mean lower-envelope variance
//!    below 0.15 grey levels²: a flat curve at the quantisation floor, which no sensor
//!    produces) and *constant-variance* noise (relative rise and fall under 30 % across the
//!    range) are `noise_model_mismatch`; a rising, linear curve (rise ≥ 50 %, R² ≥ 0.7) fits the
//!    sensor model; measurable noise of another shape is weak camera evidence. A falling or
//!    non-monotonic curve is deliberately **not** a mismatch: in sRGB camera JPEGs the tone
//!    curve flattens or reverses shot noise (a gamma of 1/2.2 is nearly variance-stabilising)
//!    and texture leaks into the lower envelope, so on the corpus such curves are *more*
//!    common among real photos (46/66 normalised) than AI images (31/122): flagging them would
//!    have flagged 70 % of the real photos.
//! 3. **Lateral chromatic aberration** ([`aberration`]). A lens scales red and blue slightly
//!    against green about the optical centre (assumed the centre of the full frame). In up to
//!    160 strongly edged 64-px blocks, `R ≈ g·G + o + g·d·∇G` gives the sub-pixel displacement
//!    `d` of red (blue) with its covariance; a weighted fit of `d = −α·r + t` over the blocks
//!    gives the radial scaling `α` and its standard error (inflated by excess scatter).
//!    Absent (`no_chromatic_aberration`) when `|α|/σ < 2` for both channels with ≥ 12 blocks
//!    each and a radius of ≥ 100 px; present when ≥ 3σ.
//!
//! # When it abstains
//!
//! Short side under [`MIN_SIDE`] (128 px); JPEG quality (from the quantisation tables) at or
//! below [`MIN_JPEG_QUALITY`] (60); or a resampling peak ([`resampling`]: the spectrum of a
//! p-map of the second difference, CFA and JPEG-grid frequencies excluded) of at least
//! [`resampling::RESAMPLED_PEAK`] (40× the spectrum's median; the corpus's largest is 26, a
//! 1.5× lossless up-scale gives 55-62). Limits, stated plainly: a JPEG re-encode after
//! up-scaling hides the peak, and down-scaling leaves none at all, so a down-scaled camera
//! photo is judged, reads as "no demosaicing traces", and that is why `no_cfa_traces` is
//! weak. The views carry no EXIF, so a window that does not match the camera's native frame
//! cannot be recognised from metadata here. HEIC, AVIF and WebP have no quality estimate and
//! are judged.
//!
//! # Weights
//!
//! Each finding adds log-odds ([`Evidence`]); the score is their logistic. The weights are
//! the corpus likelihood ratios `ln P(finding | AI) / P(finding | real)` (+0.5 smoothing),
//! measured on `shared/corpus` (122 AI or partial, 66 real after `--normalize`; 123/75 raw;
//! 122/66 normalised then `jpeg:75,resize:0.5`), then shrunk towards 0: the corpus is small,
//! its real photos are mostly 2000s compacts (strong aberration, no in-camera correction),
//! and the findings are not independent.
//!
//! | finding | corpus ln LR (norm / raw / perturbed) | weight |
//! |---|---|---|
//! | full Bayer pattern (`cfa_present`) | never seen in corpus JPEGs | −2.5 |
//! | green lattice (`cfa_present`) | −3.8 / −3.9 / – (12/66 real, 0 AI) | −2.0 |
//! | no trace (`no_cfa_traces`) | +0.20 / +0.22 / 0.00 | 0 (a note) |
//! | noise-free flat regions (`noise_model_mismatch`) | +1.11 / +0.61 / +1.48 | 0 (a note) |
//! | constant-variance noise (`noise_model_mismatch`) | too rare to measure | 0 (a note) |
//! | noise fits `a·I + b` | too rare to measure | −0.7 |
//! | measurable noise, other shape | −1.00 / −0.24 / −0.43 | −0.4 |
//! | aberration absent (`no_chromatic_aberration`) | +1.29 / +2.54 / +1.08 | 0 (a note) |
//! | aberration 3-5σ / ≥ 5σ | −1.9 / 0.0 / −1.4 and −3.2 / −2.6 / −3.4 | −0.5 per σ above 2, at most −2.0 |
//!
//! The two "too rare" weights come from the sensor model itself and the synthetic tests.
//!
//! **Only presence argues (issue 11).** Those corpus ratios compared camera originals with
//! renders. On photos from sources the weights never saw (`../shared/corpus-ext`), after the
//! web chain of `tellscan eval --web` (resize, re-compress), the absences are as common on
//! real photos as on generated ones, or more: `no_cfa_traces` 93 % of real vs 77 % of
//! generated, `noise_model_mismatch` 40 % vs 32 %, `no_chromatic_aberration` 29 % vs 14 %.
//! They are what processing leaves, so they stay as flags with no weight, and a photo with
//! no camera trace left makes the module abstain. A trace that is present (demosaicing,
//! sensor noise, aberration) still argues for a capture.
//!
//! # Measured
//!
//! `tellscan eval` on the corpus: module ROC AUC 0.890 with `--normalize` (no abstentions),
//! 0.746 with `--normalize --perturb jpeg:75,resize:0.5`, 0.881 on the raw files (0.5 %
//! abstained: one q60 camera JPEG), 0.905 on the raw files with that perturbation. Flags on
//! real photos (normalised / raw): `no_cfa_traces` 82 % / 80 %, `noise_model_mismatch`
//! 24 % / 25 %, `no_chromatic_aberration` 17 % / 4 %; `cfa_present` on AI images 0 %. Time
//! (`elapsed_ms`, release, one thread): 7 ms median on the 512-px normalised images; 20-30 ms
//! for a full 4 MP window (about 10 ms of it the CFA fit), against 30-55 ms to decode a 4 MP
//! JPEG on the same machine.

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
/// Log-odds of no demosaicing trace: none. Resizing and recompression erase the trace from
/// every web photo, so its absence is a note, not evidence (issue 11: on web-processed real
/// photos of unseen sources 93 % show no trace, against 77 % of generated images).
const W_NO_CFA: f64 = 0.0;

/// Lower-envelope residual variance (grey levels²) below which flat regions count as
/// noise-free.
const QUIET_VARIANCE: f64 = 0.15;
/// Log-odds of noise-free flat regions: none. Compression quantises flat regions to the same
/// floor (web-processed real photos of unseen sources: 40 % flagged, generated images 32 %).
const W_QUIET: f64 = 0.0;
/// |rise| (and fall) below which the noise-level function counts as flat.
const FLAT_RISE: f64 = 0.3;
/// Log-odds of measurable constant-variance noise: none (down-scaling averages shot noise
/// flat, so it is what resized photos show too).
const W_FLAT: f64 = 0.0;
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
/// Log-odds of absent aberration: none. Lens correction, cropping and down-scaling remove it
/// (web-processed real photos of unseen sources: 29 % flagged, generated images 14 %).
const W_NO_CA: f64 = 0.0;
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
        Some(reason) => {
            let mut report = super::report::ModuleReport::abstain(reason);
            if m.resampling_peak >= resampling::RESAMPLED_PEAK {
                report.flags.push(super::report::Flag::Resampled);
            }
            report
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_solvers_invert() {
        let m = [[4.0, 1.0, 0.5], [1.0, 3.0, 0.2], [0.5, 0.2, 2.0]];
        let x = solve3(m, [1.0, 2.0, 3.0]).unwrap();
        for (row, want) in m.iter().zip([1.0, 2.0, 3.0]) {
            let v: f64 = row.iter().zip(&x).map(|(a, b)| a * b).sum();
            assert!((v - want).abs() < 1e-12);
        }
        assert!(solve3([[1.0, 2.0, 3.0], [2.0, 4.0, 6.0], [0.0, 1.0, 1.0]], [1.0; 3]).is_none());
        let a = [[5.0, 1.0, 0.0, 2.0], [1.0, 4.0, 1.0, 0.0], [0.0, 1.0, 3.0, 1.0], [2.0, 0.0, 1.0, 6.0]];
        let inv = invert4(a).unwrap();
        for (r, row) in a.iter().enumerate() {
            for c in 0..4 {
                let v: f64 = row.iter().zip(&inv).map(|(x, inv_row)| x * inv_row[c]).sum();
                assert!((v - f64::from(u8::from(r == c))).abs() < 1e-12);
            }
        }
    }

    #[test]
    fn every_phase_is_a_bayer_tile() {
        for phase in BayerPhase::ALL {
            let tile = [(0, 0), (1, 0), (0, 1), (1, 1)].map(|(x, y)| phase.colour_at(x + 8, y + 6));
            let count = |c: usize| tile.iter().filter(|&&t| t == c).count();
            assert_eq!((count(0), count(1), count(2)), (1, 2, 1), "{phase}");
            // green on one diagonal, red and blue on the other
            assert_eq!(tile[0] == 1, tile[3] == 1, "{phase}");
            let first = match phase.name().as_bytes()[0] {
                b'R' => 0,
                b'G' => 1,
                _ => 2,
            };
            assert_eq!(phase.colour_at(0, 0), first, "{phase}");
        }
    }
}
