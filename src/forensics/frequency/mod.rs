//! Frequency module: periodic traces of up-sampling and the shape of the noise residual's
//! power spectrum.
//!
//! # What is measured
//!
//! 1. **Periodic correlation (up-sampling).** An image up-sampled by 2 (nearest, bilinear,
//!    bicubic, or a network's up-sampling layer) is a linear function of a quarter as many
//!    samples, so its pixels obey linear relations that repeat every 2 pixels. For each axis
//!    [`cyclo`] fits a 4-neighbour linear predictor of the luminance once for all pixels and
//!    once per pixel phase modulo 2, 4 and 8, and reports the log ratio of the prediction
//!    errors, the *period-p gain*. It is the time-domain reading of the cyclic spectrum: a gain
//!    at period 2 is spectral correlation at cyclic frequency N/2, period 4 at N/4 and N/2,
//!    period 8 at every multiple of N/8. The whole analysis window is read, tile by tile
//!    (128 px, 64 px under 512 px), with rows subsampled down to about 2^18 samples per axis.
//!
//!    *The JPEG 8×8 grid is modelled, not ignored.* Block boundaries every 8 pixels raise the
//!    period-8 gain and split part of it into period 4, but barely reach period 2, whose two
//!    phase classes each hold one pixel of every mirror pair (a, 7−a) of the block. Measured
//!    on the 76 camera photos (JPEG quality 60-98): period-2 gain median 0.002, 90th percentile
//!    0.06, while their period-8 gain reaches 0.19 (90th percentile) and 0.9. At period 4 the
//!    grid puts (g4 − g2) ≈ 0.8 · (g8 − g4) (median ratio 0.76-0.84, at most 1.4, over JPEGs of
//!    quality 55-98, cameras' and re-encoded renders'), so the period-4 *excess*
//!    (g4 − g2) − (g8 − g4) stays below 0.05 on every JPEG we measured, while ×4 up-sampling
//!    puts 0.06-0.19 there (10th-90th percentile, bilinear ×4 then JPEG q90).
//!
//!    *What was tried first, and why it is not used.* Peak-to-background ratios of the
//!    Hann-windowed residual power spectrum at the lattice points (k·N/8, l·N/8) (33 points,
//!    in period 2, 4 and 8 classes, against the median of a ring 3-6 bins around each) did
//!    not separate ×2 up-sampled photos from their originals (AUC 0.1-0.5: camera JPEGs have
//!    lattice peaks of their own, and up-sampling leaves a spectral *notch* at N/2, not a
//!    peak); the spectrum of |first difference| at N/2 did better (AUC 0.84-0.92) with camera
//!    photos in its tail (demosaicing). The period-2 gain separates them with AUC 0.99-1.00
//!    for nearest and bilinear ×2, as PNG and as JPEG q90.
//!
//! 2. **Spectral shape of the noise residual.** The residual (luminance − 3×3 median) of up to
//!    [`MAX_CROPS`] crops of [`CROP`]² px at native resolution (smaller power-of-two crops for
//!    smaller images) is Hann-windowed and transformed (realfft rows, rustfft columns, f32,
//!    plans cached per thread); the power spectra, each normalised to unit power, are averaged
//!    and reduced to an azimuthal profile (median power in rings one bin wide). From the
//!    profile, in bands of 1/32 cycle per pixel:
//!    - `decay` = ln(power at 0.375-0.5 / power at 0.125-0.31 cycles/px): how much the spectrum
//!      falls toward Nyquist. Camera optics, demosaicing and in-camera denoising soften the
//!      last octave; generators' decoders render crisp pixel-level detail.
//!    - `low` = ln(power at 0.003-0.031 / the same mid band): residual energy at the lowest
//!      frequencies. Sensor noise is spread evenly and its residual is nearly white; a
//!      rendered image has noiseless areas and its residual sits on structures.
//!
//! # How it is scored (log-odds, [`Evidence`])
//!
//! - Up-sampling: `2.0 · max(ramp(ln g2; ln 0.08 → ln 0.4), ramp(e4; 0.03 → 0.12))`, g2 the
//!   period-2 gain and e4 the period-4 excess, both averaged over the axes. `periodic_peaks` is
//!   raised at g2 ≥ 0.15 or e4 ≥ 0.06, `grid_artifact` (weightless, the same evidence) when
//!   both axes pass. Flagged: ×2 nearest 100% (PNG and JPEG q90), ×2 bilinear 96% (PNG) and
//!   89% (q90), ×2 Catmull-Rom 89% (q90), ×4 bilinear 96% (q90), of 45 camera photos of
//!   ≥ 1024 px (centre 1024 crop, down-scaled ×0.5 with a triangle filter, up-scaled back).
//!   Also flagged: 4 of the 76 camera photos as they come (5%: two trail cameras, a
//!   camcorder still, a 2001 compact, devices that interpolate their output), none of 95 AI
//!   renders re-encoded at JPEG q70 and 1 at q55. No AI image of the corpus shows up-sampling
//!   (they are rendered at their native size; g2 at most 0.03), so **this weight is not
//!   fitted on the corpus**: the ground truth above gives a likelihood ratio above 15 for
//!   "up-sampled" at the flag, and the weight is capped at 2 nats because resampled camera
//!   photos exist. Up-sampling by 1.5 (period 3) is not detected, and a generator's ×8 grid
//!   cannot be told from JPEG's.
//! - Spectral shape: `0.7 · (decay + 0.65)` and `0.85 · (low − 1.45)`, each clamped to ±1.5.
//!   The slopes are a class-balanced logistic regression on the corpus (raw files and the
//!   normalised centre crops pooled, 199 + 188 images; leave-one-source-out AUC 0.74 raw, 0.70
//!   normalised), the centres the midpoints of the class medians. `spectral_decay_anomaly` is
//!   raised at decay > 0.2 or low > 2.6, the camera photos' 95th percentiles (it flags 5-6% of
//!   them and 25-27% of the AI images).
//!
//! The heatmap is the up-sampling evidence per tile (see [`heatmap`]).
//!
//! # When it abstains
//!
//! Shorter side under [`MIN_SIDE`] (128 px): the statistics have too few samples. JPEG
//! quality ≤ [`MIN_JPEG_QUALITY`]: quantisation then replaces the fine structure both
//! statistics read, and they describe the encoder. An image with almost no fine detail
//! (mean |residual| under 0.05 levels).
//!
//! # Cost
//!
//! One subsampled pass over the window for the gains (f32 lanes of 8 pixels, f64 per tile)
//! beside up to four 512² FFTs (`rayon::join`). Release build, best of 7 on a loaded 2-core
//! machine: 2048×1932 window 14 ms (gains 7, one FFT 0.7, profile 0.4), 1024² 9 ms.

