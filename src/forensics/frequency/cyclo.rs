//! Periodic correlation of the luminance along each axis: how much better a pixel is predicted
//! from its neighbours when the predictor may depend on the pixel's phase modulo 2, 4 or 8.
//!
//! An up-sampled image is a linear function of fewer samples, so its pixels obey exact linear
//! relations that repeat with the up-sampling period: after nearest-neighbour ×2, pixel 2i+1
//! equals pixel 2i; after bilinear ×2 with half-pixel centres (the `image` crate, PyTorch
//! `align_corners=False`), `3·y[2i+1] − 3·y[2i] + y[2i−1] − y[2i+2] = 0`. A predictor fitted per
//! phase captures these relations and a single predictor cannot, so the ratio of their
//! prediction errors measures the periodic correlation. This is the time-domain form of the
//! cyclic spectrum: the gain at period p is the energy of the spectral correlation at
//! cyclic frequencies N/p (N/2, N/4, N/8 and their harmonics).
//!
//! The model predicts `y[n]` from `y[n±1]` and `y[n±2]` with weights that sum to one (so the
//! prediction keeps the local mean): target `y[n] − (y[n−1] + y[n+1])/2` against the three
//! zero-sum directions `y[n+1] − y[n−1]`, `y[n+2] − y[n−2]` and
//! `y[n+2] + y[n−2] − y[n+1] − y[n−1]`. Its normal equations are accumulated per phase
//! (n mod 8) and per tile, so pooling phases gives periods 1, 2, 4 and 8 and pooling tiles
//! gives the whole window.

use crate::forensics::views::Plane;

/// Normal equations of the 3-parameter predictor: `[ff00, ff01, ff02, ff11, ff12, ff22,
/// ft0, ft1, ft2, tt]`.
type Normal = [f64; 10];

/// Accumulated normal equations per phase (0..8) for one axis.
type Phases = [Normal; 8];

/// The prediction gains of one region.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Gains {
    /// ln(error of one predictor / error with a predictor per phase mod 2), x then y.
    pub period2: [f64; 2],
    /// The same with a predictor per phase mod 4.
    pub period4: [f64; 2],
    /// The same with a predictor per phase mod 8 (the JPEG block period).
    pub period8: [f64; 2],
    /// Prediction error per sample of the single predictor (luminance levels²), x and y.
    pub error: [f64; 2],
}

impl Gains {
    /// The period-2 gain averaged over both axes.
    pub fn period2_mean(&self) -> f64 {
        0.5 * (self.period2[0] + self.period2[1])
    }

    /// The period-4 gain of one axis beyond what period 2 and the JPEG 8×8 grid explain:
    /// `(g4 − g2) − (g8 − g4)`. A block grid splits its gain between period 4 and period 8
    /// in about the ratio 0.8 : 1 (0.76-0.84 median, 1.4 at most, measured on JPEGs of quality
    /// 55-98), so the excess stays under 0.05 for JPEG alone, while up-sampling by 4 puts its
    /// gain at period 4 and none at period 8.
    pub fn period4_excess(&self, axis: usize) -> f64 {
        (self.period4[axis] - self.period2[axis]) - (self.period8[axis] - self.period4[axis])
    }

    /// [`Gains::period4_excess`] averaged over both axes.
    pub fn period4_excess_mean(&self) -> f64 {
        0.5 * (self.period4_excess(0) + self.period4_excess(1))
    }
}

/// Per-tile accumulations over a luminance plane.
#[derive(Debug, Clone)]
pub struct TileGains {
    /// Tile side in pixels (the last tile of a row or column also takes the remainder).
    pub tile: usize,
    /// Tiles per row.
    pub cols: usize,
    /// Tiles per column.
    pub rows: usize,
    /// Gains of each tile, row-major.
    pub tiles: Vec<Gains>,
    /// Gains of the whole plane.
    pub total: Gains,
}

/// Largest gain reported: ln(10⁴). Exact relations (lossless nearest-neighbour up-sampling)
/// would otherwise be infinite.
pub const MAX_GAIN: f64 = 9.21;

/// Samples per axis above which rows (horizontal model) and 16-pixel column blocks (vertical
/// model) are subsampled, down to 1 in 8. A quarter of a million samples already pins the
/// whole-window gains a hundred times below the camera photos' median (the chance gain of
/// the extra parameters is about 3 / samples), and a 128-px tile keeps 2 000 or more.
const TARGET_SAMPLES: usize = 1 << 18;

/// Features of eight consecutive pixels: the target and the three zero-sum directions.
type Chunk = [[f32; 8]; 4];

