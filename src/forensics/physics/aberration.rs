//! Lateral chromatic aberration: a lens bends red and blue by slightly different amounts
//! than green, so the red and blue images are scaled copies of the green one about the
//! optical centre (assumed to be the centre of the full frame). In blocks with strong edges,
//! the sub-pixel displacement of red (blue) against green is estimated by least squares
//! (`R ≈ g·G + o + g·d·∇G`), and a radial model `d = −α·r + t` is fitted over the blocks,
//! each weighted by the inverse covariance of its displacement.

use crate::forensics::views::Views;

/// Block side.
const BLOCK: usize = 64;
/// Blocks analysed at most (the strongest edges).
const MAX_BLOCKS: usize = 160;
/// Mean squared green gradient (grey levels² per pixel) a block needs to count as "edged".
const MIN_EDGE_ENERGY: f64 = 40.0;
/// Blocks whose channel fit explains less than this share of the variance are skipped
/// (a colour edge rather than a displaced grey edge).
const MIN_FIT_R2: f64 = 0.8;
/// Mean |R − G| + |B − G| (grey levels) below which the picture counts as monochrome.
const MIN_CHROMA: f64 = 1.0;
/// Displacements beyond this (pixels) are not lateral chromatic aberration.
const MAX_SHIFT: f64 = 3.0;

/// What the chromatic-aberration analysis measured.
#[derive(Debug, Clone, PartialEq)]
pub struct AberrationStats {
    /// Radial magnification of red and of blue against green (dimensionless; a shift of
    /// `α·r` pixels at radius `r`).
    pub alpha: [f64; 2],
    /// Standard errors of `alpha`, inflated by the fit's excess scatter.
    pub sigma: [f64; 2],
    /// Blocks used for red and for blue.
    pub blocks: [usize; 2],
    /// Largest radius of a used block from the optical centre, pixels.
    pub r_max: f64,
    /// Edged blocks found in the window.
    pub edged_blocks: usize,
}

impl AberrationStats {
    /// Significance `|α|/σ` of the stronger channel.
    pub fn significance(&self) -> f64 {
        (0..2).map(|c| self.alpha[c].abs() / self.sigma[c].max(1e-12)).fold(0.0, f64::max)
    }

    /// The larger channel's displacement at the largest radius, pixels.
    pub fn shift_px(&self) -> f64 {
        self.alpha[0].abs().max(self.alpha[1].abs()) * self.r_max
    }

    /// An upper bound (estimate + 2σ) on the displacement at the largest radius, pixels:
    /// how much aberration could hide in the noise of this measurement.
    pub fn bound_px(&self) -> f64 {
        (0..2).map(|c| (self.alpha[c].abs() + 2.0 * self.sigma[c]) * self.r_max).fold(0.0, f64::max)
    }
}

/// One block's displacement estimate.
struct Shift {
    r: [f64; 2],
    d: [f64; 2],
    /// Inverse covariance of `d`.
    info: [[f64; 2]; 2],
}

