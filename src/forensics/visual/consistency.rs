//! Consistency of block statistics across the window: each statistic is regressed on the
//! block's texture and brightness (robustly, so a tampered area does not set the norm), the
//! residuals are smoothed over 3×3 blocks (a spliced area is coherent, sampling noise is not),
//! and each block's distance from the image's own typical level is a robust Mahalanobis
//! distance over the statistics.

use super::blocks::{BlockGrid, BlockStats};

/// Blocks with more clipped pixels than this share carry no noise or error level.
pub const MAX_CLIPPED: f32 = 0.25;

/// One statistic regressed on texture and brightness.
#[derive(Debug, Clone, PartialEq)]
pub struct Regression {
    /// Robust z-score of each block's residual; NaN for blocks left out (clipped).
    pub z: Vec<f32>,
    /// Robust scale (1.4826 × MAD) of the residuals, in the statistic's units.
    pub scale: f32,
}

/// Robust z-scores of one statistic after regression on texture and brightness; NaN for
/// blocks left out (clipped).
pub fn regress_z(grid: &BlockGrid, value: impl Fn(&BlockStats) -> f32) -> Vec<f32> {
    regress(grid, value).z
}

/// Regress one statistic on `[1, ln texture, brightness, brightness²]` (texture beyond
/// noise, so that noise does not explain noise away) with Huber weights (IRLS).
pub fn regress(grid: &BlockGrid, value: impl Fn(&BlockStats) -> f32) -> Regression {
    let valid: Vec<usize> = (0..grid.stats.len()).filter(|&i| grid.stats[i].clipped <= MAX_CLIPPED).collect();
    let mut z = vec![f32::NAN; grid.stats.len()];
    if valid.len() < 8 {
        return Regression { z, scale: f32::NAN };
    }
    let row = |s: &BlockStats| {
        let t = (s.texture + 0.1).ln() as f64;
        let l = s.mean as f64 / 255.0;
        [1.0, t, l, l * l]
    };
    let xs: Vec<[f64; 4]> = valid.iter().map(|&i| row(&grid.stats[i])).collect();
    let ys: Vec<f64> = valid.iter().map(|&i| value(&grid.stats[i]) as f64).collect();
    let mut beta = [0f64; 4];
    beta[0] = median(&ys);
    let mut residuals: Vec<f64> = ys.iter().map(|y| y - beta[0]).collect();
    let mut scale = mad(&mut residuals).max(1e-3);
    for _ in 0..IRLS_ITERATIONS {
        // Huber weights from the current fit
        let mut a = [[0f64; 4]; 4];
        let mut b = [0f64; 4];
        for (x, &y) in xs.iter().zip(&ys) {
            let r = (y - dot(&beta, x)) / scale;
            let w = if r.abs() <= 1.5 { 1.0 } else { 1.5 / r.abs() };
            for i in 0..4 {
                b[i] += w * x[i] * y;
                for j in 0..4 {
                    a[i][j] += w * x[i] * x[j];
                }
            }
        }
        for (i, row) in a.iter_mut().enumerate() {
            row[i] += 1e-6 * (1.0 + row[i]);
        }
        if let Some(next) = solve4(a, b) {
            beta = next;
        }
        for (r, (x, y)) in residuals.iter_mut().zip(xs.iter().zip(&ys)) {
            *r = y - dot(&beta, x);
        }
        scale = mad(&mut residuals.clone()).max(1e-3);
    }
    for (n, &i) in valid.iter().enumerate() {
        z[i] = ((ys[n] - dot(&beta, &xs[n])) / scale) as f32;
    }
    Regression { z, scale: scale as f32 }
}

/// Mean over the 3×3 neighbourhood of finite values (NaN stays NaN).
pub fn smooth3(values: &[f32], cols: usize, rows: usize) -> Vec<f32> {
    let mut out = vec![f32::NAN; values.len()];
    for y in 0..rows {
        for x in 0..cols {
            if !values[y * cols + x].is_finite() {
                continue;
            }
            let (mut s, mut n) = (0f32, 0f32);
            for yy in y.saturating_sub(1)..(y + 2).min(rows) {
                for xx in x.saturating_sub(1)..(x + 2).min(cols) {
                    let v = values[yy * cols + xx];
                    if v.is_finite() {
                        s += v;
                        n += 1.0;
                    }
                }
            }
            out[y * cols + x] = s / n;
        }
    }
    out
}