pub mod cyclo;
pub mod spectrum;

use super::evidence::Evidence;
use super::report::{Flag, ModuleReport};
use super::views::{Heatmap, PixelFinding, Views, MIN_SIDE};
use cyclo::{Gains, TileGains};
use spectrum::{hann, Power};

/// Largest crop side transformed.
pub const CROP: usize = 512;
/// Most crops whose spectra are averaged.
pub const MAX_CROPS: usize = 4;
/// At or below this JPEG quality the module abstains.
pub const MIN_JPEG_QUALITY: u8 = 50;

/// Weight in log-odds of a clear period-2 up-sampling correlation.
const W_RESAMPLE: f64 = 2.0;
/// Period-2 gain where the up-sampling evidence starts and where it is full.
const RESAMPLE_RAMP: (f64, f64) = (0.08, 0.4);
/// Period-2 gain at which `periodic_peaks` (and, on both axes, `grid_artifact`) is raised.
const RESAMPLE_FLAG: f64 = 0.15;
/// Period-4 excess over the JPEG grid where the evidence starts and where it is full.
const PERIOD4_RAMP: (f64, f64) = (0.03, 0.12);
/// Period-4 excess at which `periodic_peaks` is raised.
const PERIOD4_FLAG: f64 = 0.06;
/// Slope and centre of the high-frequency decay finding.
const DECAY: (f64, f64) = (0.7, -0.65);
/// Slope and centre of the low-frequency residual finding.
const LOW: (f64, f64) = (0.85, 1.45);
/// Clamp of each spectral-shape finding.
const SHAPE_CAP: f64 = 1.5;
/// Camera photos' 95th percentiles of `decay` and `low`, where the anomaly flag is raised.
const SHAPE_FLAG: (f64, f64) = (0.2, 2.6);
/// Mean |residual| below which the image has no fine structure to read.
const MIN_RESIDUAL: f64 = 0.05;