/// Measure the periodic prediction gains of `luma` over tiles of `tile` pixels (a multiple
/// of 16).
pub fn measure(luma: &Plane, tile: usize) -> TileGains {
    assert!(tile >= 16 && tile % 16 == 0, "tile side must be a multiple of 16");
    let (w, h) = (luma.width, luma.height);
    let cols = (w / tile).max(1);
    let rows = (h / tile).max(1);
    let stride = (w * h).div_ceil(TARGET_SAMPLES).clamp(1, 8);
    // [tile][axis][phase] normal equations
    let mut acc: Vec<[Phases; 2]> = vec![[[[0.0; 10]; 8]; 2]; cols * rows];
    if w >= 5 && h >= 5 {
        // f32 partial sums per tile column: horizontal by lane (= x mod 8), vertical by
        // phase (y mod 8) and lane
        let mut horizontal = vec![[[0f32; 8]; 10]; cols];
        let mut vertical = vec![[[[0f32; 8]; 10]; 8]; cols];
        for y in 2..h - 2 {
            let row = |r: usize| &luma.data[r * w..(r + 1) * w];
            let (c, u1, d1, u2, d2) = (row(y), row(y - 1), row(y + 1), row(y - 2), row(y + 2));
            // horizontal model: every `stride`-th row; vertical model: every row, but only
            // every `stride`-th block of 16 columns (a cache line), so that in both models
            // each phase of a tile spans 16 lines of the tile
            if y % stride == 0 {
                for x0 in (0..w).step_by(8) {
                    add_products(&mut horizontal[(x0 / tile).min(cols - 1)], &horizontal_chunk(c, x0));
                }
            }
            for block in (0..w).step_by(16 * stride) {
                for x0 in [block, block + 8].into_iter().filter(|&x| x < w) {
                    let chunk = vertical_chunk([u2, u1, c, d1, d2], x0);
                    add_products(&mut vertical[(x0 / tile).min(cols - 1)][y % 8], &chunk);
                }
            }
            // a tile row's f32 sums (at most 2 × 128 rows of 16 chunks a lane) go to f64 at its end
            let tr = (y / tile).min(rows - 1);
            if y == h - 3 || ((y + 1) / tile).min(rows - 1) != tr {
                for tc in 0..cols {
                    let dst = &mut acc[tr * cols + tc];
                    for (k, lanes) in horizontal[tc].iter().enumerate() {
                        for (lane, &v) in lanes.iter().enumerate() {
                            dst[0][lane][k] += f64::from(v);
                        }
                    }
                    for (phase, sums) in vertical[tc].iter().enumerate() {
                        for (k, lanes) in sums.iter().enumerate() {
                            dst[1][phase][k] += lanes.iter().map(|&v| f64::from(v)).sum::<f64>();
                        }
                    }
                    horizontal[tc] = [[0.0; 8]; 10];
                    vertical[tc] = [[[0.0; 8]; 10]; 8];
                }
            }
        }
    }
    let mut total: [Phases; 2] = [[[0.0; 10]; 8]; 2];
    for t in &acc {
        for axis in 0..2 {
            for ph in 0..8 {
                for k in 0..10 {
                    total[axis][ph][k] += t[axis][ph][k];
                }
            }
        }
    }
    TileGains { tile, cols, rows, tiles: acc.iter().map(gains).collect(), total: gains(&total) }
}

/// The features of `y[n] − (y[n−1] + y[n+1])/2` against `y[n+1] − y[n−1]`, `y[n+2] − y[n−2]`
/// and `y[n+2] + y[n−2] − y[n+1] − y[n−1]`, given the five samples n−2..=n+2.
#[inline(always)]
fn features(m2: f32, m1: f32, c: f32, p1: f32, p2: f32) -> [f32; 4] {
    [c - 0.5 * (m1 + p1), p1 - m1, p2 - m2, p2 + m2 - p1 - m1]
}

/// Horizontal features of pixels `x0..x0 + 8` of a row; zero where the neighbourhood leaves
/// the row.
#[inline]
fn horizontal_chunk(row: &[f32], x0: usize) -> Chunk {
    let mut out = [[0f32; 8]; 4];
    if x0 >= 2 && x0 + 10 <= row.len() {
        let s = &row[x0 - 2..x0 + 10];
        for i in 0..8 {
            let f = features(s[i], s[i + 1], s[i + 2], s[i + 3], s[i + 4]);
            for (column, v) in out.iter_mut().zip(f) {
                column[i] = v;
            }
        }
    } else {
        for i in 0..8 {
            let x = x0 + i;
            if x >= 2 && x + 2 < row.len() {
                let f = features(row[x - 2], row[x - 1], row[x], row[x + 1], row[x + 2]);
                for (column, v) in out.iter_mut().zip(f) {
                    column[i] = v;
                }
            }
        }
    }
    out
}

