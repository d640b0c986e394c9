//! Two-dimensional power spectra of square residual crops (Hann-windowed, f32), with the FFT
//! plans cached per thread, and the read-outs the module needs: the power at a frequency with
//! the spectrum's symmetry applied, a local background, and the azimuthal average.

use std::cell::RefCell;

use realfft::RealFftPlanner;
use rustfft::num_complex::Complex;
use rustfft::FftPlanner;

thread_local! {
    /// FFT planners cache their plans, so each worker thread plans a size once.
    static PLANNERS: RefCell<(RealFftPlanner<f32>, FftPlanner<f32>)> =
        RefCell::new((RealFftPlanner::new(), FftPlanner::new()));
}

/// The power spectrum of an `n`×`n` real plane: `n/2 + 1` horizontal frequencies `u` by `n`
/// vertical frequencies `v`, stored `u`-major (`data[u * n + v]`).
#[derive(Debug, Clone)]
pub struct Power {
    /// Side of the transformed square.
    pub n: usize,
    /// `(n/2 + 1) * n` power values.
    pub data: Vec<f32>,
}

/// The periodic Hann window of length `n`: its DFT has only three non-zero terms, so a
/// component exactly on a bin leaks into the two neighbours and nowhere else.
pub fn hann(n: usize) -> Vec<f32> {
    (0..n).map(|i| 0.5 - 0.5 * (std::f32::consts::TAU * i as f32 / n as f32).cos()).collect()
}

impl Power {
    /// The power spectrum of `samples` (`n * n`, row-major), multiplied first by the separable
    /// window `window` (length `n`).
    pub fn of(samples: &[f32], n: usize, window: &[f32]) -> Power {
        debug_assert_eq!(samples.len(), n * n);
        debug_assert_eq!(window.len(), n);
        let half = n / 2 + 1;
        let mut columns = vec![Complex::new(0.0f32, 0.0); half * n];
        PLANNERS.with(|p| {
            let (real, complex) = &mut *p.borrow_mut();
            let rows = real.plan_fft_forward(n);
            let mut input = rows.make_input_vec();
            let mut output = rows.make_output_vec();
            let mut scratch = rows.make_scratch_vec();
            for y in 0..n {
                let wy = window[y];
                for ((dst, &s), &wx) in input.iter_mut().zip(&samples[y * n..(y + 1) * n]).zip(window) {
                    *dst = s * wx * wy;
                }
                rows.process_with_scratch(&mut input, &mut output, &mut scratch)
                    .expect("buffers come from the plan");
                for (u, c) in output.iter().enumerate() {
                    columns[u * n + y] = *c;
                }
            }
            complex.plan_fft_forward(n).process(&mut columns);
        });
        Power { n, data: columns.iter().map(|c| c.norm_sqr()).collect() }
    }

    /// Add another spectrum of the same size, scaled by `weight`.
    pub fn accumulate(&mut self, other: &Power, weight: f32) {
        for (a, b) in self.data.iter_mut().zip(&other.data) {
            *a += weight * b;
        }
    }

    /// The power at horizontal frequency `u` and vertical frequency `v`, any integers: the
    /// spectrum of a real plane is periodic in `n` and symmetric, P(u, v) = P(−u, −v).
    #[inline]
    pub fn at(&self, u: isize, v: isize) -> f32 {
        let n = self.n as isize;
        let (mut u, mut v) = (u.rem_euclid(n), v.rem_euclid(n));
        if u > n / 2 {
            u = n - u;
            v = (n - v) % n;
        }
        self.data[u as usize * self.n + v as usize]
    }

    /// The median power on the square ring of Chebyshev radius `inner..=outer` bins around
    /// (`u`, `v`): the local background a spectral peak stands out from.
    pub fn background(&self, u: isize, v: isize, inner: isize, outer: isize) -> f32 {
        let mut ring = Vec::with_capacity(((2 * outer + 1) * (2 * outer + 1)) as usize);
        for dv in -outer..=outer {
            for du in -outer..=outer {
                if du.abs().max(dv.abs()) >= inner {
                    ring.push(self.at(u + du, v + dv));
                }
            }
        }
        let mid = ring.len() / 2;
        *ring.select_nth_unstable_by(mid, f32::total_cmp).1
    }

    /// Total power excluding DC.
    pub fn total(&self) -> f64 {
        self.data.iter().skip(1).map(|&p| f64::from(p)).sum()
    }

    /// The azimuthal median power in rings one bin wide, index = radius in bins (0..=n/2):
    /// the median rather than the mean, so that isolated peaks do not lift a ring.
    pub fn azimuthal(&self) -> Vec<f32> {
        let n = self.n as isize;
        let rmax = self.n / 2;
        let mut rings: Vec<Vec<f32>> = vec![Vec::new(); rmax + 1];
        for u in 0..=n / 2 {
            for v in -n / 2..n / 2 {
                let r = ((u * u + v * v) as f32).sqrt().round() as usize;
                if r <= rmax {
                    rings[r].push(self.at(u, v));
                }
            }
        }
        rings
            .into_iter()
            .map(|mut ring| {
                if ring.is_empty() {
                    return 0.0;
                }
                let mid = ring.len() / 2;
                *ring.select_nth_unstable_by(mid, f32::total_cmp).1
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cosine_on_a_bin_peaks_there_and_its_mirror() {
        let n = 64;
        let samples: Vec<f32> = (0..n * n)
            .map(|i| {
                let (x, y) = ((i % n) as f32, (i / n) as f32);
                (std::f32::consts::TAU * (8.0 * x + 16.0 * y) / n as f32).cos()
            })
            .collect();
        let p = Power::of(&samples, n, &hann(n));
        let peak = p.at(8, 16);
        assert_eq!(peak, p.at(-8, -16));
        assert!(peak > 1e3 * p.at(20, 5).max(1e-9));
        assert!(peak > 100.0 * p.background(8, 16, 3, 5).max(1e-9));
    }
}
