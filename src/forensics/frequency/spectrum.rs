//! Two-dimensional power spectra of square residual crops (Hann-windowed, f32), with the FFT
//! plans cached per thread, and the read-outs the module needs: the power at a frequency with
//! the spectrum's symmetry applied, a local background, and the azimuthal average.

use std::cell::RefCell;
use std::rc::Rc;

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
        // row transforms into a row-major buffer, then a blocked transpose so that each
        // column is contiguous for the column transforms
        let mut rows_out = vec![Complex::new(0.0f32, 0.0); n * half];
        let mut columns = vec![Complex::new(0.0f32, 0.0); half * n];
        PLANNERS.with(|p| {
            let (real, complex) = &mut *p.borrow_mut();
            let rows = real.plan_fft_forward(n);
            let mut input = rows.make_input_vec();
            let mut scratch = rows.make_scratch_vec();
            for (y, out) in rows_out.chunks_exact_mut(half).enumerate() {
                let wy = window[y];
                for ((dst, &s), &wx) in input.iter_mut().zip(&samples[y * n..(y + 1) * n]).zip(window) {
                    *dst = s * wx * wy;
                }
                rows.process_with_scratch(&mut input, out, &mut scratch).expect("buffers come from the plan");
            }
            const B: usize = 16;
            for y0 in (0..n).step_by(B) {
                for u0 in (0..half).step_by(B) {
                    for y in y0..(y0 + B).min(n) {
                        for u in u0..(u0 + B).min(half) {
                            columns[u * n + y] = rows_out[y * half + u];
                        }
                    }
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
        let rings = Rings::of(self.n);
        let mut grouped: Vec<f32> = rings.order.iter().map(|&i| self.data[i as usize]).collect();
        rings
            .starts
            .windows(2)
            .map(|w| {
                let ring = &mut grouped[w[0]..w[1]];
                if ring.is_empty() {
                    return 0.0;
                }
                let mid = ring.len() / 2;
                *ring.select_nth_unstable_by(mid, f32::total_cmp).1
            })
            .collect()
    }
}

/// The stored bins of an `n`×`n` spectrum grouped by ring (radius rounded to whole bins, up
/// to n/2): `order[starts[r]..starts[r + 1]]` are the indices of ring `r`.
struct Rings {
    order: Vec<u32>,
    starts: Vec<usize>,
}

thread_local! {
    /// Ring groupings by size, computed once per thread.
    static RINGS: RefCell<Vec<(usize, Rc<Rings>)>> = const { RefCell::new(Vec::new()) };
}

impl Rings {
    fn of(n: usize) -> Rc<Rings> {
        RINGS.with(|cache| {
            let mut cache = cache.borrow_mut();
            if let Some((_, r)) = cache.iter().find(|(size, _)| *size == n) {
                return r.clone();
            }
            let rings = Rc::new(Rings::build(n));
            cache.push((n, rings.clone()));
            rings
        })
    }

    fn build(n: usize) -> Rings {
        let rmax = n / 2;
        let ring: Vec<usize> = (0..(n / 2 + 1) * n)
            .map(|i| {
                // u ≥ 0 covers the plane, since P(u, v) = P(−u, −v)
                let (u, v) = ((i / n) as f32, (i % n) as f32);
                let v = if v < (n / 2) as f32 { v } else { v - n as f32 };
                (u * u + v * v).sqrt().round() as usize
            })
            .collect();
        let mut starts = vec![0usize; rmax + 2];
        for &r in ring.iter().filter(|&&r| r <= rmax) {
            starts[r + 1] += 1;
        }
        for r in 0..=rmax {
            starts[r + 1] += starts[r];
        }
        let mut fill = starts.clone();
        let mut order = vec![0u32; starts[rmax + 1]];
        for (i, &r) in ring.iter().enumerate() {
            if r <= rmax {
                order[fill[r]] = i as u32;
                fill[r] += 1;
            }
        }
        Rings { order, starts }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn azimuthal_profile_of_white_noise_is_flat() {
        let n = 128;
        let mut seed = 3u32;
        let samples: Vec<f32> = (0..n * n)
            .map(|_| {
                seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (seed >> 16) as f32 / 65536.0 - 0.5
            })
            .collect();
        let p = Power::of(&samples, n, &vec![1.0; n]);
        let az = p.azimuthal();
        assert_eq!(az.len(), n / 2 + 1);
        let mid: f32 = az[10..60].iter().sum::<f32>() / 50.0;
        assert!(az[10..60].iter().all(|&a| a > 0.5 * mid && a < 1.5 * mid), "{az:?}");
    }

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