/// Measure lateral chromatic aberration; `None` for a monochrome picture or when no edged
/// block fits.
pub fn measure(views: &Views) -> Option<AberrationStats> {
    let (w, h) = (views.width, views.height);
    let (cols, rows) = (w / BLOCK, h / BLOCK);
    if cols == 0 || rows == 0 {
        return None;
    }
    let raw = views.image.as_raw();
    let px = |x: usize, y: usize, c: usize| f32::from(raw[(y * w + x) * 3 + c]);
    let green = |x: usize, y: usize| px(x, y, 1);
    // edge energy per block, sampled on a 4-px grid (it only ranks the blocks); and how far
    // the colours are from grey: a monochrome picture has no aberration to show
    let mut energy: Vec<(usize, usize, f64)> = Vec::with_capacity(cols * rows);
    let (mut chroma, mut samples) = (0f64, 0f64);
    for by in 0..rows {
        for bx in 0..cols {
            let (mut e, mut n, mut c) = (0f32, 0f32, 0f32);
            for y in (by * BLOCK + 2..(by + 1) * BLOCK - 1).step_by(4) {
                for x in (bx * BLOCK + 2..(bx + 1) * BLOCK - 1).step_by(4) {
                    let gx = green(x + 1, y) - green(x - 1, y);
                    let gy = green(x, y + 1) - green(x, y - 1);
                    e += gx * gx + gy * gy;
                    c += (px(x, y, 0) - green(x, y)).abs() + (px(x, y, 2) - green(x, y)).abs();
                    n += 1.0;
                }
            }
            chroma += f64::from(c);
            samples += f64::from(n);
            let e = f64::from(e / n.max(1.0)) / 4.0;
            if e >= MIN_EDGE_ENERGY {
                energy.push((bx, by, e));
            }
        }
    }
    if chroma < MIN_CHROMA * samples {
        return None;
    }
    let edged_blocks = energy.len();
    energy.sort_by(|a, b| b.2.total_cmp(&a.2));
    energy.truncate(MAX_BLOCKS);
    let centre = (views.full_size.0 as f64 / 2.0, views.full_size.1 as f64 / 2.0);
    let mut shifts: [Vec<Shift>; 2] = [Vec::new(), Vec::new()];
    for &(bx, by, _) in &energy {
        let r = [
            (views.origin.0 + bx * BLOCK) as f64 + BLOCK as f64 / 2.0 - centre.0,
            (views.origin.1 + by * BLOCK) as f64 + BLOCK as f64 / 2.0 - centre.1,
        ];
        let sums = block_sums(raw, w, bx * BLOCK, by * BLOCK);
        for (k, list) in shifts.iter_mut().enumerate() {
            if let Some((d, info)) = block_shift(&sums, k) {
                list.push(Shift { r, d, info });
            }
        }
    }
    if shifts.iter().all(Vec::is_empty) {
        return None;
    }
    let mut alpha = [0.0; 2];
    let mut sigma = [f64::INFINITY; 2];
    let mut r_max: f64 = 0.0;
    for k in 0..2 {
        if let Some((a, s)) = radial_fit(&shifts[k]) {
            alpha[k] = a;
            sigma[k] = s;
        }
        for s in &shifts[k] {
            r_max = r_max.max(s.r[0].hypot(s.r[1]));
        }
    }
    Some(AberrationStats { alpha, sigma, blocks: [shifts[0].len(), shifts[1].len()], r_max, edged_blocks })
}

/// Independent f32 accumulators the compiler can keep in vector registers.
const LANES: usize = 8;
/// Padded row length of a block's interior (62 pixels).
const ROW: usize = 64;

/// The sums one block's two regressions need, over its interior pixels where no channel is
/// clipped, with grey levels centred on 128. Features `[1, G, Gx, Gy]`, targets `[R, B]`:
/// 0 n; 1-3 ΣG, ΣGx, ΣGy; 4-9 ΣGG, ΣGGx, ΣGGy, ΣGxGx, ΣGxGy, ΣGyGy; 10-13 ΣR, ΣGR, ΣGxR,
/// ΣGyR; 14-17 the same for B; 18 ΣR², 19 ΣB².
fn block_sums(raw: &[u8], w: usize, x0: usize, y0: usize) -> [f64; 20] {
    let px = |x: usize, y: usize, c: usize| f32::from(raw[(y * w + x) * 3 + c]) - 128.0;
    let mut acc = [[0f32; LANES]; 20];
    let mut f = [[0f32; ROW]; 6];
    for y in y0 + 1..y0 + BLOCK - 1 {
        for (k, x) in (x0 + 1..x0 + BLOCK - 1).enumerate() {
            let (g, r, b) = (px(x, y, 1), px(x, y, 0), px(x, y, 2));
            let m = if g < 124.0 && r < 124.0 && b < 124.0 { 1.0 } else { 0.0 };
            f[0][k] = m;
            f[1][k] = m * g;
            f[2][k] = m * (px(x + 1, y, 1) - px(x - 1, y, 1)) * 0.5;
            f[3][k] = m * (px(x, y + 1, 1) - px(x, y - 1, 1)) * 0.5;
            f[4][k] = m * r;
            f[5][k] = m * b;
        }
        for chunk in 0..ROW / LANES {
            for l in 0..LANES {
                let i = chunk * LANES + l;
                let (m, g, gx, gy, r, b) = (f[0][i], f[1][i], f[2][i], f[3][i], f[4][i], f[5][i]);
                let v = [
                    m,
                    g,
                    gx,
                    gy,
                    g * g,
                    g * gx,
                    g * gy,
                    gx * gx,
                    gx * gy,
                    gy * gy,
                    r,
                    g * r,
                    gx * r,
                    gy * r,
                    b,
                    g * b,
                    gx * b,
                    gy * b,
                    r * r,
                    b * b,
                ];
                for (a, x) in acc.iter_mut().zip(v) {
                    a[l] += x;
                }
            }
        }
    }
    acc.map(|a| a.iter().map(|&v| f64::from(v)).sum())
}