/// Robust Mahalanobis distance of each block's vector of (smoothed) z-scores from zero, with a
/// Huber-weighted scatter matrix; NaN where any component is NaN.
pub fn mahalanobis(components: &[Vec<f32>]) -> Vec<f32> {
    let f = components.len();
    let n = components.first().map_or(0, Vec::len);
    let rows: Vec<usize> = (0..n).filter(|&i| components.iter().all(|c| c[i].is_finite())).collect();
    let mut out = vec![f32::NAN; n];
    if rows.len() < 2 * f + 2 {
        return out;
    }
    let vec_of = |i: usize| components.iter().map(|c| c[i] as f64).collect::<Vec<_>>();
    let vs: Vec<Vec<f64>> = rows.iter().map(|&i| vec_of(i)).collect();
    let mut weights = vec![1f64; vs.len()];
    let mut inv = vec![vec![0f64; f]; f];
    let cutoff = f as f64 + 2.0 * (2.0 * f as f64).sqrt();
    for _ in 0..5 {
        let mut cov = vec![vec![0f64; f]; f];
        let wsum: f64 = weights.iter().sum();
        for (v, &w) in vs.iter().zip(&weights) {
            for i in 0..f {
                for j in 0..f {
                    cov[i][j] += w * v[i] * v[j];
                }
            }
        }
        for (i, row) in cov.iter_mut().enumerate() {
            for x in row.iter_mut() {
                *x /= wsum;
            }
            row[i] += 1e-3;
        }
        inv = match invert(cov) {
            Some(m) => m,
            None => return out,
        };
        for (v, w) in vs.iter().zip(weights.iter_mut()) {
            let d2 = quad(&inv, v);
            *w = if d2 <= cutoff { 1.0 } else { cutoff / d2 };
        }
    }
    for (&i, v) in rows.iter().zip(&vs) {
        out[i] = quad(&inv, v).sqrt() as f32;
    }
    out
}

fn quad(m: &[Vec<f64>], v: &[f64]) -> f64 {
    let mut s = 0.0;
    for i in 0..v.len() {
        for j in 0..v.len() {
            s += v[i] * m[i][j] * v[j];
        }
    }
    s
}

/// Reweighting rounds of the robust regression.
const IRLS_ITERATIONS: usize = 5;