/// What the module measured on one image.
#[derive(Debug, Clone)]
pub struct Measurements {
    /// Side of the square crops transformed.
    pub crop_side: usize,
    /// Number of crops averaged.
    pub crops: usize,
    /// Azimuthal median power of the averaged, normalised residual spectrum, index = radius
    /// in bins (0..=`crop_side`/2).
    pub azimuthal: Vec<f32>,
    /// ln(high-band / mid-band power) of the residual spectrum.
    pub decay: f64,
    /// ln(lowest-band / mid-band power) of the residual spectrum.
    pub low: f64,
    /// Periodic prediction gains, whole window and per tile.
    pub gains: TileGains,
    /// Mean absolute residual in the window (luminance levels).
    pub residual_level: f64,
}

/// Why the module cannot read this image, as a sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Abstention(pub String);

/// Measure the image, or say why its frequency traces cannot be read.
pub fn measure(views: &Views) -> Result<Measurements, Abstention> {
    let short = views.width.min(views.height);
    if short < MIN_SIDE {
        return Err(Abstention(format!(
            "abstained: the image is {}×{} px; periodic and spectral statistics need at least {MIN_SIDE} px \
             on the shorter side",
            views.width, views.height
        )));
    }
    if let Some(q) = views.jpeg_quality.filter(|&q| q <= MIN_JPEG_QUALITY) {
        return Err(Abstention(format!(
            "abstained: JPEG quality is about {q} (≤ {MIN_JPEG_QUALITY}); compression this strong replaces the \
             fine periodic and high-frequency structure this module reads"
        )));
    }
    // every sixteenth row is plenty for a mean
    let (sum, count) =
        views.residual.data.chunks(views.width).step_by(16).fold((0.0, 0usize), |(s, c), row| {
            (s + row.iter().map(|v| f64::from(v.abs())).sum::<f64>(), c + row.len())
        });
    let residual_level = sum / count.max(1) as f64;
    if residual_level < MIN_RESIDUAL {
        return Err(Abstention(format!(
            "abstained: the image has almost no fine detail (mean residual {residual_level:.3} levels), so its \
             spectrum carries no trace to read"
        )));
    }
    let crop_side = (1usize << short.ilog2()).min(CROP);
    let tile = if short >= 512 { 128 } else { 64 };
    let (spectrum, gains) =
        rayon::join(|| averaged_spectrum(views, crop_side), || cyclo::measure(&views.luma, tile));
    let (power, crops) = spectrum;
    let azimuthal = power.azimuthal();
    let band = |b0: usize, b1: usize| {
        // mean of the per-band means over bands b0..=b1 of 1/32 cycle per pixel, in logs
        let n = crop_side;
        let mean = |b: usize| {
            let (i, j) = ((b * n / 32).max(1), (b + 1) * n / 32);
            azimuthal[i..j].iter().map(|&p| f64::from(p)).sum::<f64>() / (j - i) as f64
        };
        (b0..=b1).map(|b| mean(b).max(1e-30).ln()).sum::<f64>() / (b1 - b0 + 1) as f64
    };
    let mid = band(4, 9);
    Ok(Measurements {
        crop_side,
        crops,
        decay: band(12, 15) - mid,
        low: band(0, 0) - mid,
        azimuthal,
        gains,
        residual_level,
    })
}

/// The mean of the crops' residual power spectra, each normalised to unit total power.
fn averaged_spectrum(views: &Views, side: usize) -> (Power, usize) {
    let crops = views.crops(side, MAX_CROPS);
    let window = hann(side);
    let mut sum = Power { n: side, data: vec![0.0; (side / 2 + 1) * side] };
    for c in &crops {
        let plane = views.residual.crop(c.x, c.y, side, side);
        let mean = plane.data.iter().sum::<f32>() / plane.data.len() as f32;
        let centred: Vec<f32> = plane.data.iter().map(|v| v - mean).collect();
        let p = Power::of(&centred, side, &window);
        let total = p.total();
        if total > 0.0 {
            sum.accumulate(&p, (1.0 / total) as f32);
        }
    }
    (sum, crops.len())
}