/// Least squares `other ≈ g·G + o + u·Gx + v·Gy` over one block (`k` = 0 red, 1 blue); the
/// displacement is `(u, v)/g`, returned with its inverse covariance. `None` for a poor or
/// mostly clipped fit.
fn block_shift(s: &[f64; 20], k: usize) -> Option<([f64; 2], [[f64; 2]; 2])> {
    let n = s[0];
    if n < ((BLOCK - 2) * (BLOCK - 2) / 2) as f64 {
        return None;
    }
    // features in order [G, 1, Gx, Gy]
    let xtx =
        [[s[4], s[1], s[5], s[6]], [s[1], n, s[2], s[3]], [s[5], s[2], s[7], s[8]], [s[6], s[3], s[8], s[9]]];
    let t = 10 + 4 * k;
    let xty = [s[t + 1], s[t], s[t + 2], s[t + 3]];
    let (yy, sy) = (s[18 + k], s[t]);
    let inv = super::invert4(xtx)?;
    let coef: [f64; 4] = std::array::from_fn(|a| (0..4).map(|b| inv[a][b] * xty[b]).sum());
    let sse = (yy - (0..4).map(|a| coef[a] * xty[a]).sum::<f64>()).max(0.0);
    let sst = yy - sy * sy / n;
    if sst <= 0.0 || 1.0 - sse / sst < MIN_FIT_R2 {
        return None;
    }
    let gain = coef[0];
    if gain < 0.2 {
        return None;
    }
    let d = [coef[2] / gain, coef[3] / gain];
    if d[0].abs() > MAX_SHIFT || d[1].abs() > MAX_SHIFT {
        return None;
    }
    // covariance of (u, v) is σ²·inv[2..4][2..4]; of d, that over gain²
    let var = (sse / (n - 4.0)).max(1e-6) / (gain * gain);
    let c = [[inv[2][2] * var, inv[2][3] * var], [inv[3][2] * var, inv[3][3] * var]];
    let det = c[0][0] * c[1][1] - c[0][1] * c[1][0];
    if det <= 0.0 {
        return None;
    }
    Some((d, [[c[1][1] / det, -c[0][1] / det], [-c[1][0] / det, c[0][0] / det]]))
}

/// Weighted fit of `d = −α·r + t`; returns α and its standard error (inflated by the excess
/// scatter of the blocks around the model). `None` with fewer than 6 blocks.
fn radial_fit(shifts: &[Shift]) -> Option<(f64, f64)> {
    if shifts.len() < 6 {
        return None;
    }
    // a quadratic form xᵀ·W·y with a block's 2×2 weight
    let form = |w: &[[f64; 2]; 2], x: [f64; 2], y: [f64; 2]| {
        x[0] * (w[0][0] * y[0] + w[0][1] * y[1]) + x[1] * (w[1][0] * y[0] + w[1][1] * y[1])
    };
    let mut m = [[0f64; 3]; 3];
    let mut v = [0f64; 3];
    for s in shifts {
        // columns of the 2×3 design matrix: α ↦ −r, tx ↦ (1, 0), ty ↦ (0, 1)
        let cols = [[-s.r[0], -s.r[1]], [1.0, 0.0], [0.0, 1.0]];
        for (i, ci) in cols.iter().enumerate() {
            for (j, cj) in cols.iter().enumerate() {
                m[i][j] += form(&s.info, *ci, *cj);
            }
            v[i] += form(&s.info, *ci, s.d);
        }
    }
    let theta = super::solve3(m, v)?;
    let chi2: f64 = shifts
        .iter()
        .map(|s| {
            let e = [s.d[0] + theta[0] * s.r[0] - theta[1], s.d[1] + theta[0] * s.r[1] - theta[2]];
            form(&s.info, e, e)
        })
        .sum();
    let dof = (2 * shifts.len() - 3) as f64;
    let inflate = (chi2 / dof).max(1.0);
    // variance of α: first diagonal element of m⁻¹
    let col = super::solve3(m, [1.0, 0.0, 0.0])?;
    Some((theta[0], (col[0] * inflate).max(0.0).sqrt()))
}