fn dot(a: &[f64; 4], b: &[f64; 4]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Median of a slice (NaN-free); 0 when empty.
pub fn median(v: &[f64]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let mut s = v.to_vec();
    let mid = s.len() / 2;
    *s.select_nth_unstable_by(mid, f64::total_cmp).1
}

/// 1.4826 × the median absolute value (the residuals are centred by the fit); reorders `v`.
fn mad(v: &mut [f64]) -> f64 {
    for x in v.iter_mut() {
        *x = x.abs();
    }
    if v.is_empty() {
        return 0.0;
    }
    let mid = v.len() / 2;
    1.4826 * *v.select_nth_unstable_by(mid, f64::total_cmp).1
}

fn solve4(mut a: [[f64; 4]; 4], mut b: [f64; 4]) -> Option<[f64; 4]> {
    for c in 0..4 {
        let p = (c..4).max_by(|&i, &j| a[i][c].abs().total_cmp(&a[j][c].abs()))?;
        if a[p][c].abs() < 1e-12 {
            return None;
        }
        a.swap(c, p);
        b.swap(c, p);
        for r in c + 1..4 {
            let k = a[r][c] / a[c][c];
            let (pivot_rows, rest) = a.split_at_mut(r);
            for (dst, src) in rest[0][c..].iter_mut().zip(&pivot_rows[c][c..]) {
                *dst -= k * src;
            }
            b[r] -= k * b[c];
        }
    }
    let mut x = [0f64; 4];
    for c in (0..4).rev() {
        let s: f64 = (c + 1..4).map(|j| a[c][j] * x[j]).sum();
        x[c] = (b[c] - s) / a[c][c];
    }
    Some(x)
}

fn invert(mut a: Vec<Vec<f64>>) -> Option<Vec<Vec<f64>>> {
    let n = a.len();
    let mut inv: Vec<Vec<f64>> =
        (0..n).map(|i| (0..n).map(|j| f64::from(u8::from(i == j))).collect()).collect();
    for c in 0..n {
        let p = (c..n).max_by(|&i, &j| a[i][c].abs().total_cmp(&a[j][c].abs()))?;
        if a[p][c].abs() < 1e-12 {
            return None;
        }
        a.swap(c, p);
        inv.swap(c, p);
        let d = a[c][c];
        for j in 0..n {
            a[c][j] /= d;
            inv[c][j] /= d;
        }
        for r in 0..n {
            if r != c {
                let k = a[r][c];
                if k != 0.0 {
                    for j in 0..n {
                        a[r][j] -= k * a[c][j];
                        inv[r][j] -= k * inv[c][j];
                    }
                }
            }
        }
    }
    Some(inv)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forensics::visual::blocks::Cells;

    fn grid(stats: Vec<BlockStats>, cols: usize) -> BlockGrid {
        let rows = stats.len() / cols;
        BlockGrid { block: 32, cols, rows, stats, cells: Cells { cols: 0, rows: 0, stats: vec![] } }
    }

    #[test]
    fn regression_removes_the_texture_trend_and_exposes_the_outlier() {
        // value = 2 ln(texture) + small jitter; block 37 is 3 units off
        let stats: Vec<BlockStats> = (0..100)
            .map(|i| {
                let texture = 1.0 + (i % 10) as f32;
                let jitter = ((i * 7919) % 13) as f32 / 13.0 - 0.5;
                let noise = 2.0 * (texture + 0.1).ln() + 0.1 * jitter + if i == 37 { 3.0 } else { 0.0 };
                BlockStats { mean: 100.0 + (i / 10) as f32, texture, noise, ..Default::default() }
            })
            .collect();
        let g = grid(stats, 10);
        let r = regress(&g, |s| s.noise);
        assert!(r.scale < 0.1, "{}", r.scale);
        assert!(r.z[37] > 20.0, "{}", r.z[37]);
        let others =
            r.z.iter().enumerate().filter(|&(i, _)| i != 37).map(|(_, z)| z.abs()).fold(0f32, f32::max);
        assert!(others < 3.0, "{others}");
    }

    #[test]
    fn clipped_blocks_are_left_out() {
        let mut stats = vec![BlockStats { texture: 1.0, noise: 1.0, ..Default::default() }; 20];
        stats[3].clipped = 0.9;
        let r = regress(&grid(stats, 5), |s| s.noise);
        assert!(r.z[3].is_nan() && r.z[4].is_finite());
    }

    #[test]
    fn smoothing_averages_finite_neighbours() {
        let v = vec![1.0, 2.0, 3.0, f32::NAN];
        let s = smooth3(&v, 2, 2);
        assert_eq!(s[0], 2.0);
        assert!(s[3].is_nan());
    }

    #[test]
    fn mahalanobis_singles_out_a_joint_outlier() {
        // two correlated components; one point breaks the correlation
        let n = 200;
        let a: Vec<f32> = (0..n).map(|i| ((i * 37) % 101) as f32 / 50.0 - 1.0).collect();
        let mut b: Vec<f32> = a.iter().enumerate().map(|(i, x)| x + 0.05 * (i as f32 * 1.7).sin()).collect();
        b[17] = -a[17] + 1.5;
        let d = mahalanobis(&[a, b]);
        let top = (0..n).max_by(|&i, &j| d[i].total_cmp(&d[j])).unwrap();
        assert_eq!(top, 17);
    }
}
