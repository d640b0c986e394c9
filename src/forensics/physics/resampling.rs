//! Resampling periodicity: interpolating an image onto a new grid makes the strength of its
//! second derivative periodic (Gallagher 2005; Kirchner 2008). The mean absolute second
//! difference along each column (row) is a 1-D profile whose spectrum shows a peak at the
//! resampling frequency. Peaks at period 2 (demosaicing) and on multiples of 1/8 (the JPEG
//! grid) are not counted, nor low frequencies (image content).

use crate::forensics::views::{Crop, Plane};

/// Peak ratio from which the image counts as resampled.
pub const RESAMPLED_PEAK: f64 = 40.0;

/// The strongest spectral peak of the second-derivative profiles over the crops, as a
/// ratio to the median of the spectrum (averaged over crops and both directions).
pub fn peak(luma: &Plane, crops: &[Crop]) -> f64 {
    let mut best: f64 = 0.0;
    for horizontal in [true, false] {
        let mut acc: Vec<f64> = Vec::new();
        for c in crops {
            let profile = profile(luma, c, horizontal);
            let spec = magnitude(&profile);
            if acc.is_empty() {
                acc = spec;
            } else {
                for (a, s) in acc.iter_mut().zip(spec) {
                    *a += s;
                }
            }
        }
        best = best.max(peak_ratio(&acc));
    }
    best
}

/// A "p-map" after Kirchner: how well the pixel is predicted by its neighbours (1 = exactly,
/// falling off over [`PMAP_SIGMA`]), which brings out the interpolated positions whatever the
/// content's contrast. A Cauchy kernel rather than Kirchner's Gaussian: no `exp` per pixel.
#[inline]
fn pmap(d2: f32) -> f32 {
    1.0 / (1.0 + d2 * d2 * (1.0 / (PMAP_SIGMA * PMAP_SIGMA)))
}

/// Scale of the p-map, grey levels of second difference.
const PMAP_SIGMA: f32 = 2.0;

fn profile(luma: &Plane, c: &Crop, horizontal: bool) -> Vec<f64> {
    let w = luma.width;
    let mut out = vec![0f64; c.side];
    let mut acc = vec![0f32; c.side];
    for y in c.y + 1..c.y + c.side - 1 {
        let row = |dy: isize| {
            let start = (y as isize + dy) as usize * w + c.x;
            &luma.data[start..start + c.side]
        };
        let (up, mid, down) = (row(-1), row(0), row(1));
        if horizontal {
            // profile over x: accumulate |2·L(x) − L(x−1) − L(x+1)| column by column
            for x in 1..c.side - 1 {
                acc[x] += pmap(2.0 * mid[x] - mid[x - 1] - mid[x + 1]);
            }
        } else {
            let s: f32 = (1..c.side - 1).map(|x| pmap(2.0 * mid[x] - up[x] - down[x])).sum();
            out[y - c.y] = f64::from(s);
        }
    }
    if horizontal {
        for (o, a) in out.iter_mut().zip(&acc) {
            *o = f64::from(*a);
        }
    }
    let n = out.len();
    if n > 2 {
        out[0] = out[1];
        out[n - 1] = out[n - 2];
    }
    let mean = out.iter().sum::<f64>() / n as f64;
    // a Hann window keeps the strong low-frequency content from leaking over the band
    out.iter()
        .enumerate()
        .map(|(i, v)| (v - mean) * (1.0 - (2.0 * std::f64::consts::PI * i as f64 / n as f64).cos()) / 2.0)
        .collect()
}

/// |DFT| at frequencies k = 0..=n/2.
fn magnitude(x: &[f64]) -> Vec<f64> {
    let mut planner = realfft::RealFftPlanner::<f64>::new();
    let fft = planner.plan_fft_forward(x.len());
    let mut input = x.to_vec();
    let mut output = fft.make_output_vec();
    if fft.process(&mut input, &mut output).is_err() {
        return vec![0.0; x.len() / 2 + 1];
    }
    output.iter().map(|c| c.norm()).collect()
}

fn peak_ratio(spec: &[f64]) -> f64 {
    if spec.len() < 16 {
        return 0.0;
    }
    let n = (spec.len() - 1) * 2;
    let excluded = |k: usize| {
        let near = |f: usize| k.abs_diff(f) <= 1;
        k < n / 16 || near(n / 2) || (1..=4).any(|m| near(m * n / 8))
    };
    let mut band: Vec<f64> = (0..spec.len()).filter(|&k| !excluded(k)).map(|k| spec[k]).collect();
    if band.is_empty() {
        return 0.0;
    }
    let top = band.iter().copied().fold(0.0, f64::max);
    band.sort_by(f64::total_cmp);
    let median = band[band.len() / 2];
    if median <= 0.0 {
        return 0.0;
    }
    top / median
}