/// Vertical features of pixels `x0..x0 + 8` from rows y−2..=y+2; zero past the row's end.
#[inline]
fn vertical_chunk(rows: [&[f32]; 5], x0: usize) -> Chunk {
    let mut out = [[0f32; 8]; 4];
    let n = (rows[2].len() - x0).min(8);
    let [a, b, c, d, e] = rows.map(|r| &r[x0..x0 + n]);
    for i in 0..n {
        let f = features(a[i], b[i], c[i], d[i], e[i]);
        for k in 0..4 {
            out[k][i] = f[k];
        }
    }
    out
}

/// Add the ten products of a chunk's features into lanes.
#[inline(always)]
fn add_products(lanes: &mut [[f32; 8]; 10], chunk: &Chunk) {
    let [t, a, b, c] = chunk;
    for i in 0..8 {
        lanes[0][i] += a[i] * a[i];
        lanes[1][i] += a[i] * b[i];
        lanes[2][i] += a[i] * c[i];
        lanes[3][i] += b[i] * b[i];
        lanes[4][i] += b[i] * c[i];
        lanes[5][i] += c[i] * c[i];
        lanes[6][i] += a[i] * t[i];
        lanes[7][i] += b[i] * t[i];
        lanes[8][i] += c[i] * t[i];
        lanes[9][i] += t[i] * t[i];
    }
}

/// Least-squares prediction error of pooled normal equations.
fn residual(s: &Normal) -> f64 {
    let m = [[s[0], s[1], s[2]], [s[1], s[3], s[4]], [s[2], s[4], s[5]]];
    let b = [s[6], s[7], s[8]];
    // a tiny ridge keeps flat regions (all-zero features) solvable
    let ridge = 1e-9 * (s[0] + s[3] + s[5]) + 1e-12;
    let mut a = m;
    for (i, row) in a.iter_mut().enumerate() {
        row[i] += ridge;
    }
    let det = |m: &[[f64; 3]; 3]| {
        m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1]) - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
            + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0])
    };
    let d = det(&a);
    if !d.is_finite() || d.abs() < 1e-300 {
        return s[9].max(0.0);
    }
    let mut explained = 0.0;
    for i in 0..3 {
        let mut ai = a;
        for r in 0..3 {
            ai[r][i] = b[r];
        }
        explained += det(&ai) / d * b[i];
    }
    (s[9] - explained).max(0.0)
}

/// Prediction error with one predictor per phase class of `period`.
fn pooled_error(phases: &Phases, period: usize) -> f64 {
    (0..period)
        .map(|class| {
            let mut s = [0.0; 10];
            for ph in (class..8).step_by(period) {
                for (a, b) in s.iter_mut().zip(&phases[ph]) {
                    *a += b;
                }
            }
            residual(&s)
        })
        .sum()
}

fn gains(axes: &[Phases; 2]) -> Gains {
    let mut g = Gains::default();
    for (axis, phases) in axes.iter().enumerate() {
        let samples: f64 = phases.iter().map(|n| n[9]).sum::<f64>();
        let e1 = pooled_error(phases, 1);
        if samples <= 0.0 || e1 <= 0.0 {
            g.period2[axis] = f64::NAN;
            g.period4[axis] = f64::NAN;
            g.period8[axis] = f64::NAN;
            continue;
        }
        let floor = e1 * (-MAX_GAIN).exp();
        g.period2[axis] = (e1 / pooled_error(phases, 2).max(floor)).ln();
        g.period4[axis] = (e1 / pooled_error(phases, 4).max(floor)).ln();
        g.period8[axis] = (e1 / pooled_error(phases, 8).max(floor)).ln();
        g.error[axis] = e1;
    }
    g
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noise(w: usize, h: usize, seed: u32) -> Plane {
        let mut s = seed;
        let data = (0..w * h)
            .map(|_| {
                s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                100.0 + (s >> 24) as f32 / 4.0
            })
            .collect();
        Plane { width: w, height: h, data }
    }

    #[test]
    fn white_noise_has_no_periodic_gain_and_nearest_upsampling_has_a_large_one() {
        let p = noise(256, 256, 1);
        let g = measure(&p, 128).total;
        assert!(g.period2_mean() < 0.01, "{g:?}");
        let small = noise(128, 128, 2);
        let up = Plane {
            width: 256,
            height: 256,
            data: (0..256 * 256).map(|i| small.at((i % 256) / 2, (i / 256) / 2)).collect(),
        };
        let t = measure(&up, 128);
        assert!(t.total.period2[0] > 5.0 && t.total.period2[1] > 5.0, "{:?}", t.total);
        assert_eq!((t.cols, t.rows, t.tiles.len()), (2, 2, 4));
        assert!(t.tiles.iter().all(|g| g.period2_mean() > 3.0));
    }

    #[test]
    fn flat_planes_give_no_gain() {
        let flat = Plane { width: 64, height: 64, data: vec![7.0; 64 * 64] };
        let g = measure(&flat, 64).total;
        assert!(g.period2[0].is_nan() && g.period2[1].is_nan());
    }
}