/// Run the frequency module.
pub fn analyse(views: &Views) -> PixelFinding {
    let m = match measure(views) {
        Ok(m) => m,
        Err(Abstention(reason)) => {
            return PixelFinding { report: ModuleReport::abstain(reason), heatmap: None }
        }
    };
    PixelFinding { report: score(&m), heatmap: Some(heatmap(&m.gains)) }
}

/// `0` at or below `lo`, `1` at or above `hi`, linear in between.
fn ramp(x: f64, lo: f64, hi: f64) -> f64 {
    ((x - lo) / (hi - lo)).clamp(0.0, 1.0)
}

/// Turn the measurements into weighted findings.
pub fn score(m: &Measurements) -> ModuleReport {
    let mut ev = Evidence::default();
    let g = &m.gains.total;
    resampling(&mut ev, g);
    // one-directional: a camera-like fall-off argues for a capture, but a flat spectrum is also
    // what down-scaling with a sharp filter leaves on a photo (issue 11: flagged on 10 % of
    // web-processed real photos of unseen sources, 8 % of generated images)
    let decay = (DECAY.0 * (m.decay - DECAY.1)).clamp(-SHAPE_CAP, 0.0);
    let (flag, text) = if m.decay > SHAPE_FLAG.0 {
        (
            Some(Flag::SpectralDecayAnomaly),
            "stays flat up to Nyquist, flatter than in 95% of camera photos, as generators' crisp pixel-level \
             rendering does",
        )
    } else if decay > 0.0 {
        (None, "falls off less than camera photos' usually do")
    } else {
        (None, "falls off toward Nyquist as camera optics and demosaicing make it")
    };
    ev.add(
        decay,
        flag,
        format!(
            "The noise residual's power spectrum {text} (high/mid band log ratio {:.2}; camera median -0.75).",
            m.decay
        ),
    );
    let low = (LOW.0 * (m.low - LOW.1)).clamp(-SHAPE_CAP, 0.0);
    let (flag, text) = if m.low > SHAPE_FLAG.1 {
        (
            Some(Flag::SpectralDecayAnomaly),
            "is concentrated at the lowest frequencies, more than in 95% of camera photos: fine detail sits on \
             structures, with noiseless areas between, as in rendered images",
        )
    } else if low > 0.0 {
        (None, "leans toward low frequencies more than sensor noise usually does")
    } else {
        (None, "is spread evenly over frequencies, like sensor noise")
    };
    ev.add(
        low,
        flag,
        format!("The noise residual {text} (low/mid band log ratio {:.2}; camera median 1.0).", m.low),
    );
    ev.into_report("no frequency evidence either way")
}

/// 0-1 strength of the up-sampling evidence in gains `g`: the larger of the period-2 ramp
/// and the period-4-beyond-JPEG ramp; NaN when the region is flat.
fn resampling_strength(g: &Gains) -> f64 {
    let g2 = g.period2_mean();
    let e4 = g.period4_excess_mean();
    if !g2.is_finite() || !e4.is_finite() {
        return f64::NAN;
    }
    ramp(g2.max(1e-9).ln(), RESAMPLE_RAMP.0.ln(), RESAMPLE_RAMP.1.ln()).max(ramp(
        e4,
        PERIOD4_RAMP.0,
        PERIOD4_RAMP.1,
    ))
}

/// The up-sampling finding from the period-2 and period-4 gains.
fn resampling(ev: &mut Evidence, g: &Gains) {
    let strength = resampling_strength(g);
    if !strength.is_finite() {
        return;
    }
    let weight = W_RESAMPLE * strength;
    let axis_flagged =
        |axis: usize| g.period2[axis] >= RESAMPLE_FLAG || g.period4_excess(axis) >= PERIOD4_FLAG;
    let period =
        if g.period2_mean() >= RESAMPLE_FLAG || g.period4_excess_mean() < PERIOD4_FLAG { 2 } else { 4 };
    let axes = match (axis_flagged(0), axis_flagged(1)) {
        (true, true) => "along both axes",
        (true, false) => "along x",
        (false, true) => "along y",
        (false, false) => "weakly",
    };
    let numbers = format!(
        "prediction gain x / y at period 2: {:.2} / {:.2}, at period 4 beyond the JPEG grid: {:.2} / {:.2}, \
         at period 8: {:.2} / {:.2}; camera photos: 90% below 0.05 at period 2, all below 0.05 at period 4",
        g.period2[0],
        g.period2[1],
        g.period4_excess(0),
        g.period4_excess(1),
        g.period8[0],
        g.period8[1]
    );
    if g.period2_mean() >= RESAMPLE_FLAG || g.period4_excess_mean() >= PERIOD4_FLAG {
        let sentence = format!(
            "Pixels depend on their neighbours with a period of {period} {axes} (cyclic spectral peaks at \
             N/{period}, beyond what the JPEG 8×8 grid explains): the image was up-sampled, as generators' \
             up-sampling layers and upscalers do ({numbers})."
        );
        ev.add(weight, Some(Flag::PeriodicPeaks), sentence);
        if axis_flagged(0) && axis_flagged(1) {
            // the same evidence, so the second flag carries no weight of its own
            ev.add(0.0, Some(Flag::GridArtifact), "The periodic structure forms a two-dimensional grid.");
        }
    } else if weight > 0.0 {
        ev.add(
            weight,
            None,
            format!("A faint periodic correlation between pixels, more than camera photos usually show ({numbers})."),
        );
    } else {
        ev.add(0.0, None, format!("No up-sampling periodicity ({numbers})."));
    }
}

/// Per-tile suspicion from the tile's local periodicity: its period-2 gain on a log scale, 0 at
/// 0.02 (ten times the camera median) and 1 at 0.4 (clearly up-sampled), or its period-4
/// excess over the JPEG grid on the scale of the score, whichever is larger; NaN where a tile
/// is flat. A tile holds 16 lines per phase, where one strong edge can fake a phase effect
/// along one axis, so each statistic is the smaller of its two axes (up-sampling acts on both).
pub fn heatmap(t: &TileGains) -> Heatmap {
    let values = t
        .tiles
        .iter()
        .map(|g| {
            let g2 = g.period2[0].min(g.period2[1]);
            let e4 = g.period4_excess(0).min(g.period4_excess(1));
            if g2.is_finite() && e4.is_finite() {
                let graded = ramp(g2.max(1e-9).ln(), 0.02f64.ln(), RESAMPLE_RAMP.1.ln());
                graded.max(ramp(e4, PERIOD4_RAMP.0, PERIOD4_RAMP.1)) as f32
            } else {
                f32::NAN
            }
        })
        .collect();
    Heatmap { block: t.tile, cols: t.cols, rows: t.rows, values }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ramp_is_clamped_and_linear() {
        assert_eq!(ramp(-1.0, 0.0, 2.0), 0.0);
        assert_eq!(ramp(1.0, 0.0, 2.0), 0.5);
        assert_eq!(ramp(5.0, 0.0, 2.0), 1.0);
    }

    fn measurements(g2: f64, decay: f64, low: f64) -> Measurements {
        let gains = Gains { period2: [g2, g2], period4: [g2, g2], period8: [g2, g2], error: [1.0, 1.0] };
        Measurements {
            crop_side: 512,
            crops: 1,
            azimuthal: vec![],
            decay,
            low,
            gains: TileGains { tile: 128, cols: 1, rows: 1, tiles: vec![gains], total: gains },
            residual_level: 1.0,
        }
    }

    #[test]
    fn scoring_follows_the_documented_weights() {
        let plain = score(&measurements(0.001, DECAY.1, LOW.1));
        assert!(plain.abstained, "all-neutral findings abstain: {plain:?}");
        let up = score(&measurements(0.5, DECAY.1, LOW.1));
        assert!((up.score - crate::forensics::evidence::sigmoid(W_RESAMPLE)).abs() < 1e-9);
        assert_eq!(up.flags, vec![Flag::GridArtifact, Flag::PeriodicPeaks]);
        // a flat spectrum is flagged for the analyst but weighs nothing: down-scaled photos show it
        let flat = score(&measurements(0.001, 1.0, 3.0));
        assert_eq!(flat.flags, vec![Flag::SpectralDecayAnomaly]);
        assert!(flat.abstained, "{flat:?}");
        let camera = score(&measurements(0.001, -1.2, 0.2));
        assert!(camera.flags.is_empty() && camera.score < 0.2);
        let map = heatmap(&measurements(0.5, 0.0, 0.0).gains);
        assert_eq!(map.values, vec![1.0]);
    }
}
